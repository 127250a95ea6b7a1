"""Response bodies and headers with the policy's secrets replaced by their placeholders.

Values substituted for `${VAR}` can end up in any text the server builds from a config: error
messages quoting a URL or a name, a model listing, a provider's error, an SSE error frame.
Rather than trusting each of those places, every response passes through here. A body sent in
one piece gets a corrected Content-Length; a streamed one is redacted chunk by chunk (each SSE
frame is one chunk) and sent without one.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llamafarm.config.policy import ConfigPolicy


class RedactSecrets:
    def __init__(self, app: ASGIApp, *, policy: ConfigPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.policy.has_secrets:
            await self.app(scope, receive, send)
            return
        start: Message | None = None

        async def redacting_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message  # held until the first body: its length may change
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body = self._redact(message.get("body", b""))
            if start is not None:
                headers = [
                    (key, self._redact(value))
                    for key, value in start.get("headers", [])
                    if key.lower() != b"content-length"
                ]
                if not message.get("more_body", False):
                    headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                start = None
            await send({**message, "body": body})

        await self.app(scope, receive, redacting_send)

    def _redact(self, data: bytes) -> bytes:
        text = data.decode("utf-8", "surrogateescape")
        redacted = self.policy.redact(text)
        return data if redacted == text else redacted.encode("utf-8", "surrogateescape")

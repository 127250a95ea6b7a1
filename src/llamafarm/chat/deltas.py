"""What a streamed turn does to its deltas on their way to the client: secrets redacted across
them, and the text of a burst joined into one."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace

from llamafarm.chat.providers.base import Delta
from llamafarm.config.policy import ConfigPolicy


def redacted(
    deltas: AsyncGenerator[Delta, None], policy: ConfigPolicy
) -> AsyncGenerator[Delta, None]:
    """The deltas with the policy's secrets redacted across them: a model spelling a secret
    out over several deltas (each its own SSE frame) got past RedactSecrets, which sees one
    frame at a time."""
    return deltas if not policy.has_secrets else _held_back(deltas, policy)


async def _held_back(
    deltas: AsyncGenerator[Delta, None], policy: ConfigPolicy
) -> AsyncGenerator[Delta, None]:
    """Text that may be the start of a secret waits for the next delta."""
    held = ""
    async with aclosing(deltas):
        async for delta in deltas:
            if delta.finish_reason is None and delta.usage is None and not delta.tool_calls:
                content, held = policy.redact_part(held + delta.content)
                if content:
                    yield Delta(content=content)
                continue
            yield replace(delta, content=policy.redact(held + delta.content))
            held = ""
    if held:
        yield Delta(content=policy.redact(held))


def merged(items: list[Delta | Exception | None]) -> list[Delta | Exception | None]:
    """The queued items with each run of plain text deltas joined into one: a burst from a
    fast model server becomes one chunk instead of one per token (clients take any split of
    the text; each chunk costs the server and the client more than its text)."""
    merged: list[Delta | Exception | None] = []
    text: list[str] = []
    for item in items:
        if (
            isinstance(item, Delta)
            and item.finish_reason is None
            and item.usage is None
            and not item.tool_calls
        ):
            text.append(item.content)
            continue
        if text:
            merged.append(Delta(content="".join(text)))
            text = []
        merged.append(item)
    if text:
        merged.append(Delta(content="".join(text)))
    return merged

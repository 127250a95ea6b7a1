"""`lf chat`: one message, or a conversation in the terminal, streamed as it is written."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.status import Status

from llamafarm.cli.client import ApiClient, CliError
from llamafarm.cli.common import ProjectOption, client, err, out, project_path

PREVIEW = 80
CANCELLED = 130
"""The exit status of an answer stopped with Ctrl-C (a shell's for SIGINT)."""


def chat(
    ctx: typer.Context,
    words: Annotated[
        list[str] | None,
        typer.Argument(help="[NAMESPACE/PROJECT] MESSAGE; no message: talk until Ctrl-D."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="A model name of the project.")] = None,
    no_rag: Annotated[bool, typer.Option("--no-rag", help="Answer without retrieval.")] = False,
    database: Annotated[str | None, typer.Option(help="RAG database to search.")] = None,
    retrieval_strategy: Annotated[
        str | None, typer.Option(help="Retrieval strategy of the database to search with.")
    ] = None,
    rag_top_k: Annotated[
        int | None, typer.Option(min=1, help="Number of chunks to retrieve.")
    ] = None,
    rag_score_threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Least score a chunk needs.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", exists=True, dir_okay=False, help="Send this file's text as MESSAGE."
        ),
    ] = None,
    session: Annotated[str | None, typer.Option(help="Continue this session.")] = None,
    project: Annotated[str | None, ProjectOption] = None,
) -> None:
    """Chat with the project's model; prints the sources it was given."""
    project, words = _split_words(list(words or []), project, file)
    path = f"{project_path(project)}/chat/completions"
    options: dict[str, Any] = {"stream": True}
    for key, value in (
        ("model", model),
        ("database", database),
        ("rag_retrieval_strategy", retrieval_strategy),
        ("rag_top_k", rag_top_k),
        ("rag_score_threshold", rag_score_threshold),
    ):
        if value is not None:
            options[key] = value
    if no_rag:
        options["rag_enabled"] = False
    api = client(ctx)
    if words:
        try:
            say(api, path, words[0], options, session)
        except Cancelled:
            raise typer.Exit(CANCELLED) from None
        return
    out.print("[dim]Ctrl-D to leave.[/dim]")
    while True:
        try:
            message = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            out.print()
            return
        if message:
            with contextlib.suppress(Cancelled):  # the answer stops; the conversation goes on
                session = say(api, path, message, options, session)


def _split_words(
    words: list[str], project: str | None, file: Path | None
) -> tuple[str | None, list[str]]:
    """The project and the message from `[NAMESPACE/PROJECT] [MESSAGE]` and `--file`."""
    if file is not None:
        if len(words) > 1 or (words and "/" not in words[0]):
            raise CliError("Give either --file or a MESSAGE, not both")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"Cannot read {file}: {exc}") from exc
        if not text.strip():
            raise CliError(f"{file} is empty")
        return (words[0] if words else project), [text]
    if len(words) > 2:
        raise CliError("Expected at most NAMESPACE/PROJECT and one MESSAGE (quote the message)")
    if len(words) == 2:
        return words[0], words[1:]
    return project, words


class Cancelled(Exception):
    """The user stopped an answer with Ctrl-C."""


def say(
    api: ApiClient, path: str, message: str, options: dict[str, Any], session: str | None
) -> str | None:
    """Send one user message, print the answer as it streams; returns the session id.

    Ctrl-C stops the answer: the connection is closed, so the server cancels the generation."""
    headers = {"X-Session-ID": session} if session else {}
    body = {"messages": [{"role": "user", "content": message}], **options}
    sources: list[dict[str, Any]] = []
    finished = False
    waiting = Waiting()
    with contextlib.closing(api.events(path, json_body=body, headers=headers)) as events:
        try:
            with waiting:
                for response_headers, event in events:
                    session = response_headers.get("x-session-id", session)
                    if "error" in event:
                        waiting.stop()
                        out.print()
                        raise CliError(
                            f"Error {event['error']['code']}: {event['error']['message']}"
                        )
                    sources = event.get("sources", sources)
                    for choice in event.get("choices") or ():  # none: a usage chunk
                        finished = finished or bool(choice.get("finish_reason"))
                        delta = (choice.get("delta") or {}).get("content") or ""
                        if delta:
                            waiting.stop()
                            out.print(delta, end="", soft_wrap=True, highlight=False, markup=False)
        except KeyboardInterrupt:
            out.print()
            err.print("[dim]cancelled[/dim]")
            raise Cancelled from None
    out.print()
    if not finished:
        raise api.went_away("the answer stopped before its end")
    for number, source in enumerate(sources, start=1):
        page = f", page {source['page']}" if source.get("page") is not None else ""
        err.print(f"[dim][{number}] {source['source']}{page} (score {source['score']:.2f})[/dim]")
    return session


class Waiting:
    """A spinner on stderr until the first token, when both outputs are a terminal (never in a
    pipe or a file): the first answer of a model may wait for it to load, and a long prompt
    takes a while to read, with nothing else to show meanwhile."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._status: Status | None = None
        if out.is_terminal and err.is_terminal:
            self._status = Status(self, console=err, spinner="dots")

    def __rich__(self) -> str:
        seconds = time.monotonic() - self._started
        return f"[dim]loading model / thinking… {seconds:.0f} s[/dim]"

    def __enter__(self) -> Waiting:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

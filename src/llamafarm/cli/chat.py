"""`lf chat`: one message, or a conversation in the terminal, streamed as it is written."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from llamafarm.cli.client import ApiClient, CliError
from llamafarm.cli.common import ProjectOption, client, err, out, project_path

PREVIEW = 80


def chat(
    ctx: typer.Context,
    words: Annotated[
        list[str] | None,
        typer.Argument(help="[NAMESPACE/PROJECT] MESSAGE; no message: talk until Ctrl-D."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="A model name of the project.")] = None,
    no_rag: Annotated[bool, typer.Option("--no-rag", help="Answer without retrieval.")] = False,
    database: Annotated[str | None, typer.Option(help="RAG database to search.")] = None,
    session: Annotated[str | None, typer.Option(help="Continue this session.")] = None,
    project: Annotated[str | None, ProjectOption] = None,
) -> None:
    """Chat with the project's model; prints the sources it was given."""
    words = list(words or [])
    if len(words) > 2:
        raise CliError("Expected at most NAMESPACE/PROJECT and one MESSAGE (quote the message)")
    if len(words) == 2:
        project, words = words[0], words[1:]
    path = f"{project_path(project)}/chat/completions"
    options: dict[str, Any] = {"stream": True}
    if model:
        options["model"] = model
    if no_rag:
        options["rag_enabled"] = False
    if database:
        options["database"] = database
    api = client(ctx)
    if words:
        say(api, path, words[0], options, session)
        return
    out.print("[dim]Ctrl-D to leave.[/dim]")
    while True:
        try:
            message = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            out.print()
            return
        if message:
            session = say(api, path, message, options, session)


def say(
    api: ApiClient, path: str, message: str, options: dict[str, Any], session: str | None
) -> str | None:
    """Send one user message, print the answer as it streams; returns the session id."""
    headers = {"X-Session-ID": session} if session else {}
    body = {"messages": [{"role": "user", "content": message}], **options}
    sources: list[dict[str, Any]] = []
    for response_headers, event in api.events(path, json_body=body, headers=headers):
        session = response_headers.get("x-session-id", session)
        if "error" in event:
            out.print()
            raise CliError(f"Error {event['error']['code']}: {event['error']['message']}")
        sources = event.get("sources", sources)
        delta = event["choices"][0]["delta"].get("content") or ""
        out.print(delta, end="", soft_wrap=True, highlight=False, markup=False)
    out.print()
    for number, source in enumerate(sources, start=1):
        page = f", page {source['page']}" if source.get("page") is not None else ""
        err.print(f"[dim][{number}] {source['source']}{page} (score {source['score']:.2f})[/dim]")
    return session

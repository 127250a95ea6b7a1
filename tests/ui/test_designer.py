"""The Designer's flows in Chromium against a real server: from nothing to a chat that cites
the user's own documents, plus the config editor, an example import and a narrow screen."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chat.openai_server import OpenAIServer
from tests.e2e.conftest import LF, Server
from tests.models.hub import FakeHub
from tests.ui.conftest import SCREENSHOTS, TINY_MODEL, wait_task

# The waits on real processing and the bundled model allow for a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FIXTURES = Path(__file__).parents[1] / "fixtures"
UNLABELLED = """[...document.querySelectorAll('input, select, textarea, button')]
  .filter((e) => e.type !== 'hidden' && !(e.labels && e.labels.length)
    && !e.getAttribute('aria-label') && !(e.tagName === 'BUTTON' && e.textContent.trim()))
  .map((e) => e.outerHTML.slice(0, 80))"""
DOCS = "/v1/projects/default/docs"


@pytest.fixture(scope="module")
def docs(server: Server) -> str:
    """The project `default/docs` (the default template, its strategies retrieving 2 chunks: a
    short prompt for the bundled model on a busy machine): its UI path."""
    created = httpx.post(f"{server.url}/v1/projects/default", json={"name": "docs"})
    assert created.status_code == 201, created.text
    config = created.json()["project"]["config"]
    for strategy in config["rag"]["databases"][0]["retrieval_strategies"]:
        strategy["config"]["top_k"] = 2
    updated = httpx.put(f"{server.url}{DOCS}", json={"config": config})
    assert updated.status_code == 200, updated.text
    return "#/p/default/docs"


@pytest.fixture(scope="module")
def ingested(server: Server, docs: str) -> str:
    """`docs` with the handbook processed (the upload test's work, or done here by the API
    when that test did not run first)."""
    listed = httpx.get(f"{server.url}{DOCS}/datasets").json()["datasets"][0]
    if not any(f["processed"] for f in listed["details"]["file_details"]):
        with (FIXTURES / "handbook-1p.docx").open("rb") as handle:
            uploaded = httpx.post(
                f"{server.url}{DOCS}/datasets/documents/data?auto_process=true",
                files={"file": ("handbook-1p.docx", handle)},
            ).json()
        assert wait_task(server, DOCS, uploaded["task_id"])["state"] == "SUCCESS"
    return docs


@pytest.fixture(scope="module")
def fake() -> Iterator[OpenAIServer]:
    """An OpenAI-compatible model on loopback: answers known in advance, at a pace a test sets."""
    with OpenAIServer(text="<think>Weighing the question.</think>The answer is 42.") as model:
        yield model


@pytest.fixture(scope="module")
def thinker(server: Server, fake: OpenAIServer) -> str:
    """The project `default/thinker`: chat only, its model the fake one."""
    base = f"{server.url}/v1/projects/default"
    created = httpx.post(base, json={"name": "thinker", "config_template": "server"})
    assert created.status_code == 201, created.text
    config = created.json()["project"]["config"]
    config["runtime"] = {"provider": "openai", "model": "fake-model", "base_url": fake.base_url}
    updated = httpx.put(f"{base}/thinker", json={"config": config})
    assert updated.status_code == 200, updated.text
    return "#/p/default/thinker"


def payload(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "mimeType": "application/octet-stream", "buffer": data}


def drop(page: Any, selector: str, files: dict[str, bytes]) -> None:
    """Drop files on an element as a user dragging them from the desktop would: a `drop` event
    carrying a DataTransfer of File objects."""
    transfer = page.evaluate_handle(
        """(files) => {
          const transfer = new DataTransfer();
          for (const [name, data] of files) {
            const raw = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            transfer.items.add(new File([raw], name));
          }
          return transfer;
        }""",
        [[name, base64.b64encode(data).decode()] for name, data in files.items()],
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_root_is_json_for_clients_and_the_designer_for_browsers(page: Any, server: Server) -> None:
    api = httpx.get(f"{server.url}/")
    assert api.json() == {"message": "Hello, World!"}
    assert "content-security-policy" not in api.headers
    shell = httpx.get(f"{server.url}/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert shell.headers["content-type"].startswith("text/html")
    csp = shell.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert shell.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(f"{server.url}/ui/js/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"] == csp
    # Everything the shell loads is on this server.
    assert not re.search(r"(src|href)=\"(https?:)?//", shell.text)
    # A browser gets the first page (its requests are checked by the `page` fixture).
    page.goto("/")
    page.get_by_role("heading", name="Projects").wait_for()
    page.get_by_role("heading", name="Start from an example").wait_for()


def test_namespaces_create_and_delete_a_project(page: Any, server: Server, docs: str) -> None:
    other = httpx.post(f"{server.url}/v1/projects/team-b", json={"name": "side"})
    assert other.status_code == 201, other.text
    page.goto("/")
    namespaces = page.get_by_role("list", name="Namespaces")
    namespaces.get_by_role("button", name="team-b (1)").click()
    page.locator(".project-card", has_text="side").wait_for()
    assert page.get_by_label("Namespace", exact=True).input_value() == "team-b"
    namespaces.get_by_role("button", name=re.compile(r"^default \(\d+\)$")).click()
    page.locator(".project-card", has_text="docs").wait_for()

    page.get_by_label("Project name").first.fill("scratch")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url(re.compile(r"#/p/default/scratch/data$"))
    page.get_by_label("Dataset").wait_for()
    assert page.locator("#dataset-select").input_value() == "documents"

    page.get_by_role("link", name="Projects").click()
    cards = page.locator(".project-card")
    cards.filter(has_text="scratch").wait_for()
    page.get_by_role("button", name="Delete scratch").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    cards.filter(has_text="scratch").wait_for(state="detached")
    assert cards.filter(has_text="docs").count() == 1


def test_upload_many_files_and_watch_them_process(page: Any, docs: str) -> None:
    handbook = (FIXTURES / "handbook-1p.docx").read_bytes()
    page.goto(f"/{docs}/data")
    page.locator("#dataset-select").wait_for()
    names = ["handbook-1p.docx", "stanley-cups.xlsx", "fake-html-cp1252.html", "password.pdf"]
    files = {name: (FIXTURES / name).read_bytes() for name in names}
    drop(page, ".drop", {**files, "handbook-copy.docx": handbook})
    page.locator(".task[data-done]").wait_for(timeout=180_000)
    uploads = page.locator(".uploads li")
    assert uploads.count() == 5
    # Each file had its own upload progress bar, each now full.
    for i in range(5):
        bar = uploads.nth(i).locator("progress")
        assert (
            bar.get_attribute("aria-label")
            == f"upload of {uploads.nth(i).get_attribute('data-file')}"
        )
        assert bar.evaluate("(p) => p.value === p.max && p.max > 0")
    # The same bytes twice: one of the two is stored, the other shown as skipped.
    assert page.locator(".uploads li.skipped").count() == 1
    assert "duplicate: skipped" in page.locator(".uploads li.skipped").inner_text()
    states = {
        name: page.locator(f'.task-files li[data-file="{name}"]').get_attribute("data-state")
        for name in ("stanley-cups.xlsx", "fake-html-cp1252.html", "password.pdf")
    }
    assert states == {
        "stanley-cups.xlsx": "SUCCESS",
        "fake-html-cp1252.html": "SUCCESS",
        "password.pdf": "FAILURE",
    }
    failed = page.locator('.task-files li[data-file="password.pdf"] .error').inner_text()
    assert "password" in failed.lower()  # the server's reason, shown with the file
    rows = page.locator("table.files tbody tr")
    rows.nth(3).wait_for()
    assert rows.count() == 4

    # Remove one file (confirmed): its chunks go with it.
    page.get_by_role("button", name="Remove stanley-cups.xlsx").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Remove").click()
    page.get_by_text(re.compile(r"Removed stanley-cups\.xlsx: \d+ chunk")).wait_for()
    page.locator("table.files tbody tr").nth(3).wait_for(state="detached")


def test_query_two_strategies_side_by_side(page: Any, ingested: str) -> None:
    page.goto(f"/{ingested}/retrieval")
    page.locator("select >> nth=1 >> option[value=hybrid_search]").wait_for(state="attached")
    page.get_by_label("Query").fill("What does the United States Trustee Program do?")
    page.get_by_label("Strategy").select_option("hybrid_search")
    page.get_by_label("Compare with").select_option("basic_search")
    page.get_by_role("button", name="Search").click()
    columns = page.locator(".compare.two .results")
    columns.nth(1).wait_for()
    assert "hybrid_search" in columns.nth(0).inner_text()
    assert "basic_search" in columns.nth(1).inner_text()
    first = columns.nth(0).locator(".result").first
    assert re.search(r"\d\.\d{3}", first.locator(".score").inner_text())
    assert "handbook-1p.docx" in first.inner_text()
    assert first.locator("mark").count() > 0  # the query's words highlighted


def test_chat_streams_an_answer_with_sources(page: Any, ingested: str) -> None:
    page.goto(f"/{ingested}/chat")
    page.locator("option", has_text="SmolLM2-135M-Instruct").wait_for(state="attached")
    page.get_by_label("Max tokens").fill("8")  # a short answer: this machine may be busy
    page.get_by_label("Message").fill("What is the United States Trustee Program?")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    page.locator(".msg.assistant:not(.streaming)").wait_for(timeout=180_000)
    assert answer.locator(".text").inner_text().strip()
    assert answer.locator(".error").count() == 0
    sources = page.locator(".sources .source")
    assert sources.count() >= 1
    assert "handbook-1p.docx" in sources.first.inner_text()
    sources.first.click()
    assert page.locator(".sources .chunk-text").inner_text().strip()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat_answer_with_sources.png"))


def test_chat_thinking_collapsed_sessions_and_stop(
    page: Any, thinker: str, fake: OpenAIServer
) -> None:
    page.goto(f"/{thinker}/chat")
    sessions = page.get_by_role("navigation", name="Chats")
    sessions.get_by_text("No chats yet.").wait_for()
    page.get_by_label("Think first (thinking models)").check()
    page.get_by_label("Message").fill("Why?")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant:not(.streaming)").last
    answer.wait_for()
    assert answer.locator(".text").inner_text() == "The answer is 42."
    # The reasoning is there, collapsed: hidden until its summary is clicked.
    thinking = answer.locator("details.thinking")
    assert thinking.get_attribute("open") is None
    assert not thinking.locator("pre").is_visible()
    thinking.locator("summary").click()
    assert thinking.locator("pre").inner_text() == "Weighing the question."
    # The chat is listed by the server, titled by its first message.
    first = sessions.locator("button[data-session]")
    first.filter(has_text="Why?").wait_for()

    # Stop: a slow answer is cut off; the page is ready for the next question.
    fake.text, fake.delay = "word " * 400, 0.05
    try:
        page.get_by_label("Think first (thinking models)").uncheck()
        page.get_by_label("Message").fill("Tell me everything.")
        page.get_by_role("button", name="Send").click()
        page.locator(".msg.assistant.streaming .text", has_text="word").wait_for()
        page.get_by_role("button", name="Stop").click()
        page.locator(".msg.assistant", has_text="Stopped.").wait_for()
        assert page.get_by_role("button", name="Send").is_enabled()
        assert len(page.locator(".msg.assistant").last.locator(".text").inner_text()) < 2000
    finally:
        fake.text, fake.delay = "Another answer.", 0.0

    # A new chat starts empty and is listed beside the first one.
    page.get_by_role("button", name="New chat").click()
    assert page.locator(".msg").count() == 0
    page.get_by_label("Message").fill("Second chat")
    page.keyboard.press("Enter")
    page.locator(".msg.assistant:not(.streaming)", has_text="Another answer.").wait_for()
    sessions.locator("button[data-session]", has_text="Second chat").wait_for()
    assert sessions.locator("button[data-session]").count() == 2

    # Resume the first: its history comes back from the server.
    sessions.locator("button[data-session]", has_text="Why?").click()
    page.locator(".msg.user .text", has_text="Why?").wait_for()
    assert page.locator(".msg.assistant .text").first.inner_text() == "The answer is 42."

    # Delete the second (confirmed): gone from the list, and from the server.
    page.get_by_role("button", name="Delete chat Second chat").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    sessions.locator("button[data-session]", has_text="Second chat").wait_for(state="detached")
    assert sessions.locator("button[data-session]").count() == 1


def test_config_error_shown_at_its_path_then_save_and_undo(
    page: Any, server: Server, docs: str
) -> None:
    before = httpx.get(f"{server.url}{DOCS}").json()["project"]["config"]
    page.goto(f"/{docs}/config")
    editor = page.get_by_label("llamafarm.yaml")
    from playwright.sync_api import expect  # (wait_for_function evaluates, which the CSP forbids)

    expect(editor).not_to_have_value("")
    text = editor.input_value()
    line = text.split("\n").index("      provider: universal") + 1
    editor.fill(text.replace("provider: universal", "provider: nope", 1))
    page.get_by_role("button", name="Save").click()
    problem = page.locator(".problem").first
    problem.wait_for()
    assert problem.locator(".path").inner_text() == f"runtime.models[0].provider (line {line})"
    assert "Input should be" in problem.inner_text()
    assert page.locator(".status", has_text="Not saved").count() == 1
    assert httpx.get(f"{server.url}{DOCS}").json()["project"]["config"] == before
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "config_error_at_its_path.png"))

    problem.locator(".path").click()  # puts the cursor on that line
    selected = page.evaluate(
        "(() => { const e = document.querySelector('#config-editor');"
        " return e.value.slice(e.selectionStart, e.selectionEnd); })()"
    )
    assert selected == "      provider: nope"

    editor.fill(text.replace("temperature: 0.7", "temperature: 0.2", 1))
    page.get_by_role("button", name="Save").click()
    page.locator(".status.ok", has_text="Saved.").wait_for()
    saved = httpx.get(f"{server.url}{DOCS}").json()["project"]["config"]
    assert saved["runtime"]["models"][0]["model_api_parameters"]["temperature"] == 0.2

    page.get_by_role("button", name="Undo to previous version").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Restore").click()
    page.locator(".status.ok", has_text="Restored").wait_for()
    assert httpx.get(f"{server.url}{DOCS}").json()["project"]["config"] == before
    assert "temperature: 0.7" in editor.input_value()


def test_import_an_example_with_progress(page: Any) -> None:
    page.goto("/")
    card = page.locator('form[data-example="home_solar"]')
    card.get_by_label("Project name").fill("solar")
    card.get_by_role("button", name="Import").click()
    card.get_by_text("Imported and processed").wait_for(timeout=180_000)
    card.get_by_role("link", name="Open solar").click()
    page.get_by_role("heading", name="Datasets").wait_for()
    datasets = page.locator("section.card", has=page.get_by_role("heading", name="Datasets"))
    datasets.locator("tbody tr").first.wait_for()
    cells = datasets.locator("tbody tr").first.locator("td")
    assert int(cells.nth(1).inner_text()) >= 1  # its files
    databases = page.locator("section.card", has=page.get_by_role("heading", name="Databases"))
    assert int(databases.locator("tbody tr td").nth(2).inner_text()) > 0  # its chunks
    # Health: the server's components, then the project's database, embedder and index.
    health = page.locator("section.card", has=page.get_by_role("heading", name="Health"))
    assert "worker" in health.inner_text() and "model_server" in health.inner_text()
    retrieval = health.locator(".rag-health table")
    retrieval.wait_for()
    assert {"vector_store", "embeddings", "index"} <= set(retrieval.inner_text().split())


def test_narrow_screen_and_event_timeline(page: Any, ingested: str) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    tabs = ("overview", "data", "chat", "retrieval", "config", "events")
    for path in ["/", "/#/models", *(f"/{ingested}/{tab}" for tab in tabs)]:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide at 390px"
        assert page.evaluate(UNLABELLED) == [], f"{path} has controls without a label"
    page.goto(f"/{ingested}/events")
    rows = page.locator("tbody tr")
    rows.first.wait_for()
    # The type filter: only processed files' events.
    page.get_by_label("Type").select_option("rag_processing")
    page.get_by_role("button", name="Filter").click()
    page.locator('.event-list[data-filter*="type=rag_processing"]').wait_for()
    types = {rows.nth(i).get_attribute("data-type") for i in range(rows.count())}
    assert types == {"rag_processing"}
    # One event's sub-events as a timeline with durations.
    page.locator("table button.link").first.click()
    steps = page.locator(".timeline li")
    steps.first.wait_for()
    assert re.search(r"\d+\.\d ms", steps.first.inner_text())
    assert "parse" in page.locator(".timeline").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The time filter: nothing before 2001.
    page.get_by_label("To", exact=True).fill("2001-01-01T00:00")
    page.get_by_role("button", name="Filter").click()
    page.get_by_text("No events match.").wait_for()


def test_keyboard_focus_is_visible(page: Any) -> None:
    page.goto("/")
    page.get_by_role("heading", name="Projects").wait_for()
    page.keyboard.press("Tab")  # the skip link first, then the navigation
    focused = page.locator(":focus")
    assert focused.inner_text() == "Skip to content"
    for _ in range(2):
        page.keyboard.press("Tab")
    assert page.locator(":focus").inner_text() == "Projects"
    outline = page.locator(":focus").evaluate(
        "(e) => { const s = getComputedStyle(e); return [s.outlineStyle, s.outlineWidth]; }"
    )
    assert outline == ["solid", "3px"], outline
    # Enter on the focused link works as a click.
    page.get_by_role("link", name="Models").focus()
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Models").wait_for()


def test_cancel_a_task_shows_what_was_reverted(page: Any, docs: str) -> None:
    names = ["winter-sports.epub", "sample-presentation.pptx", "docx-tables.docx"]
    page.goto(f"/{docs}/data")
    page.locator("#dataset-select").wait_for()
    page.set_input_files("#file-input", [payload(n, (FIXTURES / n).read_bytes()) for n in names])
    # Live per-file state: the book takes seconds to parse and embed, long enough to be seen
    # at its step.
    book = page.locator('.task-files li[data-file="winter-sports.epub"][data-phase]')
    book.wait_for(timeout=60_000)
    assert book.locator(".badge").inner_text() in ("parsing", "embedding")
    cancel = page.get_by_role("button", name="Cancel task")
    cancel.click()  # while the book is still being processed
    page.locator(".task[data-done]").wait_for(timeout=180_000)
    assert page.locator(".task").get_attribute("data-done") == "REVOKED"
    summary = page.locator(".task").inner_text()
    assert re.search(
        r"Cancelled: \d+ file\(s\) reverted \(their chunks removed\), \d+ left unprocessed", summary
    )
    states = {
        name: page.locator(f'.task-files li[data-file="{name}"]').get_attribute("data-state")
        for name in names
    }
    assert set(states.values()) <= {"CANCELLED", "REVERTED"}, states


def test_models_list_download_with_progress_and_delete(page: Any, hub: FakeHub) -> None:
    page.goto("/#/models")
    rows = page.locator("tbody tr")
    rows.nth(1).wait_for()
    bundled = rows.filter(has_text="SmolLM2-135M-Instruct")
    assert "bundled" in bundled.inner_text()
    assert re.search(r"\d+(\.\d+)? ?MB", bundled.inner_text())
    assert bundled.get_by_role("button", name="Delete SmolLM2-135M-Instruct").is_disabled()
    page.get_by_label("Hugging Face model").fill("not-a-repo")
    page.get_by_role("button", name="Download").click()
    error = page.locator("form .error")
    error.wait_for()
    assert "Invalid model name 'not-a-repo'" in error.inner_text()  # the server's detail

    # A download (from the fake hub, which holds the big file until released) shows progress.
    page.get_by_label("Hugging Face model").fill(TINY_MODEL)
    page.get_by_role("button", name="Download").click()
    shown = page.locator("form .status", has_text=re.compile(r"of 2\.0 MB \(\d+%\)"))
    shown.wait_for()
    assert page.locator("form progress").get_attribute("max") == str(2 * 2**20 + 2)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "model_download_in_progress.png"))
    hub.release.set()
    page.locator("form .status.ok", has_text=f"{TINY_MODEL}: downloaded.").wait_for()
    row = rows.filter(has_text=TINY_MODEL)
    row.wait_for()
    assert "cached" in row.inner_text() and re.search(r"\b2\.0 ?MB\b", row.inner_text())
    row.get_by_role("button", name=f"Delete {TINY_MODEL}").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    page.get_by_text(re.compile(f"Deleted {TINY_MODEL}: 2.0 MB freed")).wait_for()
    row.wait_for(state="detached")


def test_with_api_keys_the_designer_asks_for_one(page: Any, server: Server, docs: str) -> None:
    """Last in this module: from now on the server asks every client for a key."""
    created = subprocess.run(
        [LF, "keys", "create", "--data-dir", str(server.data_dir), "designer"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
    )
    key = created.stdout.split()[0]
    assert key.startswith("lf_")
    page.goto("/")  # the shell and its files load without a key
    dialog = page.locator("#key-dialog")
    dialog.get_by_text("An API key is required").wait_for()
    dialog.get_by_label("Key").fill("lf_wrong")
    dialog.get_by_role("button", name="Save").click()
    dialog.get_by_text("Invalid API key").wait_for()
    dialog.get_by_label("Key").fill(key)
    dialog.get_by_role("button", name="Save").click()
    page.locator(".project-card", has_text="docs").wait_for()
    assert key not in page.url
    assert page.evaluate("sessionStorage.getItem('lf.apiKey')") == key

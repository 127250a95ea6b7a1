"""The Designer in a real browser: Playwright for Python driving Debian's Chromium (never a
browser Playwright downloads) against one real `lf start`: one server and one browser for the
whole session, a fresh browser context (tab, storage) per test.

The server's Hugging Face Hub is a fake one on loopback (`tests/models/hub.py`) with its own
empty cache, so a model download runs for real without the network.

Without a browser (or without the `playwright` package) the tests skip, except under
`CI=true`, where they fail: CI installs both (`make install`)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, launch
from tests.models.hub import FakeHub

SCREENSHOTS = Path(__file__).parent / "screenshots"
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def _missing(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: CI must run the browser tests (`make install` installs it)")
    pytest.skip(why)


def chromium() -> str:
    """`LF_TEST_CHROMIUM`, else Debian's Chromium."""
    named = os.environ.get("LF_TEST_CHROMIUM")
    found = (
        named
        or next((c for c in CANDIDATES if Path(c).is_file()), None)
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not found or not Path(found).is_file():
        _missing(f"No Chromium at {named!r}" if named else "No Chromium (apt-get install chromium)")
    return str(found)


TINY_MODEL = "acme/tiny-model"
TINY_FILES = {"config.json": b"{}", "model.bin": b"m" * (2 << 20)}
"""What the fake hub serves; `model.bin` is held until the test releases it (`hub.release`)."""


# Module-scoped (there is one module of UI tests): Playwright's sync API keeps an event loop
# running on the thread while it is open, and the tests run after this module (in the same
# xdist worker) call asyncio.run.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("The playwright package is not installed")
    executable = chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub({TINY_MODEL: TINY_FILES}, hold="model.bin") as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, hub: FakeHub) -> Iterator[Server]:
    cache = tmp_path_factory.mktemp("hf-cache")
    started = launch(tmp_path_factory, HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(cache))
    yield started
    started.stop()


@pytest.fixture
def page(browser: Any, server: Server, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser tab at 1280x800 (a test may resize it). After the test: its screenshot
    in tests/ui/screenshots/, and no request went to another host and no script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=server.url)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    foreign: list[str] = []
    errors: list[str] = []
    tab.on(
        "request",
        lambda r: (
            foreign.append(r.url)
            if not (r.url.startswith(server.url + "/") or r.url.startswith("data:"))
            else None
        ),
    )
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    SCREENSHOTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert foreign == [], "the page sent requests to another host"
    assert errors == [], "the page had script errors"


def wait_task(server: Server, path: str, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        task: dict[str, Any] = httpx.get(f"{server.url}{path}/tasks/{task_id}").json()
        if task["state"] in ("SUCCESS", "FAILURE", "REVOKED"):
            return task
        time.sleep(0.3)
    raise AssertionError(f"task {task_id} did not finish")

"""How fast the Designer's first page renders on localhost, in Debian's Chromium (headless).

    .venv/bin/python bench/ui_first_page.py [--rounds 20] [--projects 5]

Not part of `make bench`. It starts `lf start` on a free port with a temporary data directory,
creates PROJECTS projects in `default`, then opens `http://127.0.0.1:PORT/` ROUNDS times, each
in a new browser context (no cache, no storage: a first visit), and prints for each figure its
median and slowest over the rounds, in milliseconds from the start of the navigation:

- `html`: the shell's response received (`responseEnd` of the navigation timing);
- `dom`: the DOM ready, the module scripts run (`domContentLoadedEventEnd`);
- `paint`: the first contentful paint;
- `rendered`: the page shows the project list from the API ("N project(s) in default"): what a
  person waits for. Measured in the page (`performance.now()` once the text is there), so it
  is an upper bound by the time Playwright takes to see it.

Chromium: `LF_TEST_CHROMIUM`, else /usr/bin/chromium (the tests' own choice).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from harness import free_port, wait_until_up
from playwright.sync_api import sync_playwright

FIGURES = ("html", "dom", "paint", "rendered")
TIMING = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  return {html: nav.responseEnd, dom: nav.domContentLoadedEventEnd,
          paint: paint ? paint.startTime : NaN, rendered: performance.now()};
}"""


def chromium() -> str:
    found = os.environ.get("LF_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).is_file():
        raise SystemExit(f"No Chromium at {found} (apt-get install chromium)")
    return found


def measure(url: str, rounds: int, projects: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {name: [] for name in FIGURES}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            for _ in range(rounds):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                page.goto(url + "/", wait_until="commit")
                page.locator(".status", has_text=f"{projects} project(s) in default").wait_for()
                for name, value in page.evaluate(TIMING).items():
                    figures[name].append(value)
                context.close()
        finally:
            browser.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--projects", type=int, default=5)
    args = parser.parse_args()
    lf = str(Path(sys.executable).parent / "lf")
    with tempfile.TemporaryDirectory(prefix="lf-bench-ui-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "server.log"
        with log.open("wb") as output:
            server = subprocess.Popen(
                [lf, "start", "--host", "127.0.0.1", "--port", str(port), "--data-dir", tmp],
                env={**os.environ, "LF_VERSION_CHECK_URL": ""},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            with httpx.Client(base_url=url, timeout=60) as http:
                wait_until_up(http, server, log)
                for i in range(args.projects):
                    http.post("/v1/projects/default", json={"name": f"p{i}"}).raise_for_status()
            figures = measure(url, args.rounds, args.projects)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
    print(f"first page of the Designer, {args.rounds} cold visits, ms from navigation start:")
    for name in FIGURES:
        values = figures[name]
        print(f"  {name:9} median {statistics.median(values):7.1f}   slowest {max(values):7.1f}")


if __name__ == "__main__":
    main()

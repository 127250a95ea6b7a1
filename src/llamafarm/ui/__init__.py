"""The Designer: the web UI's static files (ES modules, CSS, one HTML shell), served as they are
by `api/ui.py`. They hold no data: every page asks the API for it, from the same origin."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
"""The UI's files: `index.html` and what it loads (served under `/ui/`)."""
INDEX_FILE = STATIC_DIR / "index.html"

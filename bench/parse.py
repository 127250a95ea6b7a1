"""Parsing throughput per format: pages/s and MB/s, OCR pages/s, and each run's peak memory.

    .venv/bin/python bench/parse.py [FOLDER] [--rounds 3] [--formats .pdf,.png]

Parses every file of FOLDER (default: tests/fixtures) whose suffix has a parser, with that
format's parser and default options, ROUNDS times. Each format runs in a fresh process, so its
peak RSS (the most a worker would hold for it) is its own and the OCR engine's first load
counts once, in the first round only. Pages are PDF pages, image frames, or sections where a
format has no pages. "failed" counts parses that failed (each round). "text pages/s" is over
the files read from their text layer alone, "OCR pages/s" over the files with OCR'd pages.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers import AutoParser

ROOT = Path(__file__).resolve().parents[1]


def run_one(folder: Path, suffix: str, rounds: int) -> dict[str, object]:
    """Parse the format's files ROUNDS times in this process; its figures as a dict."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == suffix)
    parser = AutoParser.formats[suffix]()
    pages = ocr_pages = text_pages = failed = 0
    size = seconds = ocr_seconds = text_seconds = 0.0
    for _ in range(rounds):
        for path in files:
            began = time.perf_counter()
            try:
                document = parser.parse(path, filename=path.name)
            except ParseFailed:
                failed += 1
                continue
            took = time.perf_counter() - began
            seconds += took
            size += path.stat().st_size
            count = int(document.metadata.get("pages", len(document.sections)))
            pages += count
            if document.metadata.get("ocr_pages"):
                ocr_pages += int(document.metadata["ocr_pages"])
                ocr_seconds += took
            else:
                text_pages += count
                text_seconds += took
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "format": suffix,
        "files": len(files),
        "failed": failed,
        "pages_per_s": pages / seconds if seconds else 0.0,
        "mb_per_s": size / 2**20 / seconds if seconds else 0.0,
        "text_pages_per_s": text_pages / text_seconds if text_seconds else None,
        "ocr_pages_per_s": ocr_pages / ocr_seconds if ocr_seconds else None,
        "peak_mib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT / "tests" / "fixtures")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--formats", default=".pdf,.png,.jpg,.jpeg,.tif,.tiff,.webp,.bmp")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child's format
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.folder, args.one, args.rounds)))
        return
    present: defaultdict[str, int] = defaultdict(int)
    for path in args.folder.iterdir():
        present[path.suffix.lower()] += 1
    wanted = [s for s in args.formats.split(",") if present[s] and s in AutoParser.formats]
    print(f"{'format':8} {'files':>5} {'failed':>6} {'pages/s':>9} {'MB/s':>8} "
          f"{'text pages/s':>12} {'OCR pages/s':>11} {'peak MiB':>9}")  # fmt: skip
    for suffix in wanted:
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                str(args.folder),
                f"--rounds={args.rounds}",
                f"--one={suffix}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"{row['format']:8} {row['files']:>5} {row['failed']:>6} {row['pages_per_s']:>9.2f} "
            f"{row['mb_per_s']:>8.3f} {_rate(row['text_pages_per_s']):>12} "
            f"{_rate(row['ocr_pages_per_s']):>11} {row['peak_mib']:>9.0f}"
        )


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()

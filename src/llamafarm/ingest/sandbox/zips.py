"""Zip bombs refused from the zip's central directory, before any library inflates an entry."""

from __future__ import annotations

import zipfile
from pathlib import Path

from llamafarm.errors import ParseLimitExceeded

RATIO_FLOOR = 1 << 20
"""Entries unpacking to less than this are not held to the ratio: a small run of spaces may
compress a thousandfold and harm no one."""


def check_zip(path: Path, filename: str, *, max_bytes: int, max_ratio: float) -> None:
    """ParseLimitExceeded when a zip-based file would unpack past `max_bytes` in all, or one
    entry past `max_ratio` times its packed size; a file that is not a zip passes."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile):
        return  # not a zip that can be read: its parser says so in its own words
    total = sum(entry.file_size for entry in entries)
    if total > max_bytes:
        raise ParseLimitExceeded(
            f"'{filename}' would unpack to {total / 2**20:.0f} MiB, over LF_PARSE_MAX_UNZIPPED_MB "
            f"({max_bytes / 2**20:.0f} MiB); refused as a possible zip bomb"
        )
    for entry in entries:
        if entry.file_size >= RATIO_FLOOR:
            ratio = entry.file_size / max(entry.compress_size, 1)
            if ratio > max_ratio:
                raise ParseLimitExceeded(
                    f"'{filename}': its part {entry.filename!r} unpacks {ratio:.0f} times its "
                    f"size, over LF_PARSE_MAX_ZIP_RATIO ({max_ratio:g}); refused as a possible "
                    "zip bomb"
                )

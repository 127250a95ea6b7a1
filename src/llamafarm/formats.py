"""Values written for clients and people: byte counts and times, the reference API's way."""

from __future__ import annotations

import datetime as dt


def human_size(size: float) -> str:
    """`2.0MB`, `4.0KB`, `512B`."""
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}GB"


def iso_time(timestamp: float, *, milliseconds: bool = False) -> str:
    """`2024-01-15T10:30:00Z` (UTC), or `2024-01-15T10:30:00.123Z`."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    spec = "milliseconds" if milliseconds else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")

"""Byte counts written for people, the way the reference API writes them."""

from __future__ import annotations


def human_size(size: float) -> str:
    """`2.0MB`, `4.0KB`, `512B`."""
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}GB"

"""Parsers that misbehave, for the parse sandbox's tests: the parse process imports this module
by name when it unpickles a job that names one of them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from llamafarm.documents import ParsedDocument, Section


class _Misbehaving:
    extensions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}

    def started(self) -> None:
        """Tell the test which process parses: the pid in `pid_file`."""
        if "pid_file" in self.config:
            Path(self.config["pid_file"]).write_text(str(os.getpid()))


class LoopParser(_Misbehaving):
    """Spins at 100 % CPU for ever, as a sheet whose declared range is a million cells did."""

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        self.started()
        spins = 0
        while True:
            spins += 1


class HogParser(_Misbehaving):
    """Allocates 64 MiB after 64 MiB, up to 4 GiB: `bytes(n)` is calloc'ed zero pages, never
    written, so it costs address space (what the limit counts) and neither time nor memory."""

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        self.started()
        held = [bytes(64 << 20) for _ in range(64)]
        return ParsedDocument([Section(f"held {len(held)} blocks")])

"""Content-addressed file storage: `{project}/raw/{sha256}`, written by streaming."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import BinaryIO

from llamafarm.errors import BadRequest, PayloadTooLarge

_HASH = re.compile(r"^[0-9a-f]{64}$")
_STEP = 1 << 20


def check_hash(file_hash: str) -> str:
    if not _HASH.fullmatch(file_hash):
        raise BadRequest(f"Invalid file hash {file_hash[:80]!r}: expected 64 lowercase hex digits")
    return file_hash


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, file_hash: str) -> Path:
        return self.root / check_hash(file_hash)

    def put(self, source: BinaryIO, *, limit: int) -> tuple[str, int]:
        """Copy `source` in, hashing as it streams; returns (sha256, size)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".upload-{uuid.uuid4().hex}"
        digest, size = hashlib.sha256(), 0
        try:
            with tmp.open("wb") as out:
                while block := source.read(_STEP):
                    size += len(block)
                    if size > limit:
                        raise PayloadTooLarge(f"File is larger than the {limit >> 20} MiB limit")
                    digest.update(block)
                    out.write(block)
            if size == 0:
                raise BadRequest("File is empty")
            file_hash = digest.hexdigest()
            target = self.path(file_hash)
            if not target.exists():
                os.replace(tmp, target)
            return file_hash, size
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, file_hash: str) -> bool:
        try:
            self.path(file_hash).unlink()
        except FileNotFoundError:
            return False
        return True

"""Content-addressed file storage, written by streaming: `{project}/raw/{sha256}` in the data
dir (`BlobStore`), or chunked `bytea` rows of the state database in shared mode
(`DatabaseBlobs`, `LF_BLOB_STORE=database`), which every process on every machine reads."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy import delete, insert, select, update

from llamafarm.errors import BadRequest, NotFound, PayloadTooLarge
from llamafarm.state import StateDB
from llamafarm.state.tables import Blob, BlobChunk

_HASH = re.compile(r"^[0-9a-f]{64}$")
_STEP = 1 << 20


def check_hash(file_hash: str) -> str:
    if not _HASH.fullmatch(file_hash):
        raise BadRequest(f"Invalid file hash {file_hash[:80]!r}: expected 64 lowercase hex digits")
    return file_hash


class Blobs(Protocol):
    """Where a project's uploaded files are kept."""

    def put(self, source: BinaryIO, *, limit: int) -> tuple[str, int]:
        """Copy `source` in, hashing as it streams; returns (sha256, size)."""
        ...

    def local(self, file_hash: str) -> contextlib.AbstractContextManager[Path]:
        """The bytes as a file of this machine, for the parse process, while the block runs."""
        ...

    def delete(self, file_hash: str) -> bool: ...


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

    @contextlib.contextmanager
    def local(self, file_hash: str) -> Iterator[Path]:
        yield self.path(file_hash)

    def delete(self, file_hash: str) -> bool:
        try:
            self.path(file_hash).unlink()
        except FileNotFoundError:
            return False
        return True


class DatabaseBlobs:
    """A project's files as `blobs` rows, their bytes in 1 MiB `blob_chunks`. `scratch` is a
    folder of this process's data dir where `local` writes a file while it is used.

    Callers hold the project's lock around `put` and `delete` (`upload_file` does), so the
    same content uploaded twice at once cannot make two rows."""

    def __init__(self, db: StateDB, namespace: str, project: str, *, scratch: Path) -> None:
        self.db = db
        self.namespace = namespace
        self.project = project
        self.scratch = scratch

    def _id(self, file_hash: str) -> int | None:
        with self.db.session() as session:
            return session.scalars(
                select(Blob.id).where(
                    Blob.namespace == self.namespace,
                    Blob.project == self.project,
                    Blob.file_hash == check_hash(file_hash),
                )
            ).one_or_none()

    def put(self, source: BinaryIO, *, limit: int) -> tuple[str, int]:
        # Written under a random name and renamed to its hash at the end, in one transaction:
        # the bytes go to the database as they come, and a failure leaves nothing behind.
        digest, size = hashlib.sha256(), 0
        with self.db.session() as session:
            blob = Blob(
                namespace=self.namespace,
                project=self.project,
                file_hash=f"upload-{uuid.uuid4().hex}",
                size=0,
                created_at=time.time(),
            )
            session.add(blob)
            session.flush()
            seq = 0
            while block := source.read(_STEP):
                size += len(block)
                if size > limit:
                    raise PayloadTooLarge(f"File is larger than the {limit >> 20} MiB limit")
                digest.update(block)
                session.execute(insert(BlobChunk).values(blob_id=blob.id, seq=seq, data=block))
                seq += 1
            if size == 0:
                raise BadRequest("File is empty")
            file_hash = digest.hexdigest()
            existing = session.scalars(
                select(Blob.id).where(
                    Blob.namespace == self.namespace,
                    Blob.project == self.project,
                    Blob.file_hash == file_hash,
                )
            ).one_or_none()
            if existing is None:
                session.execute(
                    update(Blob).where(Blob.id == blob.id).values(file_hash=file_hash, size=size)
                )
            else:
                session.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob.id))
                session.execute(delete(Blob).where(Blob.id == blob.id))
        return file_hash, size

    @contextlib.contextmanager
    def local(self, file_hash: str) -> Iterator[Path]:
        blob_id = self._id(file_hash)
        if blob_id is None:
            raise NotFound(f"The bytes of file {file_hash} are not in the blob store")
        self.scratch.mkdir(parents=True, exist_ok=True)
        path = self.scratch / f".{file_hash}.{uuid.uuid4().hex}"
        try:
            with path.open("wb") as out:
                seq = 0
                while True:  # a chunk at a time: the file may be larger than memory allows
                    with self.db.session() as session:
                        data = session.scalars(
                            select(BlobChunk.data).where(
                                BlobChunk.blob_id == blob_id, BlobChunk.seq == seq
                            )
                        ).one_or_none()
                    if data is None:
                        break
                    out.write(data)
                    seq += 1
            yield path
        finally:
            path.unlink(missing_ok=True)

    def delete(self, file_hash: str) -> bool:
        blob_id = self._id(file_hash)
        if blob_id is None:
            return False
        with self.db.session() as session:
            session.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob_id))
            session.execute(delete(Blob).where(Blob.id == blob_id))
        return True

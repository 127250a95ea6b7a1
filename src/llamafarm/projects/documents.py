"""Where projects' `llamafarm.yaml` documents live: files under the data dir (the default), or
rows of the state database in shared mode (`LF_BLOB_STORE=database`), so that API replicas and
workers on other machines read and write the same projects.

Both keep the text as written and the version before the last update (`previous`), write
atomically, and lock a project across processes: `flock` on a file in its folder, which every
process of one machine shares, or a PostgreSQL advisory lock, which every machine shares.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError

from llamafarm.errors import Conflict, NotFound
from llamafarm.names import is_valid_name
from llamafarm.state import StateDB
from llamafarm.state.tables import ProjectDocument

CONFIG_FILE = "llamafarm.yaml"
BACKUP_FILE = "llamafarm.yaml.bak"
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class Stored:
    """A project's document as stored: its bytes, when it was written, and a version that
    changes with every write."""

    data: bytes
    modified: datetime | None
    version: Hashable


class Documents(Protocol):
    """The storage of projects' documents; names are checked by the caller."""

    def namespaces(self) -> list[str]: ...
    def names(self, namespace: str) -> list[str]: ...
    def exists(self, namespace: str, name: str) -> bool: ...
    def read(self, namespace: str, name: str) -> Stored:
        """NotFound when there is no such project."""
        ...

    def version(self, namespace: str, name: str) -> Hashable:
        """What `read` would say of the version, cheaper; NotFound when there is none."""
        ...

    def create(self, namespace: str, name: str, text: str) -> None:
        """Conflict when the project exists."""
        ...

    def replace(self, namespace: str, name: str, text: str) -> None:
        """The new text; the current one becomes `previous`."""
        ...

    def previous(self, namespace: str, name: str) -> bytes | None: ...
    def delete(self, namespace: str, name: str) -> Stored:
        """The document as it was; NotFound when there is none."""
        ...

    def lock(self, namespace: str, name: str) -> contextlib.AbstractContextManager[None]:
        """Held by one process at a time (of this machine, or of all in shared mode)."""
        ...


class FolderDocuments:
    """`{root}/{namespace}/{name}/llamafarm.yaml`, with its `.bak` and `.lock`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _file(self, namespace: str, name: str) -> Path:
        return self.root / namespace / name / CONFIG_FILE

    def namespaces(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(c.name for c in self.root.iterdir() if c.is_dir() and is_valid_name(c.name))

    def names(self, namespace: str) -> list[str]:
        folder = self.root / namespace
        if not folder.is_dir():
            return []
        return [
            child.name
            for child in sorted(folder.iterdir())
            if is_valid_name(child.name) and (child / CONFIG_FILE).is_file()
        ]

    def exists(self, namespace: str, name: str) -> bool:
        return self._file(namespace, name).is_file()

    def read(self, namespace: str, name: str) -> Stored:
        path = self._file(namespace, name)
        try:
            data, stat = path.read_bytes(), path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"Project {namespace}/{name} not found") from None
        modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
        return Stored(data, modified, (stat.st_ino, stat.st_size, stat.st_mtime_ns))

    def version(self, namespace: str, name: str) -> Hashable:
        try:
            stat = self._file(namespace, name).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"Project {namespace}/{name} not found") from None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def create(self, namespace: str, name: str, text: str) -> None:
        path = self._file(namespace, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _write_atomic(path, text, exclusive=True)
        except FileExistsError:
            raise Conflict(f"Project {namespace}/{name} already exists") from None

    def replace(self, namespace: str, name: str, text: str) -> None:
        path = self._file(namespace, name)
        shutil.copy2(path, path.with_name(BACKUP_FILE))
        _write_atomic(path, text)

    def previous(self, namespace: str, name: str) -> bytes | None:
        try:
            return self._file(namespace, name).with_name(BACKUP_FILE).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, namespace: str, name: str) -> Stored:
        stored = self.read(namespace, name)
        folder = self.root / namespace / name
        # Rename first so the project disappears at once, then remove the files.
        doomed = folder.with_name(f".deleting-{name}-{uuid.uuid4().hex}")
        try:
            folder.rename(doomed)
        except FileNotFoundError:
            raise NotFound(f"Project {namespace}/{name} not found") from None
        shutil.rmtree(doomed)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # the namespace folder, once empty
        return stored

    @contextlib.contextmanager
    def lock(self, namespace: str, name: str) -> Iterator[None]:
        folder = self.root / namespace / name
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


class TableDocuments:
    """Rows of `project_documents` in the state database. `local` is this process's folder of
    projects, where a project's folder is made when it is read (for caches and scratch files)
    and removed when this process deletes the project; on SQLite (one machine) it holds the
    lock's file too."""

    def __init__(self, db: StateDB, local: Path) -> None:
        self.db = db
        self.local = local

    def _row(self, namespace: str, name: str) -> ProjectDocument | None:
        with self.db.session() as session:
            return session.scalars(
                select(ProjectDocument).where(
                    ProjectDocument.namespace == namespace, ProjectDocument.project == name
                )
            ).one_or_none()

    def _require(self, namespace: str, name: str) -> ProjectDocument:
        row = self._row(namespace, name)
        if row is None:
            raise NotFound(f"Project {namespace}/{name} not found")
        return row

    def namespaces(self) -> list[str]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(ProjectDocument.namespace).distinct().order_by(ProjectDocument.namespace)
                )
            )

    def names(self, namespace: str) -> list[str]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(ProjectDocument.project)
                    .where(ProjectDocument.namespace == namespace)
                    .order_by(ProjectDocument.project)
                )
            )

    def exists(self, namespace: str, name: str) -> bool:
        return self._row(namespace, name) is not None

    def _here(self, namespace: str, name: str) -> None:
        """The project's local folder exists while the project does: its embedded stores and
        caches go there, and `create_store` takes a missing folder for a deleted project."""
        (self.local / namespace / name).mkdir(parents=True, exist_ok=True)

    def read(self, namespace: str, name: str) -> Stored:
        row = self._require(namespace, name)
        self._here(namespace, name)
        modified = datetime.fromtimestamp(row.modified_at, tz=UTC)
        return Stored(row.text.encode("utf-8"), modified, row.version)

    def version(self, namespace: str, name: str) -> Hashable:
        with self.db.session() as session:
            version = session.scalars(
                select(ProjectDocument.version).where(
                    ProjectDocument.namespace == namespace, ProjectDocument.project == name
                )
            ).one_or_none()
        if version is None:
            raise NotFound(f"Project {namespace}/{name} not found")
        self._here(namespace, name)
        return version

    def create(self, namespace: str, name: str, text: str) -> None:
        try:
            with self.db.session() as session:
                session.add(
                    ProjectDocument(
                        namespace=namespace,
                        project=name,
                        text=text,
                        version=1,
                        modified_at=time.time(),
                    )
                )
        except IntegrityError:
            raise Conflict(f"Project {namespace}/{name} already exists") from None

    def replace(self, namespace: str, name: str, text: str) -> None:
        # One statement: the old text becomes `previous` in the same atomic write.
        with self.db.session() as session:
            session.execute(
                update(ProjectDocument)
                .where(ProjectDocument.namespace == namespace, ProjectDocument.project == name)
                .values(
                    previous=ProjectDocument.text,
                    text=text,
                    version=ProjectDocument.version + 1,
                    modified_at=time.time(),
                )
            )

    def previous(self, namespace: str, name: str) -> bytes | None:
        row = self._require(namespace, name)
        return None if row.previous is None else row.previous.encode("utf-8")

    def delete(self, namespace: str, name: str) -> Stored:
        stored = self.read(namespace, name)
        with self.db.session() as session:
            gone = session.execute(
                delete(ProjectDocument).where(
                    ProjectDocument.namespace == namespace, ProjectDocument.project == name
                )
            )
        if getattr(gone, "rowcount", 1) == 0:
            raise NotFound(f"Project {namespace}/{name} not found")
        shutil.rmtree(self.local / namespace / name, ignore_errors=True)
        return stored

    @contextlib.contextmanager
    def lock(self, namespace: str, name: str) -> Iterator[None]:
        if self.db.engine.dialect.name != "postgresql":
            with FolderDocuments(self.local).lock(namespace, name):
                yield
            return
        # A session advisory lock on a connection of its own, held for the block: the server
        # lets go of it when that connection ends, if this process dies holding it.
        key = int.from_bytes(
            hashlib.sha256(f"project:{namespace}/{name}".encode()).digest()[:8], "big", signed=True
        )
        with self.db.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()


def _write_atomic(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write via a temp file in the same folder; `exclusive` fails if `path` already exists."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)  # atomic create-if-absent
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

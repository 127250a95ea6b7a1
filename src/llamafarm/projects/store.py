"""Projects on disk: `{projects_dir}/{namespace}/{name}/llamafarm.yaml`."""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llamafarm.config import (
    ConfigPolicy,
    config_warnings,
    dump_document,
    parse_config,
    read_document,
    render_template,
)
from llamafarm.config.models import ProjectConfig
from llamafarm.errors import BadRequest, ConfigInvalid, Conflict, NotFound
from llamafarm.names import check_name, is_valid_name

CONFIG_FILE = "llamafarm.yaml"
BACKUP_FILE = "llamafarm.yaml.bak"
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class ProjectRef:
    """A project's namespace and name, as services pass them around."""

    namespace: str
    project: str


@dataclass(frozen=True)
class Project:
    """A project's document as written, and what the server has to say about it."""

    namespace: str
    name: str
    config: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    """Keys the config sets that the server will not act on (`config_warnings`), and more."""
    validation_error: str | None = None
    """Why the config on disk is invalid; the project is listed and fixable by an update."""
    last_modified: datetime | None = None
    """The config file's modification time, in UTC."""


Warnings = list[str]
Check = Callable[[ProjectConfig], Warnings]
"""Checks a parsed config's components: their warnings, or ConfigInvalid for one we lack."""


class ProjectStore:
    """Create, read, update and delete projects under one directory.

    Every config written or loaded is checked against the operator's `policy`, on writes and
    again on loads (a file edited by hand, or a policy narrowed since, fails there), and by
    `check` (the app's and the worker's `llamafarm.components.check_components`, which this
    layer cannot import): a component type we cannot provide fails there too.
    """

    def __init__(
        self,
        root: Path,
        *,
        templates_dir: Path | None = None,
        policy: ConfigPolicy | None = None,
        check: Check | None = None,
    ) -> None:
        self.root = root
        self.templates_dir = templates_dir
        self.policy = policy or ConfigPolicy()
        self.check: Check = check or (lambda _: [])
        self._parsed: dict[Path, tuple[tuple[int, int, int], ProjectConfig]] = {}

    def path(self, namespace: str, name: str) -> Path:
        """The project's folder; names are validated so it is always inside the root."""
        check_name(namespace, kind="namespace")
        check_name(name, kind="project name")
        return self.root / namespace / name

    def namespaces(self) -> list[str]:
        """The namespaces that have a folder, by name."""
        if not self.root.is_dir():
            return []
        return sorted(c.name for c in self.root.iterdir() if c.is_dir() and is_valid_name(c.name))

    def names(self, namespace: str) -> list[str]:
        """The names of a namespace's projects (folders with a config), sorted."""
        folder = self.root / check_name(namespace, kind="namespace")
        if not folder.is_dir():
            return []
        return sorted(
            c.name
            for c in folder.iterdir()
            if is_valid_name(c.name) and (c / CONFIG_FILE).is_file()
        )

    def list(self, namespace: str) -> list[Project]:
        projects = []
        for name in self.names(namespace):
            with contextlib.suppress(NotFound):  # deleted while we list
                projects.append(self.get(namespace, name))
        return projects

    def get(self, namespace: str, name: str) -> Project:
        """The project as on disk; an invalid config is reported in `validation_error` (with
        the document as written, or `{}` when it cannot be read), never raised, so a client
        can show it and replace it."""
        config_file = self.require(namespace, name)
        modified = _modified(config_file)
        try:
            document = read_document(config_file)
        except ConfigInvalid as exc:
            return Project(namespace, name, {}, validation_error=exc.detail, last_modified=modified)
        try:
            warnings = self._validate(document)[1]
        except ConfigInvalid as exc:
            return Project(
                namespace, name, document, validation_error=exc.detail, last_modified=modified
            )
        return self._project(namespace, name, document, warnings)

    def _validate(self, document: dict[str, Any]) -> tuple[ProjectConfig, Warnings]:
        """The parsed config and its warnings (keys not acted on, then its components');
        ConfigInvalid if the config or one of its components is not valid."""
        config = parse_config(document, self.policy)
        return config, config_warnings(config) + self.check(config)

    def _project(
        self, namespace: str, name: str, document: dict[str, Any], warnings: Warnings
    ) -> Project:
        config_file = self.path(namespace, name) / CONFIG_FILE
        return Project(
            namespace, name, document, warnings=warnings, last_modified=_modified(config_file)
        )

    def load(self, namespace: str, name: str) -> ProjectConfig:
        """The validated config with `${VAR}` substituted, for services that act on it.

        Parsed once per version of the file (its inode, size and mtime: every write replaces
        it), since every query and file job starts here. Callers must not change it.
        """
        config_file = self.path(namespace, name) / CONFIG_FILE
        try:
            stat = config_file.stat()
        except FileNotFoundError:
            raise NotFound(f"Project {namespace}/{name} not found") from None
        version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._parsed.get(config_file)
        if cached is not None and cached[0] == version:
            return cached[1]
        config = self._validate(self._read(namespace, name))[0]
        self._parsed[config_file] = (version, config)
        return config

    def create(self, namespace: str, name: str, *, template: str = "default") -> Project:
        folder = self.path(namespace, name)
        document = render_template(
            template,
            namespace=namespace,
            name=name,
            custom_dir=self.templates_dir,
            policy=self.policy,
        )
        warnings = self._validate(document)[1]
        folder.mkdir(parents=True, exist_ok=True)
        try:
            _write_atomic(folder / CONFIG_FILE, dump_document(document), exclusive=True)
        except FileExistsError:
            raise Conflict(f"Project {namespace}/{name} already exists") from None
        return self._project(namespace, name, document, warnings)

    def update(self, namespace: str, name: str, document: dict[str, Any]) -> Project:
        with self.lock(namespace, name):
            return self._replace(namespace, name, document)

    def _replace(self, namespace: str, name: str, document: dict[str, Any]) -> Project:
        folder = self.path(namespace, name)
        warnings = self.check_update(namespace, name, document)
        config_file = folder / CONFIG_FILE
        shutil.copy2(config_file, folder / BACKUP_FILE)
        _write_atomic(config_file, dump_document(document))
        self._parsed.pop(config_file, None)  # two writes may fall in one mtime tick
        return self._project(namespace, name, document, warnings)

    def check_update(self, namespace: str, name: str, document: dict[str, Any]) -> Warnings:
        """What `update` would check, without writing: its warnings, or the error it would
        raise (NotFound, BadRequest for a renamed project, ConfigInvalid naming each bad key's
        path)."""
        self.require(namespace, name)
        for key, expected in (("namespace", namespace), ("name", name)):
            if document.get(key) != expected:
                raise BadRequest(
                    f"config.{key} is {document.get(key)!r} but the path says {expected!r}; "
                    "projects cannot be renamed by an update"
                )
        return self._validate(document)[1]

    def previous(self, namespace: str, name: str) -> dict[str, Any]:
        """The config as it was before the last update (its `.bak`); NotFound when none."""
        backup = self.require(namespace, name).with_name(BACKUP_FILE)
        if not backup.is_file():
            raise NotFound(f"Project {namespace}/{name} has no previous config version")
        try:
            return read_document(backup)
        except ConfigInvalid as exc:
            raise ConfigInvalid(
                f"Project {namespace}/{name} (previous version): {exc.detail}"
            ) from exc

    def edit(
        self,
        namespace: str,
        name: str,
        change: Callable[[dict[str, Any]], None],
        *,
        locked: bool = False,
    ) -> Project:
        """Read-modify-write of a project's document under a lock shared by all processes;
        `locked`: the caller holds `lock` already (it changes state along with the config)."""
        with contextlib.nullcontext() if locked else self.lock(namespace, name):
            document = copy.deepcopy(self._read(namespace, name))
            change(document)
            return self._replace(namespace, name, document)

    @contextlib.contextmanager
    def lock(self, namespace: str, name: str) -> Iterator[None]:
        """A lock on the project shared by every process on this machine (not re-entrant)."""
        folder = self.path(namespace, name)
        self._read(namespace, name)  # 404 before taking the lock
        with (folder / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def delete(self, namespace: str, name: str) -> Project:
        """Remove the project's whole folder; a broken config does not prevent it."""
        folder = self.path(namespace, name)
        try:
            document = self._read(namespace, name)
        except ConfigInvalid:
            document = {}
        modified = _modified(folder / CONFIG_FILE)
        # Rename first so the project disappears at once, then remove the files.
        doomed = folder.with_name(f".deleting-{name}-{uuid.uuid4().hex}")
        try:
            folder.rename(doomed)
        except FileNotFoundError:
            raise NotFound(f"Project {namespace}/{name} not found") from None
        shutil.rmtree(doomed)
        self._parsed.pop(folder / CONFIG_FILE, None)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # the namespace folder, once empty
        return Project(namespace, name, document, last_modified=modified)

    def exists(self, namespace: str, name: str) -> bool:
        return (self.path(namespace, name) / CONFIG_FILE).is_file()

    def require(self, namespace: str, name: str) -> Path:
        """The project's config file; NotFound when there is no such project."""
        if not self.exists(namespace, name):
            raise NotFound(f"Project {namespace}/{name} not found")
        return self.path(namespace, name) / CONFIG_FILE

    def _read(self, namespace: str, name: str) -> dict[str, Any]:
        config_file = self.require(namespace, name)
        try:
            return read_document(config_file)
        except ConfigInvalid as exc:
            raise ConfigInvalid(f"Project {namespace}/{name}: {exc.detail}") from exc


def _modified(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    except FileNotFoundError:
        return None


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

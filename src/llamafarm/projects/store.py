"""Projects: their `llamafarm.yaml` documents (in folders under the data dir, or in the state
database in shared mode: `projects/documents.py`), checked against the operator's policy."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from llamafarm.config import (
    ConfigPolicy,
    config_warnings,
    dump_document,
    parse_config,
    parse_document,
    render_template,
)
from llamafarm.config.models import ProjectConfig
from llamafarm.errors import BadRequest, ConfigInvalid, NotFound
from llamafarm.names import check_name
from llamafarm.projects.documents import (
    CONFIG_FILE,
    Documents,
    FolderDocuments,
    TableDocuments,
)
from llamafarm.state import StateDB


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
    """When the config was last written, in UTC."""


Warnings = list[str]
Check = Callable[[ProjectConfig], Warnings]
"""Checks a parsed config's components: their warnings, or ConfigInvalid for one we lack."""


class ProjectStore:
    """Create, read, update and delete projects under one directory, or in the state database
    (`shared`: shared mode), with each project's local folder under `root` either way.

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
        shared: StateDB | None = None,
    ) -> None:
        self.root = root
        self.templates_dir = templates_dir
        self.policy = policy or ConfigPolicy()
        self.check: Check = check or (lambda _: [])
        self.shared = shared
        """The state database that holds the documents (and uploaded files) in shared mode."""
        self.documents: Documents = (
            FolderDocuments(root) if shared is None else TableDocuments(shared, root)
        )
        self._parsed: dict[tuple[str, str], tuple[Hashable, ProjectConfig]] = {}

    def path(self, namespace: str, name: str) -> Path:
        """The project's folder in this process's data dir (the config's, unless shared);
        names are validated so it is always inside the root."""
        check_name(namespace, kind="namespace")
        check_name(name, kind="project name")
        return self.root / namespace / name

    def namespaces(self) -> list[str]:
        """The namespaces that have a project, by name."""
        return self.documents.namespaces()

    def names(self, namespace: str) -> list[str]:
        """The names of a namespace's projects, sorted."""
        return self.documents.names(check_name(namespace, kind="namespace"))

    def list(self, namespace: str) -> list[Project]:
        projects = []
        for name in self.names(namespace):
            with contextlib.suppress(NotFound):  # deleted while we list
                projects.append(self.get(namespace, name))
        return projects

    def get(self, namespace: str, name: str) -> Project:
        """The project as stored; an invalid config is reported in `validation_error` (with
        the document as written, or `{}` when it cannot be read), never raised, so a client
        can show it and replace it."""
        self.path(namespace, name)
        stored = self.documents.read(namespace, name)
        modified = stored.modified
        try:
            document = parse_document(stored.data, CONFIG_FILE)
        except ConfigInvalid as exc:
            return Project(namespace, name, {}, validation_error=exc.detail, last_modified=modified)
        try:
            warnings = self._validate(document)[1]
        except ConfigInvalid as exc:
            return Project(
                namespace, name, document, validation_error=exc.detail, last_modified=modified
            )
        return Project(namespace, name, document, warnings=warnings, last_modified=modified)

    def _validate(self, document: dict[str, Any]) -> tuple[ProjectConfig, Warnings]:
        """The parsed config and its warnings (keys not acted on, then its components');
        ConfigInvalid if the config or one of its components is not valid."""
        config = parse_config(document, self.policy)
        return config, config_warnings(config) + self.check(config)

    def _project(
        self, namespace: str, name: str, document: dict[str, Any], warnings: Warnings
    ) -> Project:
        modified = self.documents.read(namespace, name).modified
        return Project(namespace, name, document, warnings=warnings, last_modified=modified)

    def load(self, namespace: str, name: str) -> ProjectConfig:
        """The validated config with `${VAR}` substituted, for services that act on it.

        Parsed once per version of the document (on disk its inode, size and mtime: every
        write replaces it; in the database a counter of writes), since every query and file
        job starts here. Callers must not change it.
        """
        self.path(namespace, name)
        version = self.documents.version(namespace, name)
        cached = self._parsed.get((namespace, name))
        if cached is not None and cached[0] == version:
            return cached[1]
        config = self._validate(self._read(namespace, name))[0]
        self._parsed[(namespace, name)] = (version, config)
        return config

    def create(self, namespace: str, name: str, *, template: str = "default") -> Project:
        self.path(namespace, name)
        document = render_template(
            template,
            namespace=namespace,
            name=name,
            custom_dir=self.templates_dir,
            policy=self.policy,
        )
        warnings = self._validate(document)[1]
        self.documents.create(namespace, name, dump_document(document))
        return self._project(namespace, name, document, warnings)

    def update(self, namespace: str, name: str, document: dict[str, Any]) -> Project:
        with self.lock(namespace, name):
            return self._replace(namespace, name, document)

    def _replace(self, namespace: str, name: str, document: dict[str, Any]) -> Project:
        warnings = self.check_update(namespace, name, document)
        self.documents.replace(namespace, name, dump_document(document))
        self._parsed.pop((namespace, name), None)  # two writes may fall in one mtime tick
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
        self.require(namespace, name)
        data = self.documents.previous(namespace, name)
        if data is None:
            raise NotFound(f"Project {namespace}/{name} has no previous config version")
        try:
            return parse_document(data, CONFIG_FILE)
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
        """A lock on the project shared by every process on this machine, or on every
        machine in shared mode on PostgreSQL (not re-entrant)."""
        self._read(namespace, name)  # 404 before taking the lock
        with self.documents.lock(namespace, name):
            yield

    def delete(self, namespace: str, name: str) -> Project:
        """Remove the project (and its local folder); a broken config does not prevent it."""
        self.path(namespace, name)
        stored = self.documents.delete(namespace, name)
        try:
            document = parse_document(stored.data, CONFIG_FILE)
        except ConfigInvalid:
            document = {}
        self._parsed.pop((namespace, name), None)
        return Project(namespace, name, document, last_modified=stored.modified)

    def exists(self, namespace: str, name: str) -> bool:
        self.path(namespace, name)
        return self.documents.exists(namespace, name)

    def require(self, namespace: str, name: str) -> None:
        """NotFound when there is no such project."""
        if not self.exists(namespace, name):
            raise NotFound(f"Project {namespace}/{name} not found")

    def _read(self, namespace: str, name: str) -> dict[str, Any]:
        self.path(namespace, name)
        try:
            return parse_document(self.documents.read(namespace, name).data, CONFIG_FILE)
        except ConfigInvalid as exc:
            raise ConfigInvalid(f"Project {namespace}/{name}: {exc.detail}") from exc

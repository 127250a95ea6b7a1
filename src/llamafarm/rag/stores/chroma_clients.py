"""The embedded Chroma clients of one owner, and the coordination around Chroma's own cache.

Chroma's embedded client keeps each collection's index in the memory of the process that opened
it and does not notice writes made by another process (measured: a reader kept answering from
its stale index after a second process added 700 vectors). The API server and the ingestion
worker both use the stores, so every operation runs under a cross-process file lock, and every
write bumps a generation file; a process whose Chroma system of the folder loaded another
generation than the file's closes that system first, and the next client reads the files again.

`ChromaClients` holds one owner's clients (one per folder) and their open collections: the app's
lifespan and the worker's start each make one (through their `ModelCache`) and close it with
themselves. Chroma itself keeps one *system* per folder for the whole process, which every
client of that folder shares, whoever made it. So what belongs to the process stays here at
module level, beside Chroma's cache: the lock over it, the generation each system loaded, and
`release`/`release_missing`, which close the systems of deleted folders whichever owner opened
them. An owner notices that a system it used was closed (by a reload, a release or another
owner) because Chroma no longer lists it, and opens a new client.

A store on a Chroma server needs none of that: the server is the one copy every process sees.
The owner keeps one `HttpClient` per server (made on first use, with timeouts: Chroma's own
client waits forever), the server-wide one (`LF_CHROMA_URL`), and the engine that holds the
server stores' BM25 index when the state database is PostgreSQL. In shared mode the owner's
stores keep their index records (`rag/index.py`) in the state database too (`records`).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import chromadb
import httpx
from chromadb.api import ClientAPI
from chromadb.api.client import Client
from chromadb.api.models.Collection import Collection
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings as ChromaSettings
from chromadb.config import System
from sqlalchemy import Engine

from llamafarm.errors import Unavailable
from llamafarm.settings import Settings

GENERATION = ".lf-generation"
LOCK = ".lf-lock"


class SharedLock:
    """A lock that readers hold together and a writer alone (the standard library has none).

    The writer's thread may take it again, either way; a reader that asks to write is a bug
    (it would wait for itself) and raises. Readers are not held back by a waiting writer:
    a reader may take it again while it reads, which a writer-first lock would deadlock.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._depth = 0
        self._reads = threading.local()

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._changed:
            counted = self._writer != me
            if counted:
                while self._writer is not None:
                    self._changed.wait()
                self._readers += 1
        self._reads.depth = getattr(self._reads, "depth", 0) + 1
        try:
            yield
        finally:
            self._reads.depth -= 1
            if counted:
                with self._changed:
                    self._readers -= 1
                    if not self._readers:
                        self._changed.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._changed:
            if self._writer != me:
                if getattr(self._reads, "depth", 0):
                    raise RuntimeError("a reader of the stores asked to write")
                while self._writer is not None or self._readers:
                    self._changed.wait()
                self._writer = me
            self._depth += 1
        try:
            yield
        finally:
            with self._changed:
                self._depth -= 1
                if not self._depth:
                    self._writer = None
                    self._changed.notify_all()


_process_lock = SharedLock()
"""Guards Chroma's process-wide cache of systems and `_loaded`: closing a folder's system
changes what every owner's clients of it see, so this lock is the process's, not an owner's.
Held shared by a read of a collection that is open and current (`process_locked`), so reads
of this process run together: the two sides of a hybrid query, and concurrent requests;
everything else holds it alone."""
_loaded: weakref.WeakKeyDictionary[System, str] = weakref.WeakKeyDictionary()
"""The generation of its folder that each of Chroma's systems has read (a note on Chroma's
own cache; an entry goes with its system)."""

CollectionKey = tuple[Path, str, str]
"""A store's folder, collection name and distance space."""
CONNECT_TIMEOUT = 3.0
"""Seconds to open a connection to a Chroma server (a refused one fails at once)."""


class ChromaServer(NamedTuple):
    host: str
    port: int = 8000
    ssl: bool = False

    @classmethod
    def from_url(cls, url: str) -> ChromaServer:
        """`http://HOST[:PORT]` or `https://…` (`LF_CHROMA_URL`, checked by the settings)."""
        parts = urlsplit(url)
        ssl = parts.scheme == "https"
        return cls(parts.hostname or "", parts.port or (443 if ssl else 8000), ssl)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class ChromaClients:
    """One owner's embedded Chroma clients, one per folder, and their open collections.

    Every method runs under `locked(path)`, as `ChromaStore` calls them; `close` takes the
    process lock itself.
    """

    def __init__(
        self,
        *,
        server: ChromaServer | None = None,
        lexical: Engine | None = None,
        records: Engine | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.server = server
        """The server-wide Chroma server (`LF_CHROMA_URL`): stores whose config names no
        `host` keep their vectors there; None: in their folder."""
        self.lexical = lexical
        """The PostgreSQL state database: where server stores keep their BM25 index; None:
        a file in the store's folder."""
        self.records = records
        """The state database in shared mode (`LF_BLOB_STORE=database`): where the stores'
        index records are kept (`rag.stores.index_records`); None: `index.json` in each store's
        folder."""
        self.timeout = timeout
        """Seconds a Chroma server may take over one request (`LF_CHROMA_TIMEOUT`)."""
        self._clients: dict[Path, tuple[ClientAPI, System]] = {}
        self._collections: dict[CollectionKey, Collection] = {}
        """Open collections of the clients (opening one costs more than a query)."""
        self._http: dict[ChromaServer, ClientAPI] = {}
        self._http_lock = threading.Lock()

    def http(self, server: ChromaServer) -> ClientAPI:
        """This owner's client of a Chroma server, made on first use (thread-safe: its HTTP
        session is httpx's); raises `Unavailable` when the server does not answer."""
        with self._http_lock:
            if server not in self._http:
                self._http[server] = http_client(server, timeout=self.timeout)
            return self._http[server]

    def collection(
        self, key: CollectionKey, open_: Callable[[ClientAPI], Collection]
    ) -> Collection:
        """The open collection of `key`, opened by `open_` with this owner's client first."""
        client = self.client(key[0])
        if key not in self._collections:
            self._collections[key] = open_(client)
        return self._collections[key]

    def forget_collection(self, path: Path, name: str) -> None:
        """Forget the open collections of `name` (deleted and made again in another space)."""
        for stale in [k for k in self._collections if k[:2] == (path, name)]:
            del self._collections[stale]

    def client(self, path: Path) -> ClientAPI:
        """This owner's client of `path`, on a system that has read the files' generation."""
        current = generation(path)
        if not current:
            # A store's first open names a generation, so a folder deleted and made again
            # (no generation) never matches a system still open on the old files.
            current = _new_generation(path)
        system = _system_of(path)
        if system is not None and _loaded.get(system) != current:
            # Another process wrote since: the system's index is stale; closing it is
            # Chroma's way to make the next client read the files again.
            _shut(str(path))
            system = None
        cached = self._clients.get(path)
        if cached is not None and system is not None and cached[1] is system:
            return cached[0]
        self._drop(path)
        client = chromadb.PersistentClient(
            path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
        )
        opened = _system_of(path)
        assert opened is not None  # the client just registered it
        _loaded[opened] = current
        self._clients[path] = (client, opened)
        self._sweep()
        return client

    def close(self) -> None:
        """Close this owner's clients; a folder's system stops when its last client closes,
        so another owner's clients of the same folder keep working."""
        with self._http_lock:
            servers = list(self._http.values())
            self._http.clear()
        for server in servers:
            close_http(server)
        with _process_lock.exclusive():
            clients = list(self._clients.items())
            self._clients.clear()
            self._collections.clear()
            for path, (client, system) in clients:
                if _system_of(path) is system:  # else closed already, with its count
                    cast(Client, client).close()

    def opened(self, key: CollectionKey) -> Collection | None:
        """The collection this owner has open for `key`, as its system last read the files
        (whatever was written since), or None when it has none open."""
        collection = self._collections.get(key)
        cached = self._clients.get(key[0])
        if collection is None or cached is None or _system_of(key[0]) is not cached[1]:
            return None
        return collection

    def __contains__(self, path: object) -> bool:
        return path in self._clients

    def _drop(self, path: Path) -> None:
        """Forget this owner's client of `path` and its collections (their system is gone)."""
        self._clients.pop(path, None)
        for key in [k for k in self._collections if k[0] == path]:
            del self._collections[key]

    def _sweep(self) -> None:
        """Forget the clients whose system was closed elsewhere (a deleted folder's, say), so
        an owner that never opens those folders again does not keep them."""
        for path, (_, system) in list(self._clients.items()):
            if _system_of(path) is not system:
                self._drop(path)


def owner_clients(settings: Settings, state: Engine) -> ChromaClients:
    """An owner's clients as the settings want them: `LF_CHROMA_URL` and its timeout, the
    state database for the server stores' BM25 index when it is PostgreSQL, and for the index
    records in shared mode (as `ProjectStore` keeps the configs there)."""
    return ChromaClients(
        server=ChromaServer.from_url(settings.chroma_url) if settings.chroma_url else None,
        lexical=state if state.dialect.name == "postgresql" else None,
        records=state if settings.shared else None,
        timeout=settings.chroma_timeout,
    )


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the folder's cross-process lock (and this process's)."""
    # The process lock first: closing a system changes Chroma's process-wide cache, which
    # must not happen under another thread's operation on any store.
    with _process_lock.exclusive(), (path / LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def process_locked() -> Iterator[None]:
    """This process's lock alone, shared with other reads: for a read that needs nothing from
    the files' index (and changes nothing of Chroma's cache)."""
    with _process_lock.shared():
        yield


@contextlib.contextmanager
def locked_unless_busy(path: Path) -> Iterator[bool]:
    """The process lock, and the folder's lock unless another process holds it (a write):
    True when it is held, False when it is busy and was not waited for."""
    with _process_lock.exclusive(), (path / LOCK).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = False
        else:
            held = True
        try:
            yield held
        finally:
            if held:
                fcntl.flock(handle, fcntl.LOCK_UN)


def is_current(path: Path) -> bool:
    """Whether this process's system of `path` has read the files' latest generation."""
    system = _system_of(path)
    current = generation(path)
    return system is not None and bool(current) and _loaded.get(system) == current


def generation(path: Path) -> str:
    try:
        return (path / GENERATION).read_text()
    except FileNotFoundError:
        return ""


def bump(path: Path) -> None:
    """Name a new generation after a write; the system that wrote it has read it already."""
    written = _new_generation(path)
    system = _system_of(path)
    if system is not None:
        _loaded[system] = written


def forget(path: Path) -> None:
    """Close this process's system of `path` (before its files are deleted)."""
    with _process_lock.exclusive():
        _shut(str(path))


def release(root: Path) -> None:
    """Close this process's systems of the stores under `root` (a deleted project or store),
    whichever owner opened them."""
    with _process_lock.exclusive():
        for path in _open_folders():
            if path == root or root in path.parents:
                _shut(str(path))
        gc.collect()  # a `drop` just before may have left its cycle too


def release_missing() -> None:
    """Close this process's systems whose folder is gone (deleted by another process)."""
    with _process_lock.exclusive():
        gone = [path for path in _open_folders() if not path.is_dir()]
        for path in gone:
            _shut(str(path))
        if gone:
            gc.collect()


def http_client(server: ChromaServer, *, timeout: float) -> ClientAPI:
    """A client of a Chroma server: a system of its own in Chroma's process-wide cache, kept
    there until `close_http`. Its requests time out after `timeout` seconds.

    Chroma's client waits forever (its httpx session has no timeout) and asks the server for
    its tenant while it is made: a heartbeat with our timeouts goes first, so a server that
    accepts connections and never answers is a bounded wait here too.
    """
    limits = httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))
    try:
        httpx.get(f"{server.url}/api/v2/heartbeat", timeout=limits).raise_for_status()
        client = chromadb.HttpClient(
            host=server.host,
            port=server.port,
            ssl=server.ssl,
            settings=ChromaSettings(anonymized_telemetry=False),
        )
    except Exception as exc:  # chromadb raises bare ValueError/ConnectionError and httpx's
        raise unavailable(server, exc) from exc
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = limits
    return client


def unavailable(server: ChromaServer, exc: BaseException) -> Unavailable:
    detail = str(exc) or type(exc).__name__
    return Unavailable(f"Chroma server at {server} cannot be reached: {detail}")


def close_http(client: ClientAPI) -> None:
    """Close a server client: its system, and the HTTP session that stopping it leaves open."""
    # The client and its admin client each made a system of their own, with its own session;
    # the admin client also listed the client's system under a second name, never released.
    parts = [client, getattr(client, "_admin_client", None)]
    cached = SharedSystemClient._identifier_to_system
    systems = [cached.get(getattr(part, "_identifier", "")) for part in parts]
    cast(Client, client).close()
    with SharedSystemClient._refcount_lock:
        for name in [name for name, system in cached.items() if system in systems]:
            cached.pop(name).stop()
    for part in parts:
        session = getattr(getattr(part, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):
            session.close()


def _new_generation(path: Path) -> str:
    name = uuid.uuid4().hex
    (path / GENERATION).write_text(name)
    return name


def _system_of(path: Path) -> System | None:
    return SharedSystemClient._identifier_to_system.get(str(path))


def _open_folders() -> list[Path]:
    systems = list(SharedSystemClient._identifier_to_system.values())
    return [Path(s.settings.persist_directory) for s in systems if s.settings.is_persistent]


def _shut(identifier: str) -> None:
    """Stop Chroma's system of a folder and forget it, with its count of clients.

    Its clients (any owner's) are stale from now on; owners notice by the system. Stopping
    closes its SQLite files (measured: 7 descriptors per store), but one of those is let go
    only when a reference cycle is collected: `release` collects, for callers whose files
    are deleted (their disk space comes back only once no descriptor is left).
    """
    with SharedSystemClient._refcount_lock:
        system = SharedSystemClient._identifier_to_system.pop(identifier, None)
        SharedSystemClient._identifier_to_refcount.pop(identifier, None)
    if system is not None:
        system.stop()

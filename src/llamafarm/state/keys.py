"""API keys: created, listed and revoked by the operator; only their SHA-256 is stored.

A key is `lf_` plus 32 random bytes (URL-safe base64) from `secrets`: with that much entropy a
plain SHA-256 is as good as a slow password hash, and it lets the server find a key by its
digest in a dict instead of comparing it against every stored one.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from llamafarm.errors import Conflict, NotFound
from llamafarm.names import check_name
from llamafarm.state.db import StateDB
from llamafarm.state.tables import ApiKey

PREFIX = "lf_"
HINT_CHARS = len(PREFIX) + 4


@dataclass(frozen=True)
class Grant:
    """What a key may do: reach `namespace` only (None: every one), and only read if asked."""

    name: str
    namespace: str | None = None
    read_only: bool = False


@dataclass(frozen=True)
class KeyInfo:
    """A stored key as `lf keys list` shows it (never the key)."""

    name: str
    hint: str
    namespace: str | None
    read_only: bool
    created_at: float


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def create_key(
    db: StateDB, *, name: str, namespace: str | None = None, read_only: bool = False
) -> str:
    """Store a new key named `name` and return it: the only time it can be seen."""
    check_name(name, kind="key name")
    if namespace is not None:
        check_name(namespace, kind="namespace")
    key = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        key_hash=hash_key(key),
        hint=key[:HINT_CHARS],
        namespace=namespace,
        read_only=read_only,
        created_at=time.time(),
    )
    try:
        with db.session() as session:
            session.add(row)
    except IntegrityError as exc:
        raise Conflict(f"A key named {name!r} already exists") from exc
    return key


def list_keys(db: StateDB) -> list[KeyInfo]:
    with db.session() as session:
        rows = session.scalars(select(ApiKey).order_by(ApiKey.name)).all()
        return [KeyInfo(r.name, r.hint, r.namespace, r.read_only, r.created_at) for r in rows]


def revoke_key(db: StateDB, name: str) -> None:
    with db.session() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.name == name))
        if row is None:
            raise NotFound(f"No key named {name!r}")
        session.delete(row)


def count_keys(db: StateDB) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(ApiKey)) or 0


def load_grants(db: StateDB) -> dict[str, Grant]:
    """Every key's grant, by the key's digest."""
    with db.session() as session:
        rows = session.execute(
            select(ApiKey.key_hash, ApiKey.name, ApiKey.namespace, ApiKey.read_only)
        ).all()
    return {
        digest: Grant(name, namespace, read_only) for digest, name, namespace, read_only in rows
    }

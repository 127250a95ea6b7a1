"""A new, empty database on the machine's PostgreSQL server, for a test or a module's tests."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def new_database() -> Iterator[str]:
    """Its URL; the database is dropped afterwards. Skips the test without a server."""
    psycopg = pytest.importorskip("psycopg")
    # LF_TEST_PG_PREFIX: sessions sharing one server keep to their own names.
    name = f"{os.environ.get('LF_TEST_PG_PREFIX', 'lf_test_')}{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(ADMIN, autocommit=True, connect_timeout=2) as connection:
            connection.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432: {exc}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

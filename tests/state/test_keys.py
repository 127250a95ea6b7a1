"""API keys in the state database, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from llamafarm.errors import Conflict, InvalidName, NotFound
from llamafarm.state import StateDB
from llamafarm.state.keys import (
    Grant,
    count_keys,
    create_key,
    hash_key,
    list_keys,
    load_grants,
    revoke_key,
)


def test_keys_are_stored_as_hashes_only(state_db: StateDB) -> None:
    first = create_key(state_db, name="ci", namespace="acme", read_only=True)
    second = create_key(state_db, name="ops")
    assert first != second and first.startswith("lf_") and len(first) >= 46
    assert load_grants(state_db) == {
        hash_key(first): Grant("ci", "acme", True),
        hash_key(second): Grant("ops", None, False),
    }
    listed = list_keys(state_db)
    assert [(k.name, k.namespace, k.read_only) for k in listed] == [
        ("ci", "acme", True),
        ("ops", None, False),
    ]
    assert listed[0].hint == first[:7] and listed[0].created_at > 0
    with pytest.raises(Conflict, match="already exists"):
        create_key(state_db, name="ci")
    with pytest.raises(InvalidName):
        create_key(state_db, name="a b")
    with pytest.raises(InvalidName):
        create_key(state_db, name="x", namespace="../etc")
    revoke_key(state_db, "ci")
    assert count_keys(state_db) == 1 and hash_key(first) not in load_grants(state_db)
    with pytest.raises(NotFound):
        revoke_key(state_db, "ci")

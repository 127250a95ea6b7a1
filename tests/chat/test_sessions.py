"""Chat sessions on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from llamafarm.chat.providers.base import Message
from llamafarm.chat.sessions import (
    HISTORY_CHARACTERS,
    HISTORY_MESSAGES,
    append,
    delete_all_sessions,
    delete_session,
    history,
    open_session,
    purge_expired,
    turn,
)
from llamafarm.errors import BadRequest, Conflict, NotFound
from llamafarm.settings import Settings
from llamafarm.state import ChatSession, StateDB

BOT = {"namespace": "acme", "project": "bot"}


@pytest.fixture
def db(state_db: StateDB) -> StateDB:
    return state_db


def exchange(question: str, answer: str) -> list[Message]:
    return [Message("user", question), Message("assistant", answer)]


def test_turns_round_trip_in_order(db: StateDB) -> None:
    sid = open_session(db, **BOT, session_id=None, ttl=60)
    assert len(sid) == 32 and int(sid, 16) >= 0
    assert history(db, **BOT, session_id=sid) == []
    turns = [exchange(f"question {i}", f"answer {i}") for i in range(3)]
    for messages in turns:
        append(db, **BOT, session_id=sid, messages=messages)
    expected = [m for messages in turns for m in messages]
    assert history(db, **BOT, session_id=sid) == expected

    assert open_session(db, **BOT, session_id=sid, ttl=60) == sid  # used again: history kept
    assert history(db, **BOT, session_id=sid) == expected


def test_client_ids_are_kept_and_checked(db: StateDB) -> None:
    for good in ("abc-123", "a.b_c:d-E9", "x" * 128):
        assert open_session(db, **BOT, session_id=good, ttl=60) == good
        assert history(db, **BOT, session_id=good) == []
    for bad in ("", "a b", "x" * 129, "../etc", "café", "a\n", "a/b"):
        with pytest.raises(BadRequest, match="Invalid session id"):
            open_session(db, **BOT, session_id=bad, ttl=60)
        with pytest.raises(BadRequest):
            history(db, **BOT, session_id=bad)
        with pytest.raises(BadRequest):
            delete_session(db, **BOT, session_id=bad)


def test_unknown_session_is_404_naming_it(db: StateDB) -> None:
    with pytest.raises(NotFound, match=r"'nope'.*acme/bot"):
        history(db, **BOT, session_id="nope")
    with pytest.raises(NotFound, match="'nope'"):
        append(db, **BOT, session_id="nope", messages=exchange("q", "a"))
    with pytest.raises(NotFound, match="'nope'"), turn(db, **BOT, session_id="nope"):
        pass
    with pytest.raises(NotFound, match="'nope'"):
        delete_session(db, **BOT, session_id="nope")


def test_expired_session_starts_again_empty_under_the_same_id(db: StateDB) -> None:
    sid = open_session(db, **BOT, session_id="short", ttl=0.5)
    append(db, **BOT, session_id=sid, messages=exchange("q1", "a1"))
    assert open_session(db, **BOT, session_id=sid, ttl=0.5) == sid  # within the ttl: kept
    assert history(db, **BOT, session_id=sid) == exchange("q1", "a1")

    time.sleep(0.6)
    with pytest.raises(NotFound, match="'short'"):
        history(db, **BOT, session_id=sid)
    assert open_session(db, **BOT, session_id=sid, ttl=0.5) == sid
    assert history(db, **BOT, session_id=sid) == []
    append(db, **BOT, session_id=sid, messages=exchange("q2", "a2"))
    assert history(db, **BOT, session_id=sid) == exchange("q2", "a2")


def test_purge_expired(db: StateDB) -> None:
    open_session(db, **BOT, session_id="stale", ttl=0.05)
    append(db, **BOT, session_id="stale", messages=exchange("q", "a"))
    open_session(db, **BOT, session_id="fresh", ttl=60)
    open_session(db, **BOT, session_id="long", ttl=3600)
    time.sleep(0.1)
    assert purge_expired(db, ttl=60) == 1
    assert history(db, **BOT, session_id="fresh") == []
    with pytest.raises(NotFound):
        history(db, **BOT, session_id="stale")
    # A lower setting applies to sessions opened under a higher one.
    time.sleep(0.05)
    assert purge_expired(db, ttl=0.01) == 2
    assert delete_all_sessions(db, **BOT) == 0


def test_projects_are_isolated(db: StateDB) -> None:
    where = [
        BOT,
        {"namespace": "acme", "project": "other"},
        {"namespace": "zeta", "project": "bot"},
    ]
    for i, ref in enumerate(where):
        assert open_session(db, **ref, session_id="same", ttl=60) == "same"
        append(db, **ref, session_id="same", messages=exchange(f"q{i}", f"a{i}"))
    for i, ref in enumerate(where):
        assert history(db, **ref, session_id="same") == exchange(f"q{i}", f"a{i}")

    assert delete_all_sessions(db, **BOT) == 1
    with pytest.raises(NotFound):
        history(db, **BOT, session_id="same")
    assert history(db, **where[1], session_id="same") == exchange("q1", "a1")
    assert history(db, **where[2], session_id="same") == exchange("q2", "a2")


def test_delete_one_and_all(db: StateDB) -> None:
    for sid in ("s1", "s2", "s3"):
        open_session(db, **BOT, session_id=sid, ttl=60)
        append(db, **BOT, session_id=sid, messages=exchange("q", "a"))

    delete_session(db, **BOT, session_id="s1")
    with pytest.raises(NotFound):
        history(db, **BOT, session_id="s1")
    with pytest.raises(NotFound):
        delete_session(db, **BOT, session_id="s1")
    assert history(db, **BOT, session_id="s2") == exchange("q", "a")

    assert delete_all_sessions(db, **BOT) == 2
    assert delete_all_sessions(db, **BOT) == 0
    # A new session under a deleted id starts empty.
    open_session(db, **BOT, session_id="s2", ttl=60)
    assert history(db, **BOT, session_id="s2") == []


def test_concurrent_turns_are_serialised(db: StateDB) -> None:
    """4 threads x 5 turns on one session, over two engines (as two processes would be):
    every turn sees all turns before it and lands whole."""
    sid = open_session(db, **BOT, session_id="busy", ttl=60)
    other = StateDB(db.url)

    def talk(worker: int) -> None:
        engine = db if worker % 2 else other
        for j in range(5):
            with turn(engine, **BOT, session_id=sid) as past:
                time.sleep(0.005)  # the model generating
                answer = exchange(f"{worker}.{j} saw {len(past)}", f"answer {worker}.{j}")
                append(engine, **BOT, session_id=sid, messages=answer)

    try:
        with ThreadPoolExecutor(4) as pool:
            for done in [pool.submit(talk, worker) for worker in range(4)]:
                done.result()
    finally:
        other.close()

    messages = history(db, **BOT, session_id=sid)
    assert len(messages) == 40
    names = []
    for k in range(20):
        question, answer = messages[2 * k], messages[2 * k + 1]
        name, _, saw = question.content.partition(" saw ")
        assert (question.role, answer.role) == ("user", "assistant")
        assert answer.content == f"answer {name}"  # the turn's two messages are adjacent
        assert saw == str(2 * k)  # and it saw every turn before it
        names.append(name)
    assert sorted(names) == sorted(f"{w}.{j}" for w in range(4) for j in range(5))


def test_concurrent_appends_stay_whole(db: StateDB) -> None:
    sid = open_session(db, **BOT, session_id="appends", ttl=60)

    def talk(worker: int) -> None:
        for j in range(5):
            append(db, **BOT, session_id=sid, messages=exchange(f"q{worker}.{j}", f"a{worker}.{j}"))

    with ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(talk, worker) for worker in range(4)]:
            done.result()
    messages = history(db, **BOT, session_id=sid)
    assert len(messages) == 40
    pairs = [(messages[k].content, messages[k + 1].content) for k in range(0, 40, 2)]
    assert all(q[1:] == a[1:] and q[0] == "q" and a[0] == "a" for q, a in pairs)
    assert len(set(pairs)) == 20


def test_a_dead_holders_lease_expires(db: StateDB) -> None:
    sid = open_session(db, **BOT, session_id="orphan", ttl=60)
    append(db, **BOT, session_id=sid, messages=exchange("q1", "a1"))
    dead_until = time.time() + 0.5
    with db.session() as session:  # a process that died in the middle of a turn
        session.execute(
            update(ChatSession)
            .where(ChatSession.session_id == sid)
            .values(lock_owner="dead", lock_expires=dead_until)
        )

    with (
        pytest.raises(Conflict, match="'orphan' is busy"),
        turn(db, **BOT, session_id=sid, wait=0.1),
    ):
        pass
    with turn(db, **BOT, session_id=sid) as past:
        assert time.time() >= dead_until
        assert past == exchange("q1", "a1")
        append(db, **BOT, session_id=sid, messages=exchange("q2", "a2"))
    assert history(db, **BOT, session_id=sid) == exchange("q1", "a1") + exchange("q2", "a2")
    with db.session() as session:
        assert session.scalars(select(ChatSession.lock_owner)).one() is None


def test_a_turn_renews_its_lease_while_it_lasts(db: StateDB) -> None:
    sid = open_session(db, **BOT, session_id="long", ttl=60)

    def expires() -> float | None:
        with db.session() as session:
            return session.scalars(select(ChatSession.lock_expires)).one()

    with turn(db, **BOT, session_id=sid, lease=2.0):
        first = expires()
        assert first is not None
        deadline = time.monotonic() + 30
        while (renewed := expires()) == first:  # renewed every 2/3 s
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.05)
        assert renewed is not None and renewed > first
        # Past its first expiry the turn still holds the session.
        while time.time() <= first:
            time.sleep(0.05)
        with pytest.raises(Conflict), turn(db, **BOT, session_id=sid, wait=0):
            pass
    assert expires() is None
    time.sleep(1.0)  # the renewals ended with the turn
    assert expires() is None


def test_a_turn_that_fails_lets_the_next_one_go(db: StateDB) -> None:
    sid = open_session(db, **BOT, session_id="oops", ttl=60)
    with pytest.raises(RuntimeError), turn(db, **BOT, session_id=sid):
        raise RuntimeError("the model fell over")
    with turn(db, **BOT, session_id=sid, wait=0.5) as past:
        assert past == []


def test_a_session_deleted_during_a_turn_stays_deleted(db: StateDB) -> None:
    sid = open_session(db, **BOT, session_id="gone", ttl=60)
    with turn(db, **BOT, session_id=sid):
        delete_session(db, **BOT, session_id=sid)
        with pytest.raises(NotFound, match="'gone'"):
            append(db, **BOT, session_id=sid, messages=exchange("q", "a"))
    with pytest.raises(NotFound):
        history(db, **BOT, session_id=sid)


def test_deleting_a_project_deletes_its_sessions(
    client: TestClient, project: dict[str, object], settings: Settings
) -> None:
    db = StateDB(settings.state_url)
    try:
        open_session(db, **BOT, session_id="s", ttl=60)
        append(db, **BOT, session_id="s", messages=exchange("q", "a"))
        open_session(db, namespace="acme", project="kept", session_id="s", ttl=60)
        assert client.delete("/v1/projects/acme/bot").status_code == 200
        with pytest.raises(NotFound):
            history(db, **BOT, session_id="s")
        assert history(db, namespace="acme", project="kept", session_id="s") == []
    finally:
        db.close()


def test_a_turn_reads_only_the_newest_history_within_the_caps(db: StateDB) -> None:
    sid = open_session(db, **BOT, session_id=None, ttl=60)
    append(db, **BOT, session_id=sid, messages=exchange("x" * 600_000, "a0"))
    append(db, **BOT, session_id=sid, messages=exchange("y" * 500_000, "a1"))
    every = history(db, **BOT, session_id=sid)  # the history route still lists all
    assert len(every) == 4
    with turn(db, **BOT, session_id=sid) as messages:  # 1,100,004 characters: the oldest goes
        assert messages == every[1:]
        assert sum(len(m.content) for m in messages) <= HISTORY_CHARACTERS
    many = [m for i in range(HISTORY_MESSAGES // 2 + 1) for m in exchange(f"q{i}", f"a{i}")]
    append(db, **BOT, session_id=sid, messages=many)
    with turn(db, **BOT, session_id=sid) as messages:
        assert messages == many[-HISTORY_MESSAGES:]

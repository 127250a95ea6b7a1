"""Event recording and querying on SQLite and PostgreSQL; timelines; retention."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from llamafarm import events
from llamafarm.errors import NotFound
from llamafarm.events import Timeline
from llamafarm.state import StateDB


@pytest.fixture
def db(state_db: StateDB) -> StateDB:
    return state_db


def add(
    db: StateDB, kind: str = "inference", project: str = "bot", started: float | None = None
) -> str:
    timeline = Timeline()
    if started is not None:
        timeline.started = started
    timeline.mark("request_received")
    event_id = events.record(
        db,
        kind=kind,
        namespace="acme",
        project=project,
        timeline=timeline,
        summary={"status": "success"},
        data={"n": 1},
    )
    assert event_id is not None
    return event_id


def test_marks_last_from_the_one_before_and_steps_time_themselves() -> None:
    timeline = Timeline()
    time.sleep(0.01)
    timeline.mark("first", size=3)
    with timeline.step("work") as counts:
        time.sleep(0.02)
        counts["done"] = 5
    timeline.mark("after")
    first, work, after = timeline.sub_events
    assert first["duration_ms"] == first["elapsed_ms"] >= 10
    assert first["data"] == {"size": 3}
    assert work["duration_ms"] >= 20 and work["data"] == {"done": 5}
    assert work["elapsed_ms"] >= first["elapsed_ms"]
    timeline.span("overlapping", 1.0, 4.5, tool="t")
    assert timeline.sub_events[-1]["elapsed_ms"] == 1.0
    assert timeline.sub_events[-1]["duration_ms"] == 3.5
    # a mark after a step lasts from the step's end (each figure rounded to 1 us)
    step_end = work["elapsed_ms"] + work["duration_ms"]
    assert after["elapsed_ms"] - after["duration_ms"] == pytest.approx(step_end, abs=0.002)


def test_a_failing_step_is_kept_with_its_error() -> None:
    timeline = Timeline()
    with pytest.raises(ValueError), timeline.step("parse"):
        raise ValueError("broken")
    assert timeline.sub_events[0]["name"] == "parse"
    assert timeline.sub_events[0]["data"] == {"error": "ValueError"}


def test_record_list_get(db: StateDB) -> None:
    first = add(db)
    second = add(db, kind="rag_processing")
    add(db, project="other")
    page = events.list_events(db, namespace="acme", project="bot")
    assert page.total == 2
    assert [e.event_id for e in page.events] == [second, first]
    event = events.get_event(db, namespace="acme", project="bot", event_id=first)
    assert event.data == {"n": 1}
    assert [s["name"] for s in event.sub_events] == ["request_received"]
    assert event.timestamp.endswith("Z")
    with pytest.raises(NotFound):
        events.get_event(db, namespace="acme", project="other", event_id=first)


def test_retention_purges_old_events_only(db: StateDB) -> None:
    now = time.time()
    add(db, started=now - 31 * 86400)
    kept = add(db, started=now - 29 * 86400)
    assert events.purge_events(db, retention_days=30, now=now) == 1
    page = events.list_events(db, namespace="acme", project="bot")
    assert [e.event_id for e in page.events] == [kept]


def test_a_database_that_refuses_the_write_does_not_fail_the_operation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    with db.engine.begin() as connection:
        connection.execute(text("DROP TABLE event_logs"))
    timeline = Timeline()
    recorded = events.record(
        db, kind="inference", namespace="a", project="b", timeline=timeline, summary={}, data={}
    )
    db.close()
    assert recorded is None
    assert "recording a inference event of a/b failed" in caplog.text

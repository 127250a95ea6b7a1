"""Event logs through the API: chat completions and processed files record events with ordered,
timed sub-events; listing filters, pages and isolates projects."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from llamafarm.cli.main import app as cli
from llamafarm.state import TaskFile
from llamafarm.tasks.processing import WorkerContext, run_file
from tests.api.test_chat import ASK, BASE, chat, events, fake, use
from tests.api.test_rag import FILES, ingest
from tests.chat.openai_server import OpenAIServer

__all__ = ["fake"]  # the fixture, imported for its use here

INFERENCE_STEPS = [
    "request_received",
    "rag_query_start",
    "rag_retrieval_complete",
    "llm_inference_start",
    "llm_inference_complete",
    "response_generated",
]


def listed(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get(f"{BASE}/event_logs", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def detail(client: TestClient, event_id: str) -> dict[str, Any]:
    response = client.get(f"{BASE}/event_logs/{event_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for(client: TestClient, count: int, **params: Any) -> dict[str, Any]:
    """Events are written on a thread once the response is out: wait until `count` are in."""
    deadline = time.monotonic() + 30
    while (page := listed(client, **params))["total"] < count:
        assert time.monotonic() < deadline, f"only {page['total']} of {count} events"
        time.sleep(0.05)
    return page


def names(event: dict[str, Any]) -> list[str]:
    return [sub["name"] for sub in event["sub_events"]]


def assert_timed(event: dict[str, Any]) -> None:
    """Sub-events in time order, each with a duration, all within the event."""
    elapsed = [sub["elapsed_ms"] for sub in event["sub_events"]]
    assert elapsed == sorted(elapsed)
    assert all(sub["duration_ms"] >= 0 for sub in event["sub_events"])
    assert event["summary"]["duration_ms"] >= elapsed[-1]
    for sub in event["sub_events"]:
        datetime.fromisoformat(sub["timestamp"])


@pytest.mark.usefixtures("project")
def test_a_chat_with_rag_records_an_inference_event(client: TestClient, fake: OpenAIServer) -> None:
    ingest(client, FILES)
    use(client, fake)
    response = chat(client)
    assert response.status_code == 200, response.text

    page = listed(client, type="inference")
    assert page["total"] == 1 and page["limit"] == 10 and page["offset"] == 0
    brief = page["events"][0]
    assert brief["event_id"].startswith("evt_") and "_inference_" in brief["event_id"]
    assert brief["type"] == "inference"
    assert brief["summary"]["model"] == "fake-model"
    assert brief["summary"]["tokens"] == 18  # the fake server's usage: 11 + 7
    assert brief["summary"]["status"] == "success" and brief["summary"]["error"] is None
    assert "sub_events" not in brief

    event = detail(client, brief["event_id"])
    assert names(event) == INFERENCE_STEPS
    assert_timed(event)
    retrieved = event["sub_events"][2]["data"]
    assert retrieved["chunks"] == len(response.json()["sources"]) > 0
    assert 0 < retrieved["mean_score"] <= 1
    data = event["data"]
    assert data["messages"] == ASK
    assert data["response"] == {
        "content": "Because the ice melts.",
        "finish_reason": "stop",
    }
    assert data["tokens"] == {"prompt": 11, "completion": 7, "total": 18}
    assert data["session_id"] == response.headers["X-Session-ID"]
    assert data["provider"] == "openai" and data["stream"] is False


@pytest.mark.usefixtures("project")
def test_a_streamed_chat_marks_its_first_token(client: TestClient, fake: OpenAIServer) -> None:
    use(client, fake)
    response = chat(client, stream=True, rag_enabled=False)
    assert events(response)[-1]["choices"][0]["finish_reason"] == "stop"

    event = detail(client, wait_for(client, 1, type="inference")["events"][0]["event_id"])
    assert names(event) == [
        "request_received",
        "llm_inference_start",
        "llm_first_token",
        "llm_inference_complete",
        "response_generated",
    ]
    assert_timed(event)
    assert event["data"]["stream"] is True
    assert event["data"]["response"]["content"] == "Because the ice melts."
    assert event["summary"]["tokens"] == 18


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_chat_records_its_error(
    client: TestClient, fake: OpenAIServer, stream: bool
) -> None:
    use(client, fake, timeout=1)
    fake.mode = "error"
    response = chat(client, stream=stream, rag_enabled=False)
    assert response.status_code == 502

    summary = wait_for(client, 1)["events"][0]["summary"]
    assert summary["status"] == "error"
    assert "model exploded" in summary["error"] and summary["tokens"] is None


@pytest.mark.usefixtures("project")
def test_processed_files_record_their_steps(client: TestClient) -> None:
    ingest(client, FILES)
    # A broken file fails alone, and its event says why.
    response = client.post(
        f"{BASE}/datasets/documents/data",
        params={"auto_process": "true"},
        files={"file": ("broken.pdf", b"%PDF-1.4 junk")},
    )
    assert response.status_code == 200, response.text
    state = client.app.state  # type: ignore[attr-defined]
    with state.db.session() as session:
        pending = session.scalars(select(TaskFile.id).where(TaskFile.state == "PENDING")).all()
    context = WorkerContext(db=state.db, projects=state.projects, worker="test")
    assert [run_file(context, file_id) for file_id in pending] == ["FAILURE"]

    page = listed(client, type="rag_processing")
    assert page["total"] == 4
    failed, *processed = page["events"]  # newest first
    assert failed["summary"]["file"] == "broken.pdf"
    assert failed["summary"]["status"] == "FAILURE" and failed["summary"]["error"]
    failure = detail(client, failed["event_id"])
    assert names(failure) == ["parse"] and failure["sub_events"][0]["data"]["error"]

    assert sorted(e["summary"]["file"] for e in processed) == sorted(FILES)
    for brief in processed:
        assert brief["summary"]["status"] == "SUCCESS" and brief["summary"]["chunks"] >= 1
        event = detail(client, brief["event_id"])
        assert names(event) == ["parse", "chunk", "embed", "store"]
        assert_timed(event)
        counts = {sub["name"]: sub["data"] for sub in event["sub_events"]}
        assert counts["chunk"]["chunks"] == brief["summary"]["chunks"]
        assert counts["embed"]["chunks"] == counts["store"]["chunks"] == counts["chunk"]["chunks"]
        assert counts["parse"]["characters"] > 0
        assert event["data"]["task_id"] and event["data"]["dataset"] == "documents"


@pytest.mark.usefixtures("project")
def test_filters_and_pages(client: TestClient, fake: OpenAIServer) -> None:
    ingest(client, FILES)
    use(client, fake)
    for _ in range(3):
        assert chat(client, rag_enabled=False).status_code == 200

    everything = listed(client, limit=100)
    assert everything["total"] == 6
    stamps = [e["timestamp"] for e in everything["events"]]
    assert stamps == sorted(stamps, reverse=True)
    assert [e["type"] for e in everything["events"][:3]] == ["inference"] * 3

    pages = [listed(client, limit=4, offset=offset) for offset in (0, 4)]
    assert [len(p["events"]) for p in pages] == [4, 2]
    assert [e["event_id"] for p in pages for e in p["events"]] == [
        e["event_id"] for e in everything["events"]
    ]
    assert listed(client, offset=10)["events"] == []
    assert listed(client, type="rag_processing")["total"] == 3
    assert listed(client, type="nothing")["total"] == 0

    now = datetime.now(UTC)
    assert listed(client, start_time=(now - timedelta(hours=1)).isoformat())["total"] == 6
    assert listed(client, start_time=(now + timedelta(hours=1)).isoformat())["total"] == 0
    assert listed(client, end_time=(now - timedelta(hours=1)).isoformat())["total"] == 0
    naive = (datetime.now(UTC) + timedelta(minutes=5)).replace(tzinfo=None)
    assert listed(client, end_time=naive.isoformat())["total"] == 6  # no zone = UTC
    third = everything["events"][2]["timestamp"]
    assert listed(client, start_time=third)["total"] == 3


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize(
    "params",
    [
        {"start_time": "yesterday"},
        {"end_time": "2024-13-45T00:00:00Z"},
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"offset": 2**63},
        {"limit": "ten"},
    ],
)
def test_bad_parameters_are_422(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get(f"{BASE}/event_logs", params=params)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()


@pytest.mark.usefixtures("project")
def test_events_of_another_project_are_not_visible(client: TestClient, fake: OpenAIServer) -> None:
    use(client, fake)
    assert chat(client, rag_enabled=False).status_code == 200
    event_id = listed(client)["events"][0]["event_id"]
    other = "/v1/projects/acme/other"
    assert client.post("/v1/projects/acme", json={"name": "other"}).status_code == 201

    assert client.get(f"{other}/event_logs").json()["total"] == 0
    hidden = client.get(f"{other}/event_logs/{event_id}")
    assert hidden.status_code == 404 and event_id in hidden.json()["detail"]
    assert client.get(f"{BASE}/event_logs/evt_nope").status_code == 404
    missing = client.get("/v1/projects/acme/nope/event_logs")
    assert missing.status_code == 404 and "acme/nope" in missing.json()["detail"]
    assert client.get("/v1/projects/acme/..%2F/event_logs").status_code in (400, 404)

    # Deleting a project deletes its events.
    assert client.delete(BASE).status_code == 200
    assert client.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
    assert listed(client)["total"] == 0


def test_no_events_for_a_project_that_does_not_exist(client: TestClient) -> None:
    """A request to a missing project logs nothing that a later project of that name would
    inherit; nor does anything left from a deleted one."""
    ghost = chat(client)  # BASE's project does not exist yet
    assert ghost.status_code == 404
    assert client.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
    assert listed(client)["total"] == 0


@pytest.mark.usefixtures("project")
def test_lf_events_prints_what_clients_sent_as_text(live_server: str) -> None:
    """A model name like `[/oops]` is shown as it is, not read as markup (which crashed)."""
    base = f"{live_server}{BASE}"
    refused = httpx.post(
        f"{base}/chat/completions", json={"messages": ASK, "model": "[/oops]"}, timeout=30
    )
    assert refused.status_code == 400
    event_id = httpx.get(f"{base}/event_logs").json()["events"][0]["event_id"]
    runner = CliRunner()
    for args in (["list"], ["show", event_id]):
        result = runner.invoke(
            cli, ["--server-url", live_server, "events", *args, "--project", "acme/bot"]
        )
        assert result.exit_code == 0, result.output
        assert "[/oops]" in result.output

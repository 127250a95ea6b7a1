"""`lf eval` on a tiny BEIR folder through a real server and worker, and the evaluate API's
answers to bad question sets; one server for the module."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LF

pytestmark = pytest.mark.slow

BEIR = Path(__file__).parent.parent / "fixtures" / "beir-tiny"
EVALUATE = "/v1/projects/default/kb/rag/evaluate"
NDJSON = {"Content-Type": "application/x-ndjson"}


def ndcg(gains: list[int], ideal: list[int]) -> float:
    """nDCG by hand: gain = grade, discount log2(rank + 1)."""

    def dcg(values: list[int]) -> float:
        return sum(g / math.log2(rank + 2) for rank, g in enumerate(values))

    return dcg(gains) / dcg(ideal)


# q1 ranks alps (grade 1) then norway (grade 2); q2's one relevant document (norway) comes
# second; q3 and q4 find theirs first; q5 judges no document relevant, so it is no question.
EXPECTED = {
    "q1": ndcg([1, 2], [2, 1]),
    "q2": ndcg([0, 1], [1]),
    "q3": 1.0,
    "q4": 1.0,
}


@pytest.fixture(scope="module")
def server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    url: str = start_server().url  # with its ingestion worker
    folder = tmp_path_factory.mktemp("kb")
    assert lf(url, "init", "kb", cwd=folder).returncode == 0
    return url


def lf(url: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [LF, "--server-url", url, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def evaluate(url: str, body: str | bytes, **params: Any) -> httpx.Response:
    return httpx.post(url + EVALUATE, content=body, params=params, headers=NDJSON, timeout=60)


def test_lf_eval_ingests_a_beir_folder_and_scores_it(server: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    args = ("eval", str(BEIR), "--project", "default/kb", "--json", str(out))
    result = lf(server, *args, "--strategy", "hybrid_search", "--strategy", "basic")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Created dataset beir-tiny" in result.stdout
    assert "Retrieval on main_db: 4 question(s)" in result.stdout
    assert "atlantis.txt (line 4)" in result.stderr  # judged, but not in the corpus

    body = json.loads(out.read_text())
    assert body["questions"] == 4 and body["skipped"] == []
    assert body["unknown_documents"] == [{"question": "q4", "line": 4, "document": "atlantis.txt"}]
    mean = sum(EXPECTED.values()) / len(EXPECTED)
    for row in body["strategies"]:
        assert row["ndcg_10"] == pytest.approx(mean, abs=1e-4), row
        assert row["recall_10"] == row["recall_100"] == 1.0
        assert row["mrr"] == pytest.approx((1 + 0.5 + 1 + 1) / 4)
        assert row["p50_ms"] > 0
        # The worst query first: q2, whose relevant document came second.
        [q2, q1] = row["worst"]
        assert q2["id"] == "q2" and q2["ndcg_10"] == pytest.approx(EXPECTED["q2"], abs=1e-4)
        assert [r["document"] for r in q2["returned"][:2]] == ["alps.txt", "norway.txt"]
        assert [r["grade"] for r in q2["returned"][:2]] == [0, 1]
        assert q1["id"] == "q1" and q1["ndcg_10"] == pytest.approx(EXPECTED["q1"], abs=1e-4)
        assert q1["relevant"] == ["alps.txt", "norway.txt"]
    assert [row["strategy"] for row in body["strategies"]] == ["hybrid_search", "basic"]
    assert f"{mean:.4f}" in result.stdout
    assert "[q2] Why do alpine glaciers melt into meltwater?" in result.stdout

    # Again: the corpus is there, so nothing is uploaded; a question set file works too,
    # naming documents by hash or by phrases a chunk must hold.
    again = lf(server, "eval", str(BEIR), "--project", "default/kb", "--worst", "0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "all 6 documents already ingested" in again.stdout
    assert "Worst queries" not in again.stdout


def test_phrases_and_hashes_name_what_is_relevant(server: str, tmp_path: Path) -> None:
    files = httpx.get(f"{server}/v1/projects/default/kb/datasets").json()["datasets"]
    [orchard] = [
        f["hash"]
        for d in files
        for f in d["details"]["file_details"]
        if f["original_filename"] == "orchard.txt"
    ]
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        json.dumps({"id": "apples", "query": "When do apple trees blossom?", "relevant": [orchard]})
        + "\n\n"
        + json.dumps({"query": "Why do alpine glaciers melt?", "expected": ["slowly than"]})
        + "\n"
    )
    result = lf(server, "eval", str(questions), "--project", "default/kb", "-s", "basic")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Retrieval on main_db: 2 question(s)" in result.stdout
    response = evaluate(server, questions.read_text(), strategy="basic")
    assert response.status_code == 200, response.text
    [row] = response.json()["strategies"]
    # The phrase is in the Norwegian document, the second result: (1 + 1/log2(3)) / 2.
    assert row["ndcg_10"] == pytest.approx((1 + EXPECTED["q2"]) / 2, abs=1e-4)
    [worst] = row["worst"]
    assert worst["id"] == "line 3" and worst["relevant"] == ["slowly than"]
    assert [r["grade"] for r in worst["returned"][:2]] == [0, 1]


@pytest.mark.parametrize(
    ("body", "params", "status", "detail"),
    [
        ("", {}, 400, "The question set is empty"),
        (
            '{"query": "ice", "relevant": ["alps.txt"]}\n{"query": "ice",\n',
            {},
            400,
            "line 2: not JSON",
        ),
        ('{"query": "ice"}', {}, 400, "line 1: give either `relevant`"),
        ('{"query": "", "relevant": ["a"]}', {}, 400, "line 1: `query` must be"),
        ("[1, 2]", {}, 400, "line 1: expected a JSON object"),
        ('{"query": "ice", "relevant": {"alps.txt": -1}}', {}, 400, "grade of 'alps.txt'"),
        ('{"query": "ice", "relevant": ["a"], "colour": 1}', {}, 400, "unknown key(s) colour"),
        (
            '{"id": 1, "query": "a", "expected": "x"}\n{"id": 1, "query": "b", "expected": "y"}',
            {},
            400,
            "line 2: id '1' was already used on line 1",
        ),
        (b"\xff\xfe", {}, 400, "not UTF-8"),
        ('{"query": "ice", "relevant": ["nowhere.txt"]}', {}, 400, "unknown: nowhere.txt"),
        ('{"query": "ice", "expected": ["ice"]}', {"database": "nope"}, 404, "'nope' not found"),
        (
            '{"query": "ice", "expected": ["ice"]}',
            {"strategy": "nope"},
            400,
            "Unknown retrieval_strategy 'nope'",
        ),
        ('{"query": "ice", "expected": ["ice"]}', {"worst": -1}, 422, "worst"),
    ],
)
def test_bad_question_sets_are_4xx_naming_the_problem(
    server: str, body: str | bytes, params: dict[str, Any], status: int, detail: str
) -> None:
    response = evaluate(server, body, **params)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


def test_an_unknown_project_is_404(server: str) -> None:
    response = httpx.post(
        f"{server}/v1/projects/default/nope/rag/evaluate",
        content='{"query": "ice", "expected": ["ice"]}',
        headers=NDJSON,
    )
    assert response.status_code == 404, response.text

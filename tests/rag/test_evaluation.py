"""The retrieval measures against values computed by hand."""

from __future__ import annotations

import math

import pytest

from llamafarm.rag.evaluation import measure


def test_measures_match_hand_computed_values() -> None:
    judged = {"a": 2, "b": 1, "c": 1, "z": 0}
    qrels = {"q": judged, "perfect": judged, "none": {"a": 1}, "missing": {"a": 1}}
    rankings = {"q": ["x", "a", "c", "z"], "perfect": ["a", "b", "c"], "none": ["x", "y"]}
    got = measure(qrels, rankings)
    # DCG = 2/log2(3) + 1/log2(4); IDCG = 2/1 + 1/log2(3) + 1/log2(4)
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert got["q"]["ndcg_cut_10"] == pytest.approx(dcg / idcg)
    assert got["q"]["recall_10"] == pytest.approx(2 / 3)
    assert got["q"]["recip_rank"] == 0.5
    assert got["perfect"] == {
        "ndcg_cut_10": pytest.approx(1.0),
        "recall_10": 1.0,
        "recall_100": 1.0,
        "recip_rank": 1.0,
    }
    assert got["none"] == got["missing"] == dict.fromkeys(got["none"], 0.0)


def test_only_the_first_ten_count_for_ndcg_and_recall_at_10() -> None:
    ranking = [f"x{i}" for i in range(10)] + ["a"]
    [got] = measure({"q": {"a": 1}}, {"q": ranking}).values()
    assert got["ndcg_cut_10"] == got["recall_10"] == 0.0
    assert got["recall_100"] == 1.0 and got["recip_rank"] == pytest.approx(1 / 11)


def test_the_ideal_ranking_is_cut_at_ten_too() -> None:
    judged = {f"d{i}": 1 for i in range(12)}
    [got] = measure({"q": judged}, {"q": [f"d{i}" for i in range(12)]}).values()
    assert got["ndcg_cut_10"] == pytest.approx(1.0)
    assert got["recall_10"] == pytest.approx(10 / 12) and got["recall_100"] == 1.0

"""Hugging Face model ids of GGUF repos: which file `ORG/NAME[:QUANT]` names in a real cache
layout (the bundled model under two quant names, decoys as sparse files), the 503 of a model
not cached, and downloads of one quantization from a fake Hub on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamafarm import bundled
from llamafarm.chat.providers.universal import model_path
from llamafarm.errors import BadRequest, ProviderUnavailable
from llamafarm.models import download
from llamafarm.models.gguf import Choice, cached_gguf, choose, models
from tests.models.gguf_cache import cache_gguf
from tests.models.hub import FakeHub

REPO = "acme/Tiny-GGUF"
SMALL, BIG = 1_000, 10 * 1024**3
"""The decoys' sizes: one smaller than the bundled model, one far bigger (sparse on disk)."""


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`acme/Tiny-GGUF` with the bundled model as Q4_K_M and Q8_0, a small Q2_K, a big F16 and
    a projector; `acme/NoDefault-GGUF` without Q4_K_M. HF_HUB_CACHE points at it."""
    cache = tmp_path / "hub"
    real = bundled.chat_path()
    cache_gguf(
        cache,
        REPO,
        {
            "tiny-Q4_K_M.gguf": real,
            "tiny-Q8_0.gguf": real,
            "tiny-Q2_K.gguf": SMALL,
            "tiny-F16.gguf": BIG,
            "mmproj-tiny-Q8_0.gguf": SMALL // 2,
            "README.md": 10,
        },
    )
    cache_gguf(cache, "acme/NoDefault-GGUF", {"n-Q8_0.gguf": real, "n-Q5_K_S.gguf": SMALL})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_a_quant_picks_its_file_whatever_its_case(hub_cache: Path) -> None:
    for quant in ("Q8_0", "q8_0"):
        path = cached_gguf(f"{REPO}:{quant}")
        assert path.name == "tiny-Q8_0.gguf"
        assert path.parent.parent.parent == hub_cache / "models--acme--Tiny-GGUF"
        assert path.read_bytes()[:4] == b"GGUF"
    assert cached_gguf(f"{REPO}:f16").name == "tiny-F16.gguf"


def test_no_quant_picks_q4_k_m_else_the_smallest(hub_cache: Path) -> None:
    assert cached_gguf(REPO).name == "tiny-Q4_K_M.gguf"  # although Q2_K is smaller
    assert cached_gguf("acme/NoDefault-GGUF").name == "n-Q5_K_S.gguf"
    assert model_path(f"{REPO}:Q4_K_M") == cached_gguf(REPO)  # the provider's own lookup


def test_a_quant_is_a_whole_word_of_the_name() -> None:
    files = [("m-Q4_K_M.gguf", 5), ("m.Q4_K_S.gguf", 4), ("m_IQ4_XS.gguf", 3)]
    assert choose(models(files), "Q4_K") is None
    assert choose(models(files), "Q4") is None
    assert choose(models(files), "Q4_K_M") == Choice(("m-Q4_K_M.gguf",), 5, 1)
    assert choose(models(files), "q4_k_s") == Choice(("m.Q4_K_S.gguf",), 4, 1)
    assert choose(models(files), "iq4_xs") == Choice(("m_IQ4_XS.gguf",), 3, 1)


def test_a_split_model_is_its_first_shard_when_every_shard_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = {f"Q8_0/m-Q8_0-0000{i}-of-00003.gguf": SMALL + i for i in (2, 1, 3)}
    snapshot = cache_gguf(tmp_path, "acme/split", {**shards, "m-Q4_K_M.gguf": SMALL})
    cache_gguf(tmp_path, "acme/gap", {"m-Q8_0-00001-of-00002.gguf": SMALL})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert cached_gguf("acme/split:Q8_0") == snapshot / "Q8_0" / "m-Q8_0-00001-of-00003.gguf"
    assert cached_gguf("acme/split") == snapshot / "m-Q4_K_M.gguf"
    with pytest.raises(ProviderUnavailable, match="has 1 of its 2 shards"):
        cached_gguf("acme/gap:Q8_0")


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("acme/Missing-GGUF:Q4_K_M", "is not in the Hugging Face cache"),
        ("acme/Missing-GGUF", "is not in the Hugging Face cache"),
        (f"{REPO}:Q6_K", "has no quantization 'Q6_K'"),
    ],
)
def test_a_model_not_cached_is_a_503_naming_it_and_the_command(
    hub_cache: Path, model: str, says: str
) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        model_path(model)
    assert caught.value.status == 503
    assert says in caught.value.detail
    assert f"`lf models pull {model}`" in caught.value.detail
    if "Q6_K" in model:  # what the cache does hold, so the user can pick
        assert "tiny-Q8_0.gguf" in caught.value.detail


def test_a_path_that_is_not_an_id_stays_a_path(hub_cache: Path) -> None:
    assert model_path(str(bundled.chat_path())) == bundled.chat_path()
    with pytest.raises(ProviderUnavailable, match="does not exist"):
        model_path(str(hub_cache / "a" / "b" / "missing.gguf"))


# -- downloads --------------------------------------------------------------------------------

HUB_REPO = {
    "README.md": b"# tiny",
    "t-Q4_K_M.gguf": b"GGUF" + b"4" * 300,
    "t-Q8_0.gguf": b"GGUF" + b"8" * 500,
    "t-Q2_K.gguf": b"GGUF" + b"2" * 100,
}


def fetched(hub: FakeHub) -> set[str]:
    return {path.rsplit("/", 1)[-1] for method, path in hub.requests if method == "GET"}


@pytest.mark.timeout(60)
def test_a_download_of_a_quant_fetches_that_file_only(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    with FakeHub({"acme/t": HUB_REPO}) as hub:
        events = list(download("acme/t:q8_0", folder=cache, hub=hub.url, poll=0.05))
        assert events[-1]["event"] == "complete", events
        assert events[-1]["model_name"] == "acme/t:q8_0"
        assert Path(events[-1]["path"]).name == "t-Q8_0.gguf"
        assert Path(events[-1]["path"]).read_bytes() == HUB_REPO["t-Q8_0.gguf"]
        assert [e["total"] for e in events if e["event"] == "progress"][-1] == 504
        assert "t-Q8_0.gguf" in fetched(hub)
        assert fetched(hub) & {"t-Q4_K_M.gguf", "t-Q2_K.gguf", "README.md"} == set()
        again = list(download("acme/t:Q8_0", folder=cache, hub=hub.url))
        assert again == [{**events[-1], "model_name": "acme/t:Q8_0", "cached": True}]
        default = list(download("acme/t", folder=cache / "other", hub=hub.url, poll=0.05))
    assert Path(default[-1]["path"]).name == "t-Q4_K_M.gguf"
    assert cached_gguf("acme/t:Q8_0", folder=cache).name == "t-Q8_0.gguf"


@pytest.mark.timeout(60)
def test_a_download_of_a_quant_the_repo_lacks_is_an_error_naming_it(tmp_path: Path) -> None:
    with FakeHub({"acme/t": HUB_REPO, "acme/plain": {"model.onnx": b"x"}}) as hub:
        events = list(download("acme/t:Q6_K", folder=tmp_path, hub=hub.url))
        plain = list(download("acme/plain:Q4_K_M", folder=tmp_path, hub=hub.url))
    assert [e["event"] for e in events] == ["error"]
    assert "no GGUF file of quantization 'Q6_K'" in events[0]["message"]
    assert "t-Q8_0.gguf" in events[0]["message"]
    assert [e["event"] for e in plain] == ["error"]
    assert "GGUF files: none" in plain[0]["message"]


@pytest.mark.parametrize("name", ["acme/t:", "acme/t:Q4:K", "acme/t:../x", "/etc/x:Q8_0"])
def test_a_malformed_quantized_id_is_refused(name: str) -> None:
    with pytest.raises(BadRequest):
        download(name)

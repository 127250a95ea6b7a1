from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from llamafarm.datasets.blobs import BlobStore, check_hash
from llamafarm.datasets.service import clean_filename
from llamafarm.errors import BadRequest, PayloadTooLarge


def test_put_streams_hashes_and_stores_once(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "raw")
    content = b"hello world\n" * 200_000  # several read steps
    file_hash, size = blobs.put(io.BytesIO(content), limit=10 << 20)
    assert file_hash == hashlib.sha256(content).hexdigest()
    assert size == len(content)
    assert blobs.path(file_hash).read_bytes() == content
    assert blobs.put(io.BytesIO(content), limit=10 << 20) == (file_hash, size)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [file_hash]


def test_put_refuses_oversized_and_empty_files_without_leftovers(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "raw")
    with pytest.raises(PayloadTooLarge, match="1 MiB limit"):
        blobs.put(io.BytesIO(b"x" * ((1 << 20) + 1)), limit=1 << 20)
    with pytest.raises(BadRequest, match="empty"):
        blobs.put(io.BytesIO(b""), limit=1 << 20)
    assert list((tmp_path / "raw").iterdir()) == []


@pytest.mark.parametrize("bad", ["", "../../etc/passwd", "A" * 64, "0" * 63, "0" * 65])
def test_hashes_are_checked_before_any_path_is_built(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BadRequest):
        check_hash(bad)
    with pytest.raises(BadRequest):
        BlobStore(tmp_path).path(bad)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\notes.txt", "notes.txt"),
        ("bad\x00name\n.txt", "badname.txt"),
        ("", "upload"),
        ("/", "upload"),
    ],
)
def test_filenames_keep_only_their_base_name(given: str, kept: str) -> None:
    assert clean_filename(given) == kept

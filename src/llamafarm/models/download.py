"""Downloading a model into the cache, told as a stream of progress events.

`huggingface_hub.snapshot_download` runs on a thread of its own; the events come from watching
the model's blobs grow on disk, against the sizes the Hub lists for its files. Every failure is
an `error` event that names the model: once a stream has begun it cannot turn into an HTTP error.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils.tqdm import tqdm as hub_tqdm

from llamafarm.errors import BadGateway, BadRequest, LfError, NotFound, Unavailable
from llamafarm.models.cache import (
    PROVIDER,
    cache_dir,
    check_model_name,
    check_provider,
    repo_folder,
)
from llamafarm.models.gguf import cached_gguf, choose, models
from llamafarm.names import HfModelId, hf_model_id

Event = dict[str, Any]

POLL = 0.5
"""Seconds between looks at the download's files."""
HEARTBEAT = 10.0
"""Seconds after which a progress event goes out even when nothing moved, so a client that
reads with a timeout does not give up on a slow download."""


def hub_timeout() -> float:
    """Seconds to wait for the Hub to connect or answer: `HF_HUB_ETAG_TIMEOUT` (default 10)."""
    return float(constants.HF_HUB_ETAG_TIMEOUT)


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def download(
    model_name: str,
    *,
    provider: str = PROVIDER,
    folder: Path | None = None,
    hub: str | None = None,
    poll: float = POLL,
    timeout: float | None = None,
) -> Generator[Event, None, None]:
    """Check the request now (errors raise), then the events of fetching the model: `progress`
    ones, then `complete` or `error`. A model already cached completes at once, offline too.
    A consumer that stops early leaves the download running to its end in the background.
    `hub` and `timeout` default to huggingface_hub's (`HF_ENDPOINT`, `HF_HUB_ETAG_TIMEOUT`).

    Of a repo with GGUF files only the one model the id names is fetched (`ORG/NAME:QUANT`,
    or `ORG/NAME`'s default, as `models.gguf` chooses), not every quantization."""
    check_provider(provider)
    wanted = hf_model_id(model_name)
    if wanted is None:
        check_model_name(model_name)  # its message says what a model id is
        raise BadRequest(f"Invalid model name {model_name!r}: expected ORG/NAME[:QUANT]")
    check_model_name(wanted.repo)
    wait = hub_timeout() if timeout is None else timeout
    return _events(wanted, folder or cache_dir(), hub or endpoint(), poll, wait)


@dataclass(frozen=True)
class HubFile:
    name: str
    size: int
    blob: str | None
    """The blob's name in the cache: the LFS sha256, or the git blob id of a small file."""


def _events(
    wanted: HfModelId, folder: Path, hub: str, poll: float, timeout: float
) -> Generator[Event, None, None]:
    model_name = str(wanted)
    cached = _cached(wanted, folder)
    if cached is not None:
        yield {"event": "complete", "model_name": model_name, "path": cached, "cached": True}
        return
    try:
        files = _selected(wanted, listing(wanted.repo, hub, timeout))
    except LfError as exc:
        yield _error(exc)
        return
    total = sum(file.size for file in files)
    blobs = repo_folder(folder, wanted.repo) / "blobs"
    outcome: list[str | BaseException] = []
    gguf = any(file.name.lower().endswith(".gguf") for file in files)

    def fetch() -> None:
        try:
            outcome.append(
                snapshot_download(
                    wanted.repo,
                    cache_dir=folder,
                    endpoint=hub,
                    etag_timeout=timeout,
                    tqdm_class=_Silent,
                    allow_patterns=[file.name for file in files] if gguf else None,
                )
            )
        except BaseException as exc:  # handed to the consumer, translated there
            outcome.append(exc)

    sent, sent_at = _downloaded(blobs, files, total), time.monotonic()
    worker = threading.Thread(target=fetch, name=f"lf-download-{model_name}", daemon=True)
    worker.start()
    yield _progress(sent, total)
    while worker.is_alive():
        worker.join(poll)
        done = _downloaded(blobs, files, total)
        if done != sent or time.monotonic() - sent_at >= HEARTBEAT:
            sent, sent_at = done, time.monotonic()
            yield _progress(done, total)
    yield from _finish(model_name, outcome[0], sent, total, hub=hub, folder=folder, gguf=gguf)


def _finish(
    model_name: str,
    result: str | BaseException,
    sent: int,
    total: int,
    *,
    hub: str,
    folder: Path,
    gguf: bool,
) -> Iterator[Event]:
    """The last events: an error, or the full progress and `complete` with the model's path
    (a GGUF model's file, as the `universal` provider will find it; else the snapshot)."""
    if isinstance(result, BaseException):
        yield _error(_translate(result, model_name, hub=hub, folder=folder))
        return
    if sent != total:
        yield _progress(total, total)
    try:
        path = str(cached_gguf(model_name, folder=folder)) if gguf else result
    except LfError as exc:
        yield _error(exc)
        return
    yield {"event": "complete", "model_name": model_name, "path": path, "cached": False}


def _selected(wanted: HfModelId, files: list[HubFile]) -> list[HubFile]:
    """The files to fetch: the GGUF model the id names, or the whole repo when it has none."""
    choices = models((file.name, file.size) for file in files)
    if not choices and wanted.quant is None:
        return files
    choice = choose(choices, wanted.quant)
    if choice is None:
        found = ", ".join(c.files[0] for c in choices) or "none"
        raise NotFound(
            f"Model {wanted.repo!r} has no GGUF file of quantization {wanted.quant!r} on the "
            f"Hugging Face Hub (GGUF files: {found})"
        )
    return [file for file in files if file.name in choice.files]


def _cached(wanted: HfModelId, folder: Path) -> str | None:
    """The GGUF file the id names in the cache (as the `universal` provider would load it),
    else the snapshot folder of the model's default revision if it is complete on disk."""
    try:
        return str(cached_gguf(str(wanted), folder=folder))
    except LfError:
        if wanted.quant is not None:
            return None
    try:
        path: str = snapshot_download(wanted.repo, cache_dir=folder, local_files_only=True)
    except LocalEntryNotFoundError:  # not there, or an interrupted download
        return None
    return path


def listing(model_name: str, hub: str, timeout: float) -> list[HubFile]:
    """The repo's files on the Hub with their sizes; its errors as ours (404, 503...)."""
    try:
        info = HfApi(endpoint=hub).model_info(model_name, files_metadata=True, timeout=timeout)
    except Exception as exc:
        raise _translate(exc, model_name, hub=hub, folder=None) from exc
    return [
        HubFile(
            name=sibling.rfilename,
            size=sibling.size or 0,
            blob=sibling.lfs.sha256 if sibling.lfs is not None else sibling.blob_id,
        )
        for sibling in info.siblings or []
    ]


def _downloaded(blobs: Path, files: list[HubFile], total: int) -> int:
    """Bytes on disk: blobs already complete, and those being written (`*.incomplete`)."""
    done = sum(f.size for f in files if f.blob is not None and (blobs / f.blob).is_file())
    for partial in blobs.glob("*.incomplete"):
        try:
            done += partial.stat().st_size
        except FileNotFoundError:  # finished and renamed since the glob
            continue
    return min(done, total)


def _progress(done: int, total: int) -> Event:
    percent = round(100 * done / total, 1) if total else 100.0
    return {"event": "progress", "downloaded": done, "total": total, "percent": percent}


def _error(exc: LfError) -> Event:
    return {"event": "error", "message": exc.detail}


def _translate(exc: BaseException, model_name: str, *, hub: str, folder: Path | None) -> LfError:
    """huggingface_hub's errors (and its transport's) as ours, each naming the model."""
    if isinstance(exc, LfError):
        return exc
    if isinstance(exc, GatedRepoError):
        return Unavailable(
            f"Model {model_name!r} is gated on the Hugging Face Hub: accept its terms at "
            f"{hub}/{model_name} and set HF_TOKEN"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return NotFound(
            f"Model {model_name!r} is not on the Hugging Face Hub ({hub}), or is private "
            "(then set HF_TOKEN)"
        )
    if isinstance(exc, RevisionNotFoundError):
        return NotFound(f"Model {model_name!r} has no revision 'main' on the Hugging Face Hub")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "an error"
        return BadGateway(
            f"The Hugging Face Hub ({hub}) answered {status} for model {model_name!r}: {exc}"
        )
    if isinstance(exc, OfflineModeIsEnabled):
        return Unavailable(
            f"Cannot download model {model_name!r}: HF_HUB_OFFLINE is set, so the Hugging Face "
            "Hub is not contacted"
        )
    reach = isinstance(exc, LocalEntryNotFoundError | ConnectionError)  # the Hub went away
    if folder is not None and isinstance(exc, OSError) and not reach:
        return Unavailable(f"Cannot store model {model_name!r} in {folder}: {exc}")
    # What is left is the transport's: no DNS, refused, timed out, TLS (httpx2's errors).
    return Unavailable(
        f"Cannot reach the Hugging Face Hub ({hub}) to download model {model_name!r}: "
        f"{type(exc).__name__}: {exc}"
    )


class _Silent(hub_tqdm):
    """No progress bars on the server's terminal: the events are the progress."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]

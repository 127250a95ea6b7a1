"""Downloading a `universal` model on first use, when `LF_ALLOW_DOWNLOADS` allows it.

A model id (`ORG/NAME[:QUANT]`) not in the cache is fetched by the first request that names
it, with `download`'s progress told to the server log and to each waiting request's timeline
(its `inference` event in the project's event log). Requests that name the same model
meanwhile wait for that one download; none starts a second. Without the setting nothing is
fetched and the provider's lookup answers its 503.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from llamafarm.errors import LfError, ProviderUnavailable
from llamafarm.events import Timeline
from llamafarm.models.download import Event, download
from llamafarm.models.gguf import PULL, cached_gguf
from llamafarm.names import hf_model_id

log = logging.getLogger(__name__)

SETTING = "LF_ALLOW_DOWNLOADS"
LOG_STEP = 10.0
"""Percent between two progress lines in the server log."""


@dataclass
class _Flight:
    """One download under way and the timelines of the requests waiting for it."""

    timelines: list[Timeline] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: LfError | None = None


class FirstUse:
    """The downloads of models asked for before they are cached; one per model at a time.
    `allowed`: `LF_ALLOW_DOWNLOADS`; when false, `fetch` never touches the network."""

    def __init__(self, *, allowed: bool = False) -> None:
        self.allowed = allowed
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()

    def fetch(self, model: str, *, timeline: Timeline | None = None) -> None:
        """Make sure the GGUF file a model id names is in the cache (blocks while it is
        downloaded); a name that is not a model id, or one cached already, returns at once."""
        wanted = hf_model_id(model)
        if not self.allowed or wanted is None or _cached(model):
            return
        key = f"{wanted.repo}:{(wanted.quant or '').upper()}"
        with self._lock:
            flight = self._flights.get(key)
            starter = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            if timeline is not None:
                # Marked before it is shared: from now on only the downloading thread marks it.
                if not starter:
                    timeline.mark("model_download_wait", model=model)
                flight.timelines.append(timeline)
        if starter:
            try:
                self._run(model, flight)
            finally:
                with self._lock:
                    del self._flights[key]
                flight.done.set()
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error

    def _run(self, model: str, flight: _Flight) -> None:
        """Download, telling the log and the timelines; a failure is kept for every waiter."""
        began, logged = time.monotonic(), -LOG_STEP
        log.info("Model %r is not in the cache: downloading it (%s=true)", model, SETTING)
        _mark(flight, "model_download_start", model=model)
        try:
            for event in download(model):
                logged = self._tell(model, flight, event, logged)
                if event["event"] == "error":
                    raise ProviderUnavailable(
                        f"Model {model!r} is not in the Hugging Face cache and downloading it "
                        f"failed: {event['message']} (or get it with `{PULL} {model}`)"
                    )
        except LfError as exc:
            flight.error = exc
            log.warning("Downloading model %r failed: %s", model, exc.detail)
            _mark(flight, "model_download_error", model=model, error=exc.detail)
            return
        seconds = round(time.monotonic() - began, 1)
        log.info("Model %r downloaded in %.1f s", model, seconds)

    def _tell(self, model: str, flight: _Flight, event: Event, logged: float) -> float:
        """One download event to the log (progress every LOG_STEP percent) and the timelines;
        the percent last logged."""
        if event["event"] == "progress":
            percent = float(event["percent"])
            if percent - logged >= LOG_STEP or (percent == 100.0 and logged < 100.0):
                log.info(
                    "Downloading model %r: %.1f%% (%d of %d bytes)",
                    model,
                    percent,
                    event["downloaded"],
                    event["total"],
                )
                _mark(flight, "model_download_progress", **_fields(event))
                return percent
        elif event["event"] == "complete":
            _mark(flight, "model_download_complete", model=model, path=event["path"])
        return logged


def _cached(model: str) -> bool:
    try:
        cached_gguf(model)
    except LfError:
        return False
    return True


def _fields(event: Event) -> dict[str, object]:
    return {key: event[key] for key in ("downloaded", "total", "percent")}


def _mark(flight: _Flight, name: str, **data: object) -> None:
    for timeline in list(flight.timelines):
        timeline.mark(name, **data)

"""The embedder interface, config parsing, and the base of the embedders that call a service."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from llamafarm.errors import ConfigInvalid, EmbedderUnavailable
from llamafarm.http import CHECK_TIMEOUT, excerpt, json_body, post_json, timeouts

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class Embedder(Protocol):
    """Turns texts into vectors; every backend implements this."""

    @property
    def name(self) -> str:
        """The model id."""
        ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in input order."""
        ...

    def fingerprint(self) -> str:
        """A short string that changes whenever the vectors would change."""
        ...

    def check(self) -> None:
        """A cheap health probe; raises EmbedderUnavailable with the reason."""
        ...


class WrappedEmbedder:
    """An embedder around another (`inner`): its name, dimension, fingerprint and health are the
    inner one's; subclasses change how `embed` reaches it."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def check(self) -> None:
        self.inner.check()


def parse_config(model: type[ConfigT], config: dict[str, Any], *, what: str) -> ConfigT:
    """Validate an embedder's `config:` mapping, naming each offending key."""
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'config'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigInvalid(f"{what} config: {problems}") from exc


class HttpEmbedder:
    """Batching, timeouts and error translation shared by the embedders that call a service.

    Fails fast: one request per batch, retried once only when the connection was reset
    (a pooled keep-alive connection the server had closed), so a dead service costs one timeout.
    """

    type_name: ClassVar[str]
    path: ClassVar[str]
    """Appended to `base_url`."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        dimension: int | None,
        batch_size: int,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.batch_size = batch_size
        self.timeout = timeout
        self._dimension = dimension
        self._lock = threading.Lock()
        # One client per embedder: its connection pool is shared by every batch and thread.
        self._client = httpx.Client(timeout=timeouts(timeout), headers=headers)

    @property
    def name(self) -> str:
        return self.model

    @property
    def dimension(self) -> int:
        """The configured dimension, else the one the service answers with (asks it once)."""
        if self._dimension is None:
            self.check()
        assert self._dimension is not None  # set by the first successful response
        return self._dimension

    def fingerprint(self) -> str:
        return f"{self.type_name}:{self.model}:{self.dimension}"

    def check(self) -> None:
        self._embed_batch(["ping"], timeout=min(self.timeout, CHECK_TIMEOUT))

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(self._embed_batch(list(texts[start : start + self.batch_size])))
        return vectors

    def close(self) -> None:
        self._client.close()

    def _payload(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts}

    def _vectors(self, body: Any) -> list[Any]:
        """The embeddings in a decoded response body, in input order."""
        raise NotImplementedError

    def _fail(self, cause: str) -> EmbedderUnavailable:
        return EmbedderUnavailable(
            f"{self.type_name} (model {self.model!r} at {self.base_url}): {cause}"
        )

    def _embed_batch(self, texts: list[str], *, timeout: float | None = None) -> list[list[float]]:
        response = self._post(texts, timeout=timeout or self.timeout)
        body = json_body(response, fail=self._fail)
        try:
            vectors = [[float(x) for x in vector] for vector in self._vectors(body)]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise self._fail(f"unexpected response ({exc!r}): {excerpt(response.text)}") from exc
        if len(vectors) != len(texts):
            raise self._fail(f"returned {len(vectors)} embeddings for {len(texts)} texts")
        self._check_dimension(vectors)
        return vectors

    def _post(self, texts: list[str], *, timeout: float) -> httpx.Response:
        url = f"{self.base_url}{self.path}"
        return post_json(self._client, url, self._payload(texts), timeout=timeout, fail=self._fail)

    def _check_dimension(self, vectors: list[list[float]]) -> None:
        sizes = sorted({len(vector) for vector in vectors})
        if not sizes:
            return
        if len(sizes) > 1 or sizes == [0]:
            raise self._fail(f"returned vectors of dimension {sizes}")
        with self._lock:
            if self._dimension is None:
                self._dimension = sizes[0]  # learned once, then enforced
            expected = self._dimension
        if sizes[0] != expected:
            raise self._fail(f"returned {sizes[0]}-dimensional vectors, expected {expected}")

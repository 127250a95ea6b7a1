"""Reranking by a service that speaks Cohere's `/rerank` wire format, or TEI's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import httpx

from llamafarm.errors import RerankerUnavailable
from llamafarm.http import (
    CHECK_TIMEOUT,
    excerpt,
    json_body,
    normalize_url,
    post_json,
    timeouts,
)
from llamafarm.rag.rerankers.base import sigmoid

WHAT = "RemoteReranker"
Wire = Literal["cohere", "tei"]
TEI_BATCH = 32
"""TEI refuses more texts per request than its --max-client-batch-size, 32 by default."""


class RemoteReranker:
    """POSTs `{base_url}/rerank`: base_url `http://host/v1` for Cohere-style services, the bare
    `http://host:8080` for text-embeddings-inference.

    Fails fast like the HTTP embedders: one request per batch, retried once only when a pooled
    connection turns out to have been closed.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        protocol: Wire = "cohere",
    ) -> None:
        self.base_url = normalize_url(base_url, what=WHAT)
        self.url = f"{self.base_url}/rerank"
        self.model = model
        self.timeout = timeout
        self.protocol = protocol
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        # One client per reranker: its connection pool is shared by every call and thread.
        self._client = httpx.Client(timeout=timeouts(timeout), headers=headers)

    @property
    def name(self) -> str:
        return self.model

    def check(self) -> None:
        self._rerank("ping", ["pong"], timeout=min(self.timeout, CHECK_TIMEOUT))

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        size = TEI_BATCH if self.protocol == "tei" else max(len(texts), 1)
        scores: list[float] = []
        for start in range(0, len(texts), size):
            scores.extend(self._rerank(query, list(texts[start : start + size])))
        return scores

    def close(self) -> None:
        self._client.close()

    def _payload(self, query: str, texts: list[str]) -> dict[str, Any]:
        if self.protocol == "tei":
            # TEI answers 413 for a text longer than the model reads unless asked to truncate.
            return {"query": query, "texts": texts, "raw_scores": False, "truncate": True}
        return {
            "model": self.model,
            "query": query,
            "documents": texts,
            "top_n": len(texts),
            "return_documents": False,
        }

    def _fail(self, cause: str) -> RerankerUnavailable:
        return RerankerUnavailable(f"{WHAT} (model {self.model!r} at {self.url}): {cause}")

    def _rerank(self, query: str, texts: list[str], *, timeout: float | None = None) -> list[float]:
        response = self._post(self._payload(query, texts), timeout=timeout or self.timeout)
        body = json_body(response, fail=self._fail)
        try:
            # Cohere and Jina wrap the results; TEI answers a bare list. Both sort by score.
            items = body["results"] if isinstance(body, dict) else body
            ranked = {
                int(item["index"]): float(item.get("relevance_score", item.get("score")))
                for item in items
            }
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise self._fail(f"unexpected response ({exc!r}): {excerpt(response.text)}") from exc
        if sorted(ranked) != list(range(len(texts))) or len(items) != len(texts):
            raise self._fail(
                f"returned {len(items)} results for {len(texts)} texts: {excerpt(response.text)}"
            )
        scores = [ranked[i] for i in range(len(texts))]
        if not all(math.isfinite(s) for s in scores):
            raise self._fail(f"returned non-finite scores: {excerpt(response.text)}")
        if any(s < 0.0 or s > 1.0 for s in scores):
            # Raw logits (llama.cpp, TEI with raw_scores): squash them as a cross-encoder would.
            return [float(s) for s in sigmoid(scores)]
        return scores

    def _post(self, payload: dict[str, Any], *, timeout: float) -> httpx.Response:
        return post_json(self._client, self.url, payload, timeout=timeout, fail=self._fail)

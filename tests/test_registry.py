"""The one registry every component family builds, and its one unknown-type message."""

from __future__ import annotations

import pytest

from llamafarm.chat.providers import PROVIDERS
from llamafarm.errors import BadRequest, ConfigInvalid
from llamafarm.ingest.extractors import EXTRACTORS
from llamafarm.ingest.parsers import PARSERS
from llamafarm.rag.embedders import EMBEDDERS
from llamafarm.rag.rerankers import RERANKERS
from llamafarm.rag.retrieval import RETRIEVERS
from llamafarm.rag.stores import STORES
from llamafarm.registry import Registry


def test_a_registry_reads_as_a_mapping_in_registration_order() -> None:
    shapes: Registry[int] = Registry("shape")
    assert shapes.register("square", 4) == 4
    shapes.register("hexagon", 6)
    assert list(shapes) == ["square", "hexagon"] and shapes["hexagon"] == 6
    assert shapes.get("circle") is None and len(shapes) == 2
    assert shapes.names() == ["hexagon", "square"]
    with pytest.raises(ValueError, match="'square' is registered already"):
        shapes.register("square", 5)


def test_the_unknown_message_names_the_owner_and_every_known_name() -> None:
    shapes: Registry[int] = Registry("shape")
    shapes.register("square", 4)
    shapes.register("hexagon", 6)
    assert shapes.find("square") == 4
    with pytest.raises(ConfigInvalid) as caught:
        shapes.find("circle", owner="logo")
    assert caught.value.detail == "shape 'logo': unknown type 'circle' (known: hexagon, square)"
    with pytest.raises(BadRequest) as bad:
        shapes.find("circle", error=BadRequest)
    assert bad.value.detail == "Unknown shape type 'circle' (known: hexagon, square)"
    assert Registry[int]("pen", key="colour").unknown("red") == (
        "Unknown pen colour 'red' (known: none)"
    )


@pytest.mark.parametrize(
    ("registry", "family"),
    [
        (PROVIDERS, "model"),
        (EMBEDDERS, "embedding strategy"),
        (STORES, "database"),
        (RETRIEVERS, "retrieval strategy"),
        (RERANKERS, "reranker"),
        (PARSERS, "parser"),
        (EXTRACTORS, "extractor"),
    ],
)
def test_every_family_is_a_registry(registry: Registry[object], family: str) -> None:
    assert isinstance(registry, Registry) and registry.family == family and len(registry) > 0

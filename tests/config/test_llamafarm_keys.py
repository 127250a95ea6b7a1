"""LlamaFarm's keys in the config models: component references resolved on load without
touching the document, the built-in universal_rag strategy, and `config_warnings`."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llamafarm.config import config_warnings, parse_config
from llamafarm.config.models import UNIVERSAL_RAG
from llamafarm.errors import ConfigInvalid

RUNTIME = {"provider": "ollama", "model": "m"}
EMBEDDER = {"type": "UniversalEmbedder", "config": {"model": "all-MiniLM-L6-v2"}}


def config(**keys: Any) -> dict[str, Any]:
    return {"name": "p", "namespace": "n", "runtime": RUNTIME, **keys}


def test_references_are_inlined_and_the_document_is_left_as_written() -> None:
    document = config(
        components={
            "embedding_strategies": [{"name": "e", **EMBEDDER, "condition": "x"}],
            "parsers": [{"name": "txt", "type": "TextParser", "priority": 5}],
        },
        rag={
            "databases": [{"name": "db", "type": "ChromaStore", "embedding_strategy": "e"}],
            "data_processing_strategies": [{"name": "s", "parsers": ["txt"]}],
        },
    )
    written = copy.deepcopy(document)
    parsed = parse_config(document)
    assert document == written
    database = parsed.rag.databases[0] if parsed.rag else None
    assert database is not None
    assert [s.name for s in database.embedding_strategies] == ["e"]
    assert database.default_embedding_strategy == "e"
    # The unsupported key is reported where the component is defined, not copied along.
    assert database.embedding_strategies[0].condition is None
    parser = parsed.rag.data_processing_strategies[0].parsers[0] if parsed.rag else None
    assert parser is not None
    assert parser.model_dump(exclude_defaults=True) == {"type": "TextParser", "priority": 5}


def test_own_strategies_win_over_references_and_take_a_default_they_have() -> None:
    parsed = parse_config(
        config(
            components={
                "embedding_strategies": [{"name": "e", **EMBEDDER}],
                "defaults": {"embedding_strategy": "mine"},
            },
            rag={
                "databases": [
                    {
                        "name": "db",
                        "type": "ChromaStore",
                        "embedding_strategy": "e",
                        "embedding_strategies": [{"name": "mine", **EMBEDDER}],
                    }
                ]
            },
        )
    )
    assert parsed.rag is not None
    database = parsed.rag.databases[0]
    assert [s.name for s in database.embedding_strategies] == ["mine"]
    assert database.default_embedding_strategy == "mine"


def test_universal_rag_is_built_in_unless_the_project_defines_it() -> None:
    database = {"name": "db", "type": "ChromaStore"}
    parsed = parse_config(
        config(rag={"databases": [database]}, datasets=[{"name": "d", "database": "db"}])
    )
    builtin = parsed.strategy_of(parsed.datasets[0])
    assert builtin.name == UNIVERSAL_RAG
    assert "PDFParser" in [p.type for p in builtin.parsers]

    own = {"name": UNIVERSAL_RAG, "parsers": [{"type": "TextParser"}]}
    parsed = parse_config(
        config(
            rag={"databases": [database], "data_processing_strategies": [own]},
            datasets=[{"name": "d", "database": "db"}],
        )
    )
    assert [p.type for p in parsed.strategy_of(parsed.datasets[0]).parsers] == ["TextParser"]

    with pytest.raises(ConfigInvalid, match=r"datasets\[0\].data_processing_strategy: unknown"):
        parse_config(
            config(
                rag={"databases": [database]},
                datasets=[{"name": "d", "database": "db", "data_processing_strategy": "x"}],
            )
        )


def test_warnings_name_set_fields_only_and_skip_nulls() -> None:
    parsed = parse_config(
        config(
            voice=None,
            rag={
                "databases": [{"name": "db", "type": "ChromaStore"}],
                "data_processing_strategies": [
                    {
                        "name": "s",
                        "parsers": [{"type": "TextParser"}],
                        "extractors": [
                            {"type": "KeywordExtractor", "condition": None},
                            {"type": "KeywordExtractor", "required_for": ["db"]},
                        ],
                    }
                ],
            },
        )
    )
    assert [line.split(":")[0] for line in config_warnings(parsed)] == [
        "rag.data_processing_strategies[0].extractors[1].required_for"
    ]


def test_an_empty_key_is_named_in_the_error() -> None:
    with pytest.raises(ConfigInvalid) as caught:
        parse_config(config(runtime={**RUNTIME, "": 1}, **{"": 2}))
    assert caught.value.detail == "Invalid config: runtime.'': unknown key; '': unknown key"


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "name": name, "description": "d", "parameters": {}}


def test_tool_names_take_dots_as_llamafarm_seed_project_does_but_no_spaces() -> None:
    def with_tool(name: str) -> dict[str, Any]:
        runtime = {
            "models": [{"name": "m", "provider": "openai", "model": "gpt", "tools": [tool(name)]}]
        }
        return config(runtime=runtime)

    parsed = parse_config(with_tool("cli.dataset_upload"))
    assert parsed.runtime.models[0].tools[0].name == "cli.dataset_upload"
    with pytest.raises(ConfigInvalid, match=r"runtime.models\[0\].tools\[0\].name"):
        parse_config(with_tool("get weather"))

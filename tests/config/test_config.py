from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from llamafarm.config import (
    ConfigPolicy,
    available_templates,
    dump_document,
    json_schema,
    parse_config,
    read_document,
    render_template,
)
from llamafarm.errors import BadRequest, ConfigInvalid


def minimal(**extra: Any) -> dict[str, Any]:
    return {
        "version": "v1",
        "name": "bot",
        "namespace": "acme",
        "runtime": {"provider": "ollama", "model": "llama3.2:3b"},
        **extra,
    }


@pytest.mark.parametrize("template", ["server", "rag", "default"])
def test_templates_load_and_round_trip(template: str, tmp_path: Path) -> None:
    document = render_template(template, namespace="acme", name="bot")
    assert (document["version"], document["name"], document["namespace"]) == ("v1", "bot", "acme")
    config = parse_config(document)
    path = tmp_path / "llamafarm.yaml"
    path.write_text(dump_document(document))
    assert read_document(path) == document
    assert parse_config(read_document(path)) == config
    # The validated model dumps to a document that validates to the same model.
    assert parse_config(config.model_dump(mode="json")) == config


def test_server_template_is_chat_only_and_rag_has_a_dataset() -> None:
    server = parse_config(render_template("server", namespace="a", name="b"))
    rag = parse_config(render_template("rag", namespace="a", name="b"))
    assert server.rag is None and server.datasets == []
    assert server.runtime.default().provider == "universal"
    assert rag.rag is not None and rag.rag.default_database == "main_db"
    database = rag.rag.databases[0]
    assert database.type == "ChromaStore"
    assert database.embedding_strategies[0].config["model"] == "all-MiniLM-L6-v2"
    patterns = {
        p for s in rag.rag.data_processing_strategies[0].parsers for p in s.file_include_patterns
    }
    assert {"*.pdf", "*.docx", "*.md", "*.txt", "*.csv", "*.html"} <= patterns
    assert [(d.name, d.database) for d in rag.datasets] == [("documents", "main_db")]
    assert render_template("default", namespace="a", name="b") == render_template(
        "rag", namespace="a", name="b"
    )


def test_unknown_template_lists_the_available_ones() -> None:
    with pytest.raises(BadRequest, match="available: default, rag, server"):
        render_template("nope", namespace="a", name="b")
    with pytest.raises(BadRequest):
        render_template("../rag", namespace="a", name="b")


def test_custom_templates_come_from_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        "runtime: {provider: openai, model: gpt-4o-mini, base_url: 'http://127.0.0.1:9/v1'}\n"
    )
    assert "mine" in available_templates(tmp_path)
    document = render_template("mine", namespace="a", name="b", custom_dir=tmp_path)
    assert list(document)[:3] == ["version", "name", "namespace"]
    assert parse_config(document).runtime.default().model == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(colour="blue"), "colour: unknown key"),
        (lambda d: d["runtime"].update(temprature=1), "runtime.temprature: unknown key"),
        (
            lambda d: d["rag"]["databases"][0]["embedding_strategies"][0].update(dims=3),
            "rag.databases[0].embedding_strategies[0].dims: unknown key",
        ),
        (
            lambda d: d["rag"]["data_processing_strategies"][0]["parsers"][1].update(x=1),
            "rag.data_processing_strategies[0].parsers[1].x: unknown key",
        ),
        (lambda d: d.pop("name"), "name: required key is missing"),
        (lambda d: d.update(version="v2"), "version: Input should be 'v1'"),
        (lambda d: d.update(namespace="../etc"), "namespace: must be 1-64"),
    ],
)
def test_invalid_keys_are_reported_with_their_path(mutate: Any, message: str) -> None:
    document = render_template("rag", namespace="acme", name="bot")
    mutate(document)
    with pytest.raises(ConfigInvalid) as caught:
        parse_config(document)
    assert message in caught.value.detail


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["datasets"][0].update(database="nope"),
            "datasets[0].database: unknown database 'nope' (known: main_db)",
        ),
        (
            lambda d: d["datasets"][0].update(data_processing_strategy="nope"),
            "unknown data processing strategy 'nope'",
        ),
        (lambda d: d["rag"].update(default_database="nope"), "unknown database 'nope'"),
        (lambda d: d["runtime"].update(default_model="nope"), "unknown model 'nope'"),
        (
            lambda d: d["runtime"]["models"][0].update(prompts=["nope"]),
            "runtime.models[0].prompts: unknown prompt set 'nope'",
        ),
        (
            lambda d: d["rag"]["databases"][0].update(default_retrieval_strategy="nope"),
            "unknown retrieval strategy 'nope'",
        ),
        (lambda d: d["datasets"].append(dict(d["datasets"][0])), "datasets: duplicate names"),
        (lambda d: d["runtime"].update(provider="ollama", model="m"), "not both"),
        (lambda d: d.update(runtime={"provider": "ollama"}), "needs both provider and model"),
        (lambda d: d.update(runtime={}), "needs provider and model, or a non-empty models list"),
        (
            lambda d: d.update(runtime={"provider": "bedrock", "model": "m"}),
            "runtime.provider: Input should be 'universal', 'ollama', 'openai' or 'lemonade'",
        ),
        (
            lambda d: d.update(mcp={"servers": [{"name": "fs", "transport": "stdio"}]}),
            "stdio server needs a command",
        ),
    ],
)
def test_cross_references_are_checked(mutate: Any, message: str) -> None:
    document = render_template("rag", namespace="acme", name="bot")
    mutate(document)
    with pytest.raises(ConfigInvalid, match="Invalid config") as caught:
        parse_config(document)
    assert message in caught.value.detail


def test_flat_runtime_is_one_default_model() -> None:
    config = parse_config(minimal())
    [model] = config.runtime.model_list()
    assert (model.name, model.provider, model.model) == ("default", "ollama", "llama3.2:3b")
    assert config.runtime.default() == model


def test_multi_model_runtime_picks_the_default_model() -> None:
    runtime = {
        "models": [
            {"name": "fast", "provider": "ollama", "model": "llama3.2:3b"},
            {"name": "smart", "provider": "openai", "model": "gpt-4o", "api_key": "k"},
        ],
        "default_model": "smart",
    }
    config = parse_config(minimal(runtime=runtime))
    assert config.runtime.default().name == "smart"
    assert [m.name for m in config.runtime.model_list()] == ["fast", "smart"]


def test_env_substitution() -> None:
    document = minimal(
        runtime={
            "provider": "openai",
            "model": "${MODEL:-gpt-4o-mini}",
            "base_url": "http://${HOST}:8080/v1",
            "api_key": "${KEY:-}",
        }
    )
    original = copy.deepcopy(document)
    policy = ConfigPolicy(env_allow=("HOST", "MODEL"), environ={"HOST": "10.1.2.3", "MODEL": ""})
    config = parse_config(document, policy)
    default = config.runtime.default()
    assert default.base_url == "http://10.1.2.3:8080/v1"
    assert default.model == "gpt-4o-mini"  # empty counts as unset for ${VAR:-default}
    assert default.api_key == ""
    assert document == original  # the document keeps its placeholders


def test_env_substitution_reports_a_missing_variable_with_its_path() -> None:
    document = minimal(runtime={"provider": "openai", "model": "m", "api_key": "${OPENAI_KEY}"})
    with pytest.raises(ConfigInvalid, match=r"runtime\.api_key: environment variable OPENAI_KEY"):
        parse_config(document, ConfigPolicy(env_allow=("OPENAI_*",), environ={}))


def test_yaml_syntax_errors_and_non_mappings(tmp_path: Path) -> None:
    bad = tmp_path / "llamafarm.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigInvalid, match="not valid YAML"):
        read_document(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigInvalid, match="mapping"):
        read_document(bad)
    with pytest.raises(ConfigInvalid, match="mapping"):
        parse_config(["not", "a", "mapping"])


def test_json_schema_describes_the_config() -> None:
    schema = json.loads(json_schema())
    assert schema["title"] == "ProjectConfig"
    assert {"version", "name", "namespace", "runtime", "rag", "datasets", "mcp", "prompts"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False


def test_rag_template_has_a_parser_for_every_format_and_known_types() -> None:
    from llamafarm.ingest.extractors import EXTRACTORS
    from llamafarm.ingest.parsers import FORMATS
    from llamafarm.rag.embedders import EMBEDDERS
    from llamafarm.rag.stores import STORES

    config = parse_config(render_template("rag", namespace="a", name="b"))
    assert config.rag is not None
    [strategy] = config.rag.data_processing_strategies
    assert sorted(p.type for p in strategy.parsers) == sorted(c.__name__ for c in FORMATS)
    assert {e.type for e in strategy.extractors} <= set(EXTRACTORS)
    [database] = config.rag.databases
    assert database.type in STORES
    assert {e.type for e in database.embedding_strategies} <= set(EMBEDDERS)

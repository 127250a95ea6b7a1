"""Configs drawn from LlamaFarm 0.0.27's own JSON schema never make `PUT` fail with a 500:
each is stored (and then read back as written) or refused with a 4xx that says why.

The schema is the reference copy in the shared folder (`config-schema.yaml`, whose `rag` and
`components` point into `rag-schema.yaml`); its cross-file `$ref`s are joined here into one
document that hypothesis-jsonschema can draw from. Generation is derandomized."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

REFERENCE = [
    Path(__file__).parents[2].parent / "shared" / "reference" / "llamafarm-0.0.27",
    Path("/work/shared/reference/llamafarm-0.0.27"),
]
RAG_FILE = "../rag/schema.yaml"


def reference() -> Path | None:
    return next((p for p in REFERENCE if (p / "config-schema.yaml").is_file()), None)


def joined_schema(folder: Path) -> dict[str, Any]:
    """config-schema.yaml with rag-schema.yaml's definitions merged in and every `$ref` to
    the rag file turned into a local one (the rag schema's root becomes `RagSchema`)."""
    config = yaml.safe_load((folder / "config-schema.yaml").read_text())
    rag = yaml.safe_load((folder / "rag-schema.yaml").read_text())
    definitions = dict(rag.pop("definitions"))
    for key in ("$schema", "$id", "title", "description"):
        rag.pop(key, None)
    clashes = set(definitions) & set(config.get("definitions", {})) | {"RagSchema"} & set(
        definitions
    )
    assert not clashes, clashes
    definitions |= config.get("definitions", {})
    definitions["RagSchema"] = rag
    config["definitions"] = definitions
    return _local_refs(config)


def _local_refs(node: Any) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(RAG_FILE):
            fragment = ref[len(RAG_FILE) :]
            node = dict(node, **{"$ref": fragment if fragment else "#/definitions/RagSchema"})
        return {k: _local_refs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_local_refs(v) for v in node]
    return node


def closed(node: Any) -> Any:
    """The schema with no keys but its own: LlamaFarm leaves most objects open, so drawn
    configs are mostly keys of neither schema (a 422 each); closed, they use its keys."""
    if isinstance(node, dict):
        node = {k: closed(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [closed(v) for v in node]
    return node


FOLDER = reference()
pytestmark = pytest.mark.skipif(
    FOLDER is None, reason="LlamaFarm's reference schemas (shared/reference) are not here"
)
SCHEMA = joined_schema(FOLDER) if FOLDER is not None else {}
CONFIGS = {
    "open": from_schema(SCHEMA) if SCHEMA else st.nothing(),
    "closed": from_schema(closed(SCHEMA)) if SCHEMA else st.nothing(),
}
CONFIGS["runtime"] = CONFIGS["closed"]
"""Closed, with the drawn runtime kept: its models' keys (extra_body, tools, lemonade ...)."""


RUNTIME = {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
"""Runtime keys belong to the chat work; with this one the rest of a drawn config decides."""


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize("variant", ["open", "closed", "runtime"])
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_schema_valid_llamafarm_config_is_never_a_500(
    client: TestClient, variant: str, data: st.DataObject
) -> None:
    config = data.draw(CONFIGS[variant]) | {"name": "bot", "namespace": "acme"}
    if variant == "closed":
        config["runtime"] = RUNTIME
    config = copy.deepcopy(config)
    response = client.put("/v1/projects/acme/bot", json={"config": config})
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
    if response.status_code == 200:
        assert client.get("/v1/projects/acme/bot").json()["project"]["config"] == config
    else:
        assert response.json()["detail"]

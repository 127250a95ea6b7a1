"""Fuzz every operation of the OpenAPI in process with schemathesis: no request, valid or not,
may get a 5xx or an answer that its documented responses do not describe.

Each operation runs against a fresh app whose project `acme/bot` has a dataset with a file, a
RAG database, a chat session, a queued task and an event, and whose chat model is a loopback
OpenAI-compatible server; path parameters are drawn from those names (or left fuzzed), so
most cases get past the 404s. The Hugging Face cache is an empty temp dir and the Hub a
loopback port that refuses connections, so nothing is downloaded or deleted outside the test
(an operation that needs the Hub answers the documented 503 naming it, the one 5xx allowed).
Generation is derandomized, so a run is the same every time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation.modes import GenerationMode
from schemathesis.schemas import BaseSchema

from llamafarm.api import create_app
from llamafarm.settings import Settings
from tests.api.populated import populate
from tests.chat.openai_server import OpenAIServer

pytestmark = pytest.mark.slow

# The question set of rag_evaluate: JSON lines, sent as the text they are.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")

EXAMPLES = 30
"""Cases per operation; generation is derandomized, so each run sends the same ones."""

ASK = [{"role": "user", "content": "Why do glaciers shrink?"}]
GOOD_BODIES: dict[str, list[dict[str, Any]]] = {
    # Bodies that pass validation, so the fuzzed query, headers and names meet real work.
    "chat_completions": [
        {"messages": ASK},
        {"messages": ASK, "stream": True},
        {"messages": ASK, "rag_enabled": False, "stream": True},
    ],
    "rag_query": [
        {"query": "glaciers", "top_k": 2},
        {"query": "glaciers", "distance_metric": "ip"},  # rescored apart from the index
    ],
    "rag_evaluate": ['{"query": "glaciers", "relevant": ["glaciers.md"]}'],
    "project_create": [{"name": "other", "config_template": "server"}],
    "dataset_create": [
        {"name": "more", "data_processing_strategy": "default_processor", "database": "main_db"}
    ],
    "dataset_actions": [{"action_type": "process"}],
    "example_import_project": [{"namespace": "acme", "name": "imported", "process": False}],
    "model_download": [{"model_name": "acme/tiny"}],  # not cached; the Hub refuses
    "example_import_data": [{"namespace": "acme", "project": "bot", "process": False}],
}


@dataclass(frozen=True)
class Target:
    schema: BaseSchema
    names: dict[str, str]
    """A real value for each path parameter name."""
    config: dict[str, Any]
    """The project's config, a valid body for project_update."""


def _operations() -> list[tuple[str, str]]:
    spec = create_app(Settings(version_check_url="")).openapi()
    return [(method, path) for path, methods in spec["paths"].items() for method in methods]


@pytest.fixture
def target(settings: Settings, model: OpenAIServer, no_hub: Path) -> Target:
    app = create_app(settings)
    with TestClient(app) as client:
        names, config = populate(client, model)
    return Target(
        schema=schemathesis.openapi.from_asgi("/openapi.json", app), names=names, config=config
    )


def _hub_unreachable(response: Any) -> bool:
    """The 503 of an operation that needs the Hub, which this fixture makes refuse connections:
    its documented answer then, not a server error."""
    if response.status_code != 503:
        return False
    detail = response.json().get("detail", "")
    return isinstance(detail, str) and detail.startswith("Cannot reach the Hugging Face Hub")


@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_server_errors_and_answers_match_the_openapi(
    method: str, path: str, target: Target
) -> None:
    operation = target.schema[path][method.upper()]
    names = [parameter.name for parameter in operation.path_parameters]
    real = {name: target.names[name] for name in names if name in target.names}
    own = [{"config": target.config}]
    bodies = GOOD_BODIES | {"project_update": own, "project_config_validate": own}
    good = [
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real, body=body)
        for body in bodies.get(operation.definition.raw.get("operationId", ""), [])
    ]
    fuzzed = [
        operation.as_strategy(mode, path_parameters=fixed)
        for fixed in (real, real, None)  # the real names twice as often as fuzzed ones
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    strategy = st.one_of([*good, *fuzzed])

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call()
        checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
        if not _hub_unreachable(response):
            checks.append(not_a_server_error)
        case.validate_response(response, checks=checks)

    check()

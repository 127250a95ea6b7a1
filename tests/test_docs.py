"""The README documents every route and every setting."""

from __future__ import annotations

import re
from pathlib import Path

from llamafarm.api import create_app
from llamafarm.config import ProjectConfig
from llamafarm.examples.catalog import BUNDLED_DIR, get_example
from llamafarm.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_route_is_in_the_readme() -> None:
    paths = create_app().openapi()["paths"]
    routes = [f"{method.upper()} {path}" for path, ops in paths.items() for method in ops]
    assert routes
    assert [route for route in routes if f"`{route}`" not in README] == []


def test_every_setting_is_in_the_readme() -> None:
    names = [f"LF_{name.upper()}" for name in Settings.model_fields]
    assert [name for name in names if f"`{name}`" not in README] == []


def test_every_config_key_is_in_the_configuration_doc() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    schema = ProjectConfig.model_json_schema()
    models = [schema, *schema["$defs"].values()]
    keys = {key for model in models for key in model.get("properties", {})}
    undocumented = [k for k in keys if f"`{k}`" not in doc and f" {k}:" not in doc]
    assert sorted(undocumented) == []


def test_the_quickstart_example_flow_names_a_bundled_example_and_its_question() -> None:
    """The README's example commands stay true: the example exists, the question is one of
    its manifest's, and the README quotes the phrase its answer passage holds (which
    tests/examples checks is in that file)."""
    lf = r'(?:lf|"\$LF")'  # the README's quickstart runs the checkout's lf as "$LF"
    imported = re.search(lf + r" examples import (\w+)", README)
    asked = re.search(lf + r' chat default/(\w+) "([^"]+)"', README)
    assert imported and asked and imported.group(1) == asked.group(1)
    example = get_example(BUNDLED_DIR, imported.group(1))
    question = next(q for q in example.manifest.questions if q.question == asked.group(2))
    assert question.expect and question.expect in README

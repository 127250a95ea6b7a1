from __future__ import annotations

import json

from typer.testing import CliRunner

from llamafarm.cli.main import app


def test_config_schema_prints_the_json_schema() -> None:
    result = CliRunner().invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "ProjectConfig"
    assert "runtime" in schema["required"]

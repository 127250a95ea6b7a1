"""`lf config check` and `lf config upgrade`, offline, on files written here."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llamafarm.cli.main import app
from llamafarm.config import parse_config

OLD = """\
# Support bot.
name: bot  # shown in the UI
namespace: acme
runtime:
  provider: openai  # an OpenAI-compatible server
  model: gpt-4o-mini
  base_url: "http://127.0.0.1:11434/v1"
  timeout: 30
  description: null
  prompts: [main]

# The prompt sets.
prompts:
  - name: main
    messages:
      - role: system
        content: Be brief.
mcp:
  servers:
    - name: web
      transport: http
      url: http://127.0.0.1:9000/mcp  # the tools
"""


def lf(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})
    return result.exit_code, result.output


def test_check_prints_each_problem_with_its_path_and_a_fix(tmp_path: Path) -> None:
    bad = tmp_path / "llamafarm.yaml"
    bad.write_text(
        OLD.replace("name: bot", "nme: bot")
        .replace("role: system", "role: robot")
        .replace("timeout: 30", "timeout: 30\n  api_key: ${LF_TEST_NOT_ALLOWED}")
    )
    code, output = lf("config", "check", str(bad))
    assert code == 1
    lines = output.splitlines()
    assert "✗ nme: unknown key" in lines
    assert "    fix: did you mean `name`?" in lines
    assert "✗ name: required key is missing" in lines
    assert any(line.startswith("✗ prompts[0].messages[0].role: Input should be") for line in lines)
    assert any(line.startswith("✗ runtime.api_key: environment variable") for line in lines)
    assert sum(line.startswith("    fix: ") for line in lines) == 4


def test_check_passes_a_valid_file_and_reads_llamafarm_yaml_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "llamafarm.yaml").write_text(OLD)
    monkeypatch.chdir(tmp_path)
    code, output = lf("config", "check")
    assert code == 0, output
    assert "llamafarm.yaml: valid" in output
    code, output = lf("config", "check", "missing.yaml")
    assert code == 1


def test_upgrade_rewrites_old_shapes_keeping_comments(tmp_path: Path) -> None:
    file = tmp_path / "llamafarm.yaml"
    file.write_text(OLD)

    code, output = lf("config", "upgrade", "--dry-run", str(file))
    assert code == 0
    assert "-  provider: openai  # an OpenAI-compatible server" in output
    assert "+  default_model: default" in output
    assert "+      base_url: http://127.0.0.1:9000/mcp" in output
    assert file.read_text() == OLD and not file.with_name("llamafarm.yaml.bak").exists()

    code, output = lf("config", "upgrade", str(file))
    assert code == 0, output
    assert file.with_name("llamafarm.yaml.bak").read_text() == OLD
    text = file.read_text()
    for comment in ("# Support bot.", "# shown in the UI", "# an OpenAI-compatible", "# the tools"):
        assert comment in text
    assert "  default_model: default\n\n# The prompt sets.\nprompts:\n" in text
    assert "      description: null\n" in text
    new, old = yaml.safe_load(text), yaml.safe_load(OLD)
    assert new["version"] == "v1"
    assert new["runtime"]["default_model"] == "default"
    assert [m["name"] for m in new["runtime"]["models"]] == ["default"]
    assert new["mcp"]["servers"][0] == {
        "name": "web",
        "transport": "http",
        "base_url": "http://127.0.0.1:9000/mcp",
    }
    # The same project: the model and the MCP server read as before.
    before, after = parse_config(old), parse_config(new)
    assert after.runtime.default().default  # the model marked as LlamaFarm marks it
    ignore = {"default"}
    assert after.runtime.default().model_dump(
        exclude=ignore
    ) == before.runtime.default().model_dump(exclude=ignore)
    assert after.mcp == before.mcp

    code, output = lf("config", "upgrade", str(file))
    assert code == 0 and "already in the current shape" in output
    assert file.read_text() == text


def test_upgrade_keeps_the_layout_lf_init_writes(tmp_path: Path) -> None:
    """PyYAML's layout (list items not indented under their key) stays PyYAML's."""
    from llamafarm.config import dump_document

    file = tmp_path / "llamafarm.yaml"
    file.write_text(dump_document(yaml.safe_load(OLD)))
    code, output = lf("config", "upgrade", str(file))
    assert code == 0, output
    text = file.read_text()
    assert "prompts:\n- name: main\n  messages:\n  - role: system\n" in text
    assert "runtime:\n  models:\n  - name: default\n    provider: openai\n" in text

"""The operator's ConfigPolicy on its own: variables, commands, loader variables, model roots,
redaction of values, and the check right before an MCP process starts."""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from llamafarm.chat.providers import universal as chat
from llamafarm.chat.tools import McpPool
from llamafarm.config import ConfigPolicy, parse_config
from llamafarm.config.models import McpServer
from llamafarm.config.policy import BUNDLED_MODELS, env_name_allowed
from llamafarm.config.redaction import install_log_redaction, redacted_logs
from llamafarm.errors import ConfigInvalid, Unavailable
from llamafarm.models.policy import config_policy
from llamafarm.projects import ProjectStore
from llamafarm.rag.embedders import universal as embedder
from llamafarm.settings import Settings

SECRET = "s3cr3t-value-0042"


def document(**extra: Any) -> dict[str, Any]:
    return {
        "version": "v1",
        "name": "bot",
        "namespace": "acme",
        "runtime": {"provider": "openai", "model": "m"},
        **extra,
    }


def stdio(command: str, **extra: Any) -> dict[str, Any]:
    return {"mcp": {"servers": [{"name": "s", "transport": "stdio", "command": command, **extra}]}}


def test_variables_come_only_from_the_allowed_names_and_globs() -> None:
    environ = {"OPENAI_API_KEY": SECRET, "OPENAI_ORG": "org-1", "HOME_SECRET": SECRET}
    policy = ConfigPolicy(env_allow=("OPENAI_*",), environ=environ)
    runtime = {"provider": "openai", "model": "${OPENAI_ORG}", "api_key": "${OPENAI_API_KEY}"}
    config = parse_config(document(runtime=runtime), policy)
    assert config.runtime.default().api_key == SECRET
    assert config.runtime.default().model == "org-1"

    def refused(name: str) -> str:
        runtime = {"provider": "openai", "model": "m", "api_key": f"${{{name}}}"}
        with pytest.raises(ConfigInvalid) as raised:
            parse_config(document(runtime=runtime), policy)
        return raised.value.detail.replace(name, "VAR")

    # Set but not allowed, not set, allowed but not set: one message, never the value.
    messages = {refused("HOME_SECRET"), refused("NOT_SET_ANYWHERE"), refused("OPENAI_MISSING")}
    assert len(messages) == 1
    (message,) = messages
    assert SECRET not in message and "runtime.api_key" in message
    assert "LF_CONFIG_ENV_ALLOW" in message
    # No policy at all allows nothing, even for a variable the process has.
    with pytest.raises(ConfigInvalid):
        parse_config(document(runtime={"provider": "openai", "model": "${PATH}"}))


@pytest.mark.parametrize(
    ("allowed", "command", "ok"),
    [
        ("npx", "npx", True),
        ("npx", "./npx", False),
        ("npx", "/tmp/npx", False),
        ("npx", "/usr/bin/npx", False),
        ("npx", "npx;sh", False),
        ("npx", "npx ", False),
        ("npx", "NPX", False),
        ("/usr/bin/uvx", "/usr/bin/uvx", True),
        ("/usr/bin/uvx", "uvx", False),
        ("/usr/bin/uvx", "/usr/bin/../bin/uvx", False),
    ],
)
def test_a_command_is_matched_exactly(allowed: str, command: str, ok: bool) -> None:
    policy = ConfigPolicy(mcp_commands=frozenset({allowed}))
    if ok:
        parse_config(document(**stdio(command)), policy)
    else:
        with pytest.raises(ConfigInvalid, match="LF_MCP_ALLOWED_COMMANDS"):
            parse_config(document(**stdio(command)), policy)


def test_loader_variables_are_refused_and_others_kept() -> None:
    refused = ["LD_PRELOAD", "LD_AUDIT", "DYLD_INSERT_LIBRARIES", "PATH", "Path", "PYTHONPATH",
               "PYTHONSTARTUP", "NODE_OPTIONS", "PERL5OPT", "BASH_ENV", "ENV", "HOME", "A=B",
               "JAVA_TOOL_OPTIONS", "GIT_SSH_COMMAND", ""]  # fmt: skip
    assert [name for name in refused if env_name_allowed(name)] == []
    assert all(env_name_allowed(n) for n in ["MCP_CALLS_LOG", "API_TOKEN", "GITHUB_TOKEN", "DEBUG"])


def test_model_paths_must_resolve_inside_a_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "models", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (outside / "x.gguf").write_bytes(b"x")
    (root / "link.gguf").symlink_to(outside / "x.gguf")
    (root / "ok.gguf").write_bytes(b"x")
    policy = ConfigPolicy(model_roots=(root,))
    assert policy.model_path_allowed(str(root / "ok.gguf"))
    assert policy.model_path_allowed(str(root / "not-yet.gguf"))  # the operator's folder
    for path in [outside / "x.gguf", root / "link.gguf", root / ".." / "elsewhere" / "x.gguf"]:
        assert not policy.model_path_allowed(str(path))
    assert not policy.model_path_allowed("ok.gguf")  # relative: the server's cwd
    for name in BUNDLED_MODELS:  # names, not paths
        parse_config(document(runtime={"provider": "universal", "model": name}), policy)


def test_hugging_face_model_ids_are_names_not_paths(tmp_path: Path) -> None:
    policy = ConfigPolicy(model_roots=(tmp_path,))
    ids = ["unsloth/Qwen3-1.7B-GGUF:Q4_K_M", "acme/tiny:q8_0", "nomic-ai/nomic-embed-text-v1.5"]
    for model in ids:
        assert policy.model_allowed(model)
        parse_config(document(runtime={"provider": "universal", "model": model}), policy)
    refused = ["../x", "/etc/passwd", "~/x", "a/b/c", "./a/b", ".a/b", "a/../b", "a/b:", "x",
               "a/b:Q4/K", "a--b/c", "a/b:../c", "~root/x", "a\\b/c"]  # fmt: skip
    for model in refused:
        assert not policy.model_allowed(model), model
        if model == "x":
            continue  # a bare name: see the next test
        with pytest.raises(ConfigInvalid, match="LF_MODELS_DIR"):
            parse_config(document(runtime={"provider": "universal", "model": model}), policy)
    assert policy.model_allowed(str(tmp_path / "m.gguf"))  # an absolute path inside a root


def test_a_bare_chat_model_name_is_no_path_and_fails_only_when_used(tmp_path: Path) -> None:
    # LlamaFarm's examples name universal models as Ollama does (`llama3.2:3b`).
    policy = ConfigPolicy(model_roots=(tmp_path,))
    for model in ["llama3.2:3b", "x"]:
        parse_config(document(runtime={"provider": "universal", "model": model}), policy)
        with pytest.raises(Unavailable, match=f"unknown model '{model}'"):
            chat.model_path(model)
    for model in ["x.gguf", "X.GGUF", ".hidden", "~x", "~nobody-here/m.gguf"]:  # files
        with pytest.raises(ConfigInvalid, match="LF_MODELS_DIR"):
            parse_config(document(runtime={"provider": "universal", "model": model}), policy)


def test_an_embedders_model_id_and_cache_folder_follow_the_policy(tmp_path: Path) -> None:
    policy = ConfigPolicy(model_roots=(tmp_path / "models",))

    def database(config: dict[str, Any]) -> dict[str, Any]:
        strategy = {"name": "e", "type": "UniversalEmbedder", "config": config}
        return {
            "rag": {
                "databases": [
                    {"name": "db", "type": "ChromaStore", "embedding_strategies": [strategy]}
                ]
            }
        }

    parse_config(document(**database({"model": "nomic-ai/nomic-embed-text-v1.5"})), policy)
    for config in [{"model": "../x"}, {"model": "a/b/c"}, {"cache_dir": str(tmp_path / "up")}]:
        with pytest.raises(ConfigInvalid, match="LF_MODELS_DIR"):
            parse_config(document(**database(config)), policy)


def test_the_bundled_names_are_the_modules_own() -> None:
    assert {chat.BUNDLED} | embedder.BUNDLED_ALIASES == BUNDLED_MODELS


def test_the_model_roots_are_the_cache_the_packages_and_models_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "models")
    policy = config_policy(settings)
    assert tmp_path / "models" in policy.model_roots
    assert policy.model_path_allowed(str(chat.bundled_path()))
    assert not policy.model_path_allowed(str(settings.data_dir / "projects" / "x.gguf"))
    for overlapping in (tmp_path, tmp_path / "data" / "models"):
        with pytest.raises(ValueError, match="must lie apart from LF_DATA_DIR"):
            config_policy(Settings(data_dir=tmp_path / "data", models_dir=overlapping))


def test_redact_turns_values_back_into_placeholders() -> None:
    environ = {"KEY": SECRET, "SHORT": "abc", "QUOTED": 'a"b\\c-long'}
    policy = ConfigPolicy(env_allow=("KEY", "SHORT", "QUOTED"), environ=environ)
    assert policy.redact(f"GET https://x/{SECRET}?k={SECRET}") == "GET https://x/${KEY}?k=${KEY}"
    assert policy.redact("abc") == "abc"  # too short to redact without garbling text
    assert policy.redact('{"v": "a\\"b\\\\c-long"}') == '{"v": "${QUOTED}"}'  # JSON-escaped
    urlish = ConfigPolicy(env_allow=("U",), environ={"U": "sk-a/b+c=d"})
    assert urlish.redact("url=sk-a%2Fb%2Bc%3Dd q=sk-a/b%2Bc%3Dd f=sk-a%2Fb%2Bc%3Dd") == (
        "url=${U} q=${U} f=${U}"
    )
    for prefix in ("", "u:", "Bearer "):  # base64 wherever the value starts
        for suffix in ("", "!", ":x"):
            encoded = base64.b64encode(f"{prefix}sk-a/b+c=d{suffix}".encode()).decode()
            left = urlish.redact(encoded).split("${U}")
            assert len(left) == 2, encoded  # what is left is the neighbours' characters:
            assert len(left[0]) <= len(prefix) * 4 // 3 + 1 and len(left[1]) <= len(suffix) + 4
    assert policy.redact_data({"a": [SECRET, 1], SECRET: None}) == {
        "a": ["${KEY}", 1],
        "${KEY}": None,
    }


def test_redact_part_holds_back_what_may_begin_a_secret() -> None:
    policy = ConfigPolicy(env_allow=("KEY",), environ={"KEY": SECRET})
    assert policy.redact_part("plain text") == ("plain text", "")
    assert policy.redact_part(f"a {SECRET[:3]}") == ("a ", SECRET[:3])
    sent, held = policy.redact_part(f"a {SECRET} b {SECRET[:-1]}")
    assert (sent, held) == ("a ${KEY} b ", SECRET[:-1])
    assert policy.redact_part(held + SECRET[-1:] + " c.") == ("${KEY} c.", "")
    assert ConfigPolicy().redact_part("anything") == ("anything", "")


def test_log_records_are_redacted_while_installed(caplog: pytest.LogCaptureFixture) -> None:
    policy = ConfigPolicy(env_allow=("KEY",), environ={"KEY": SECRET})
    log = logging.getLogger("tests.policy")
    with caplog.at_level(logging.INFO), redacted_logs(policy):
        log.info("calling %s", f"http://h/{SECRET}")
        try:
            raise ValueError(f"bad key {SECRET}")
        except ValueError:
            log.exception("failed")
    assert SECRET not in caplog.text and "http://h/${KEY}" in caplog.text
    assert "bad key ${KEY}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        log.info("after %s", SECRET)  # uninstalled: records are left alone
    assert SECRET in caplog.text
    uninstall = install_log_redaction(policy)
    uninstall()
    uninstall()  # twice is harmless


def test_a_process_never_starts_for_a_command_not_allowed_now(tmp_path: Path) -> None:
    """The config passed when it was written; the pool checks again right before starting."""
    out = tmp_path / "who.txt"
    server = McpServer(name="pwn", transport="stdio", command="sh", args=["-c", f"id > {out}"])

    async def run(policy: ConfigPolicy) -> str:
        pool = McpPool(policy=policy)
        try:
            with pytest.raises(Unavailable) as raised:
                await pool.tools(server)
            outcome = await pool.call(server, "add", {})
            assert outcome.error and outcome.text == raised.value.detail
            return raised.value.detail
        finally:
            await pool.close()

    detail = asyncio.run(run(ConfigPolicy()))
    assert detail.startswith("MCP server 'pwn': command 'sh' is not allowed")
    assert "LF_MCP_ALLOWED_COMMANDS" in detail
    env = McpServer(name="e", transport="stdio", command=sys.executable, env={"LD_PRELOAD": "x"})
    policy = ConfigPolicy(mcp_commands=frozenset({sys.executable}))

    async def start_env() -> str:
        pool = McpPool(policy=policy)
        try:
            with pytest.raises(Unavailable) as raised:
                await pool.tools(env)
            return raised.value.detail
        finally:
            await pool.close()

    assert "may not set LD_PRELOAD" in asyncio.run(start_env())
    assert not out.exists()


def test_a_config_written_under_a_wider_policy_fails_to_load_under_a_narrower(
    tmp_path: Path,
) -> None:
    wide = ProjectStore(tmp_path, policy=ConfigPolicy(mcp_commands=frozenset({"sh"})))
    wide.create("acme", "bot", template="server")
    wide.update("acme", "bot", {**wide.get("acme", "bot").config, **stdio("sh")})
    narrow = ProjectStore(tmp_path)
    with pytest.raises(ConfigInvalid, match="LF_MCP_ALLOWED_COMMANDS"):
        narrow.load("acme", "bot")

"""What a project config may make this server do: the operator's policy.

Configs arrive through the API, so a config is the client's word, and the policy is the
operator's (settings, never the config):

- `${VAR}` placeholders draw only from variables named by `env_allow` (names or globs).
  An unavailable variable reads the same whether it is set or not, and its values are
  *secrets*: `redact` turns each back into its placeholder wherever text leaves the server.
- A stdio MCP server's `command` must be one of `mcp_commands`, matched exactly: `npx`
  allows the config's `command: npx` (found on the server's PATH) and nothing else, not
  `./npx` or `/tmp/npx`; an absolute path allows that path only. Its `env` may set no
  variable that changes how a program is loaded or found (`LD_*`, `DYLD_*`, `PATH`, ...).
- A local model path (a `universal` chat model, the universal embedder's folder or cache) must
  resolve, symlinks followed, inside one of `model_roots`; outside them the message is the
  same whether the path exists or not. A bundled model's name and a Hugging Face model id
  (`ORG/NAME`, `ORG/NAME:QUANT`, `llamafarm.names.hf_model_id`) are names, not paths: they
  resolve only inside the bundled packages or the Hugging Face cache, so no root applies.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from llamafarm import bundled
from llamafarm.config.models import Database, ProjectConfig
from llamafarm.errors import ConfigInvalid
from llamafarm.names import hf_model_id

ENV_SETTING = "LF_CONFIG_ENV_ALLOW"
COMMANDS_SETTING = "LF_MCP_ALLOWED_COMMANDS"
MODELS_SETTING = "LF_MODELS_DIR"

BUNDLED_MODELS = bundled.NAMES
"""Names of the models shipped as packages: names, not paths, so no root applies to them."""

MIN_SECRET = 6
"""Shorter values are not redacted: replacing `1` or `true` everywhere would garble all text."""

_SAFE_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Variables that make a program load code or find programs elsewhere: the dynamic loader's, the
# shell's start-up files, interpreters' option and path variables. An allow rule (only names
# matching _SAFE_ENV_NAME and not listed here) keeps the list short and principled.
_LOADER_PREFIXES = ("LD_", "DYLD_", "_RLD", "GCONV_", "MALLOC_")
_LOADER_NAMES = frozenset(
    {
        "PATH",
        "IFS",
        "ENV",
        "BASH_ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "CDPATH",
        "HOME",
        "TMPDIR",
        "LOCPATH",
        "NLSPATH",
        "HOSTALIASES",
        "RESOLV_HOST_CONF",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PYTHONHOME",
        "PYTHONINSPECT",
        "PYTHONUSERBASE",
        "PYTHONEXECUTABLE",
        "PYTHONWARNINGS",
        "PYTHONBREAKPOINT",
        "NODE_OPTIONS",
        "NODE_PATH",
        "NODE_REPL_EXTERNAL_MODULE",
        "NPM_CONFIG_PREFIX",
        "NPM_CONFIG_GLOBALCONFIG",
        "NPM_CONFIG_USERCONFIG",
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "RUBYOPT",
        "RUBYLIB",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "CLASSPATH",
        "GIT_EXEC_PATH",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_CONFIG_GLOBAL",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "BROWSER",
    }
)


def _encodings(value: str) -> set[str]:
    """The value and the encodings of it that text may carry instead."""
    raw = value.encode("utf-8", "surrogateescape")
    forms = {value, json.dumps(value)[1:-1], quote(raw, safe=""), quote(raw), quote_plus(raw)}
    for offset in range(3):
        # Base64 of the value wherever it starts in the encoded bytes: only the characters that
        # depend on the value's bits alone, none shared with its neighbours.
        encoded = base64.b64encode(bytes(offset) + raw).decode()
        stable = encoded[-(-8 * offset // 6) : 8 * (offset + len(raw)) // 6]
        if len(stable) >= MIN_SECRET:
            forms |= {stable, stable.translate(_URLSAFE)}
    return forms


_URLSAFE = str.maketrans("+/", "-_")


def env_name_allowed(name: str) -> bool:
    """Whether a stdio MCP server's `env` may set this variable."""
    upper = name.upper()
    if not _SAFE_ENV_NAME.fullmatch(name) or upper in _LOADER_NAMES:
        return False
    return not upper.startswith(_LOADER_PREFIXES) and not upper.startswith("PYTHON")


@dataclass(frozen=True)
class ConfigPolicy:
    """The operator's limits on configs; the default allows no variables, commands or paths."""

    env_allow: tuple[str, ...] = ()
    mcp_commands: frozenset[str] = frozenset()
    model_roots: tuple[Path, ...] = ()
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)

    # -- ${VAR} -----------------------------------------------------------------------------

    def variable_allowed(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.env_allow)

    def variable(self, name: str) -> str | None:
        """The value of an allowed variable; None when it is not allowed or not set."""
        return self.environ.get(name) if self.variable_allowed(name) else None

    @property
    def has_secrets(self) -> bool:
        """Whether any allowed variable is set to a value long enough to redact."""
        return bool(self._secrets)

    @functools.cached_property
    def _secrets(self) -> list[tuple[str, str]]:
        # Computed once: every response and log record asks. `config_policy` hands the policy
        # a snapshot of the environment, so what is substituted and what is redacted agree.
        found = [
            (value, name)
            for name, value in self.environ.items()
            if len(value) >= MIN_SECRET and self.variable_allowed(name)
        ]
        return sorted(found, key=lambda pair: (-len(pair[0]), pair[1]))

    @functools.cached_property
    def _forms(self) -> list[tuple[str, str]]:
        # Each secret as it may be written into text: as is, JSON-escaped, percent-encoded (a URL
        # in an error message) and base64 (a Basic auth header a server echoes), longest first.
        forms = {
            form: f"${{{name}}}"
            for value, name in reversed(self._secrets)  # the longer value wins a shared form
            for form in _encodings(value)
        }
        return sorted(forms.items(), key=lambda pair: (-len(pair[0]), pair[0]))

    def redact(self, text: str) -> str:
        """The text with every secret value, plain or encoded, replaced by its `${NAME}`."""
        for form, placeholder in self._forms:
            if form in text:
                text = text.replace(form, placeholder)
        return text

    def redact_part(self, text: str) -> tuple[str, str]:
        """For text that comes in parts (a streamed answer): (the text redacted, less its end
        where a secret may begin that the next part completes; that end, to put before it)."""
        text = self.redact(text)
        held = 0
        for form, _ in self._forms:
            for size in range(min(len(form) - 1, len(text)), held, -1):
                if text.endswith(form[:size]):
                    held = size
                    break
        return text[: len(text) - held], text[len(text) - held :]

    def redact_data(self, data: Any) -> Any:
        """`redact` applied to every string (and key) of JSON-like data."""
        if not self.env_allow:
            return data
        if isinstance(data, str):
            return self.redact(data)
        if isinstance(data, dict):
            return {self.redact_data(k): self.redact_data(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.redact_data(v) for v in data]
        return data

    # -- what a parsed config may ask for ------------------------------------------------------

    def check(self, config: ProjectConfig) -> None:
        """ConfigInvalid naming everything the config asks that the operator did not allow."""
        problems = list(self._problems(config))
        if problems:
            raise ConfigInvalid(f"Invalid config: {'; '.join(problems)}")

    def command_allowed(self, command: str) -> bool:
        return command in self.mcp_commands

    def unallowed_command(self, where: str, command: str) -> str:
        return (
            f"{where}: command {command!r} is not allowed: the server's operator must name it "
            f"in {COMMANDS_SETTING} (or `lf start --allow-mcp-command`)"
        )

    def model_allowed(self, model: str) -> bool:
        """A bundled model's name, a Hugging Face model id, or a path inside `model_roots`."""
        return (
            model in BUNDLED_MODELS
            or hf_model_id(model) is not None
            or self.model_path_allowed(model)
        )

    def model_path_allowed(self, model: str) -> bool:
        try:
            path = Path(model).expanduser()  # `~nobody/x`: RuntimeError, no such home
            if not path.is_absolute():
                return False  # relative to the server's working directory: never meant
            resolved = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop: no model either way
            return False
        return any(resolved.is_relative_to(root.resolve()) for root in self.model_roots)

    def _problems(self, config: ProjectConfig) -> Iterator[str]:
        for i, server in enumerate(config.mcp.servers if config.mcp else []):
            where = f"mcp.servers[{i}]"
            if server.transport != "stdio" or server.command is None:
                continue
            if not self.command_allowed(server.command):
                yield self.unallowed_command(f"{where}.command", server.command)
            for name in server.env:
                if not env_name_allowed(name):
                    yield (
                        f"{where}.env.{name}: this variable changes how programs are loaded "
                        "or found and cannot be set by a config"
                    )
        flat = not config.runtime.models
        for i, model in enumerate(config.runtime.model_list()):
            if model.provider == "universal" and not _chat_model_name(model.model):
                where = "runtime.model" if flat else f"runtime.models[{i}].model"
                yield from self._model(where, model.model)
        for i, database in enumerate(config.rag.databases if config.rag else []):
            yield from self.database_problems(f"rag.databases[{i}]", database)

    def check_database(self, database: Database) -> None:
        """The model rule for one database definition, before anything looks at its files."""
        problems = list(self.database_problems("database", database))
        if problems:
            raise ConfigInvalid("; ".join(problems))

    def database_problems(self, where: str, database: Database) -> Iterator[str]:
        for j, strategy in enumerate(database.embedding_strategies):
            if strategy.type != "UniversalEmbedder":
                continue
            at = f"{where}.embedding_strategies[{j}].config"
            folder, cache = strategy.config.get("model"), strategy.config.get("cache_dir")
            if isinstance(folder, str):
                yield from self._model(f"{at}.model", folder)
            if isinstance(cache, str):  # a cache elsewhere would make any folder a "cache"
                yield from self._model(f"{at}.cache_dir", cache, name=False)

    def _model(self, where: str, model: str, *, name: bool = True) -> Iterable[str]:
        allowed = self.model_allowed(model) if name else self.model_path_allowed(model)
        if not allowed:
            yield (
                f"{where}: a model file must be inside the Hugging Face cache, the bundled "
                f"models or the folder the server's operator sets in {MODELS_SETTING}"
            )


def _chat_model_name(model: str) -> bool:
    """A bare name such as `llama3.2:3b` (LlamaFarm's examples use Ollama's names): the
    universal runtime never reads it as a path (only the bundled name and Hugging Face ids
    resolve; any other name is a 503 when the model is used), so it is no path to check."""
    return (
        not any(c in model for c in "/\\")
        and not model.startswith(("~", "."))
        and not model.lower().endswith(".gguf")
    )

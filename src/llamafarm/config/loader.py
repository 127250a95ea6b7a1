"""Reading, validating and writing `llamafarm.yaml` documents.

A *document* is the mapping as the user wrote it (with `${VAR}` placeholders kept); a
`ProjectConfig` is the validated model after environment substitution, drawn only from the
variables the operator's `ConfigPolicy` allows, and checked against the rest of that policy.
Files store documents, so secrets given as `${VAR}` never land on disk or in API responses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from llamafarm.config.models import ProjectConfig
from llamafarm.config.policy import ENV_SETTING, ConfigPolicy
from llamafarm.errors import ConfigInvalid

# libyaml's loader when PyYAML was built with it: 20x faster, and workers read configs often.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def format_location(loc: tuple[int | str, ...]) -> str:
    """`('rag', 'databases', 0, 'name')` -> `rag.databases[0].name`; an empty key is `''`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            key = str(part) or "''"
            path += f".{key}" if path else key
    return path


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """One readable line per pydantic error, each starting with the path of the key."""
    lines = []
    for error in errors:
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        where = format_location(tuple(error["loc"]))
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def substitute_env(document: Any, policy: ConfigPolicy, *, _loc: tuple[int | str, ...] = ()) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of the document, from the
    variables the policy allows; a variable it does not allow counts as unset."""
    if isinstance(document, dict):
        return {k: substitute_env(v, policy, _loc=(*_loc, k)) for k, v in document.items()}
    if isinstance(document, list):
        return [substitute_env(v, policy, _loc=(*_loc, i)) for i, v in enumerate(document)]
    if not isinstance(document, str):
        return document

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = policy.variable(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                # One message whether the variable is set or not: which variables exist on
                # the server is none of a client's business.
                where = format_location(_loc) or "config"
                raise ConfigInvalid(
                    f"{where}: environment variable {name} is not available to configs "
                    f"(the server's operator allows variables in {ENV_SETTING})"
                )
            return default
        return value

    return _VAR.sub(replace, document)


def parse_config(document: Any, policy: ConfigPolicy | None = None) -> ProjectConfig:
    """Validate a document (after `${VAR}` substitution) into a ProjectConfig that the policy
    allows; no policy allows no variables, commands or model paths."""
    if not isinstance(document, dict):
        raise ConfigInvalid("config must be a mapping of keys to values")
    policy = policy or ConfigPolicy()
    try:
        config = ProjectConfig.model_validate(substitute_env(document, policy))
    except ValidationError as exc:
        raise ConfigInvalid(f"Invalid config: {describe_errors(exc.errors())}") from exc
    policy.check(config)
    return config


def read_document(path: Path) -> dict[str, Any]:
    """Load a YAML file as a document; syntax errors become ConfigInvalid."""
    return parse_document(path.read_bytes(), path.name)


def parse_document(data: bytes | str, name: str) -> dict[str, Any]:
    """A document from YAML text (`name`: what errors call it); errors become ConfigInvalid."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        document = yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigInvalid(f"{name} is not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigInvalid(f"{name} is not UTF-8 text") from exc
    if not isinstance(document, dict):
        raise ConfigInvalid(f"{name} must contain a mapping of keys to values")
    return document


def dump_document(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)


def json_schema() -> str:
    return json.dumps(ProjectConfig.model_json_schema(), indent=2)

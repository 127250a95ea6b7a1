"""`lf config check`: every problem of a `llamafarm.yaml`, offline, each with its path and a fix.

The server stops at the first failing step (a variable, then the schema, then the policy) and
joins its messages in one line; a person fixing a file wants them one per line, each with what
to do, and as many at once as can be known.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llamafarm.config import ConfigPolicy, ProjectConfig, config_warnings, read_document
from llamafarm.config.loader import format_location, substitute_env
from llamafarm.errors import ConfigInvalid

SCHEMA_HINT = "see `lf config schema` for the expected shape"


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    hint: str


@dataclass(frozen=True)
class CheckResult:
    problems: list[Problem]
    warnings: list[str]


def check_file(path: Path, policy: ConfigPolicy) -> CheckResult:
    """Validate a file as the server would, collecting what the server reports one at a time."""
    try:
        document = read_document(path)
    except ConfigInvalid as exc:
        return CheckResult([Problem(path.name, str(exc), "fix the YAML syntax")], [])
    problems: list[Problem] = []
    try:
        resolved = substitute_env(document, policy)
    except ConfigInvalid as exc:
        where, _, message = str(exc).partition(": ")
        hint = "set the variable where the server runs, or give a default: ${NAME:-value}"
        problems.append(Problem(where, message, hint))
        resolved = document  # still check the rest; placeholders are judged as text
    try:
        config = ProjectConfig.model_validate(resolved)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if not _placeholder(e.get("input"))]
        problems.extend(_problem(error) for error in errors)
        return CheckResult(problems, [])
    if problems:
        return CheckResult(problems, [])
    try:
        policy.check(config)
    except ConfigInvalid as exc:
        hint = "ask the server's operator to allow it (see docs/security.md), or change it"
        return CheckResult([Problem("config", str(exc), hint)], [])
    warnings = warnings_of(config)
    check_components = _component_check()
    if check_components is not None:
        try:
            warnings += check_components(config)
        except ConfigInvalid as exc:
            where, _, message = str(exc).partition(": ")
            return CheckResult([Problem(where, message, "use one of the names listed")], [])
    return CheckResult([], warnings)


def warnings_of(config: ProjectConfig) -> list[str]:
    """What the server would warn about (keys accepted but not honoured), as it says it."""
    return config_warnings(config)


def _component_check() -> Callable[[ProjectConfig], list[str]] | None:
    """The server's check of the component types a config names (their registries live in
    ingest and rag, below the server, in `llamafarm.components`), where this version has it."""
    try:
        module = importlib.import_module("llamafarm.components")
    except ModuleNotFoundError:
        return None
    check: Callable[[ProjectConfig], list[str]] = module.check_components
    return check


def _placeholder(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _problem(error: Mapping[str, Any]) -> Problem:
    loc = tuple(error["loc"])
    where = format_location(loc) or "config"
    kind = error["type"]
    if kind == "extra_forbidden":
        return Problem(where, "unknown key", _unknown_key_hint(loc))
    if kind == "missing":
        return Problem(where, "required key is missing", f"add `{loc[-1]}:`")
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        return Problem(where, message, "use one of the values listed")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return Problem(where, message, f"got {error.get('input')!r}; {SCHEMA_HINT}")
    if kind == "value_error" and "unknown" in message:
        return Problem(where, message, "use one of the names defined in the file, or define it")
    return Problem(where, message, SCHEMA_HINT)


def _unknown_key_hint(loc: tuple[Any, ...]) -> str:
    known = _known_keys(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    if known:
        return f"remove it; keys here: {', '.join(sorted(known))}"
    return f"remove it; {SCHEMA_HINT}"


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the schema allows at a location (pydantic's loc walks the JSON Schema)."""
    schema = ProjectConfig.model_json_schema()
    node: Any = schema
    for part in loc:
        node = _resolve(schema, node)
        if node is None:
            return []
        node = node.get("items") if isinstance(part, int) else node.get("properties", {}).get(part)
    node = _resolve(schema, node)
    return list((node or {}).get("properties", {}))


def _resolve(schema: dict[str, Any], node: Any) -> dict[str, Any] | None:
    """Follow `$ref`s and pick the object/array branch of an `anyOf` (an optional section)."""
    while isinstance(node, dict):
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        elif "anyOf" in node:
            node = next((n for n in node["anyOf"] if n.get("type") != "null"), None)
        else:
            return node
    return None

"""Project templates: built-in ones in the package, plus `$LF_DATA_DIR/templates/*.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llamafarm.config.loader import parse_config, read_document
from llamafarm.config.policy import ConfigPolicy
from llamafarm.errors import BadRequest
from llamafarm.names import is_valid_name

BUILTIN_DIR = Path(__file__).parent / "templates"
ALIASES = {"default": "rag"}


def available_templates(custom_dir: Path | None = None) -> list[str]:
    names = {p.stem for p in BUILTIN_DIR.glob("*.yaml")} | set(ALIASES)
    if custom_dir is not None and custom_dir.is_dir():
        names |= {p.stem for p in custom_dir.glob("*.yaml") if is_valid_name(p.stem)}
    return sorted(names)


def render_template(
    template: str,
    *,
    namespace: str,
    name: str,
    custom_dir: Path | None = None,
    policy: ConfigPolicy | None = None,
) -> dict[str, Any]:
    """The template's document with `name` and `namespace` set; validated before it is returned."""
    stem = ALIASES.get(template, template)
    path = None
    if is_valid_name(stem):
        # A user's template of the same name overrides the built-in one.
        candidates = [custom_dir / f"{stem}.yaml"] if custom_dir is not None else []
        candidates.append(BUILTIN_DIR / f"{stem}.yaml")
        path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        known = ", ".join(available_templates(custom_dir))
        raise BadRequest(f"Unknown config_template {template!r} (available: {known})")
    body = read_document(path)
    document = {"version": body.get("version", "v1"), "name": name, "namespace": namespace}
    document |= {k: v for k, v in body.items() if k not in document}
    parse_config(document, policy)
    return document

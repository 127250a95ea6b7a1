"""`lf config upgrade`: rewrite the older shapes of `llamafarm.yaml` we still accept into the
current one, on ruamel.yaml's round-trip tree so comments, key order and quoting survive.

Each rewrite is a function that edits the tree in place and returns what it changed, one line
per change, so a file already in the current shape comes back unchanged and says so.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Callable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.tokens import CommentToken

from llamafarm.config.models import ModelConfig
from llamafarm.errors import ConfigInvalid

CURRENT_VERSION = "v1"
FLAT_MODEL_NAME = "default"
"""The name the flat `runtime` form's model has had all along (`Runtime.model_list`)."""

_MODEL_KEYS = tuple(k for k in ModelConfig.model_fields if k not in {"name", "default"})
"""Keys of the flat `runtime` form that belong to its one model."""

# (mapping, sequence, offset) indents and whether a null is written `null`, tried to match a
# file's own layout: LlamaFarm's templates indent list items under their key and write `null`;
# PyYAML (`lf init`) does not indent them; ruamel.yaml's default writes a null as nothing.
_LAYOUTS = tuple(
    (*indents, null)
    for indents in ((2, 4, 2), (2, 2, 0), (4, 6, 4), (4, 4, 0))
    for null in (True, False)
)
Layout = tuple[int, int, int, bool]


class _NullRepresenter(RoundTripRepresenter):
    """Writes a null as `null` (ruamel.yaml's own writes nothing after the key)."""


_NullRepresenter.add_representer(
    type(None),
    lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null"),
)

Rewrite = Callable[[CommentedMap], list[str]]


def add_version(doc: CommentedMap) -> list[str]:
    """`version` names the shape of the file; older files had none."""
    if "version" in doc:
        return []
    doc.insert(0, "version", CURRENT_VERSION)
    return [f"version: added ({CURRENT_VERSION})"]


def runtime_models(doc: CommentedMap) -> list[str]:
    """The flat `runtime: {provider, model, ...}` becomes `runtime.models` with one model named
    `default`, marked as the default, and `runtime.default_model` naming it."""
    runtime = doc.get("runtime")
    if not isinstance(runtime, CommentedMap) or "models" in runtime:
        return []
    if "provider" not in runtime and "model" not in runtime:
        return []
    last = list(runtime)[-1]
    trailing = _split_trailing(runtime, last)
    model = CommentedMap()
    model["name"] = FLAT_MODEL_NAME
    for key in [k for k in runtime if k in _MODEL_KEYS]:
        model[key] = runtime.pop(key)
        _move_comment(runtime, model, key)
    if "default" in ModelConfig.model_fields:  # LlamaFarm's per-model flag, where accepted
        model["default"] = True
    others = list(runtime.items())
    runtime.clear()
    runtime["models"] = CommentedSeq([model])
    runtime["default_model"] = FLAT_MODEL_NAME
    for key, value in others:
        runtime[key] = value
    if trailing is not None:
        runtime.ca.items[list(runtime)[-1]] = trailing
    return [f"runtime: the flat model became runtime.models[0] named {FLAT_MODEL_NAME!r}"]


def mcp_base_url(doc: CommentedMap) -> list[str]:
    """An HTTP/SSE MCP server's `url` is `base_url`, LlamaFarm's name for it."""
    servers = (doc.get("mcp") or {}).get("servers") if isinstance(doc.get("mcp"), dict) else None
    changes = []
    for index, server in enumerate(servers if isinstance(servers, list) else []):
        if isinstance(server, CommentedMap) and "url" in server and "base_url" not in server:
            _rename(server, "url", "base_url")
            changes.append(f"mcp.servers[{index}].url: renamed base_url")
    return changes


REWRITES: tuple[Rewrite, ...] = (add_version, runtime_models, mcp_base_url)


def upgrade_text(text: str) -> tuple[str, list[str]]:
    """The upgraded file text and the changes made; the same text when nothing applies."""
    yaml = _yaml(_layout_of(text))
    doc = _load(yaml, text)
    changes = [change for rewrite in REWRITES for change in rewrite(doc)]
    if not changes:
        return text, []
    return _dump(yaml, doc), changes


def unified_diff(before: str, after: str, name: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{name} (before)",
        tofile=f"{name} (upgraded)",
    )
    return "".join(lines)


def _yaml(layout: Layout) -> YAML:
    yaml = YAML()  # round trip
    yaml.preserve_quotes = True
    # Never wrap long lines: a string PyYAML folded over lines comes out on one (the same
    # value), where wrapping at 80 would fold it elsewhere and leave trailing spaces.
    yaml.width = 4096
    mapping, sequence, offset, null = layout
    if null:
        yaml.Representer = _NullRepresenter
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _layout_of(text: str) -> Layout:
    """The indentation that reproduces the unchanged file most closely."""

    def distance(layout: Layout) -> int:
        try:
            yaml = _yaml(layout)
            again = _dump(yaml, _load(yaml, text))
        except ConfigInvalid:
            return 0
        diff = difflib.ndiff(text.splitlines(), again.splitlines())
        return sum(1 for line in diff if line[:1] in "+-")

    return min(_LAYOUTS, key=distance)


def _load(yaml: YAML, text: str) -> CommentedMap:
    try:
        doc = yaml.load(text)
    except YAMLError as exc:
        raise ConfigInvalid(f"not valid YAML: {exc}") from exc
    if not isinstance(doc, CommentedMap):
        raise ConfigInvalid("the file must contain a mapping of keys to values")
    return doc


def _dump(yaml: YAML, doc: Any) -> str:
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    return buffer.getvalue()


def _rename(mapping: CommentedMap, old: str, new: str) -> None:
    """Rename a key where it stands, its comment with it."""
    position = list(mapping).index(old)
    comment = mapping.ca.items.pop(old, None)
    mapping.insert(position, new, mapping.pop(old))
    if comment is not None:
        mapping.ca.items[new] = comment


def _split_trailing(mapping: CommentedMap, key: str) -> list[Any] | None:
    """Take the comment lines after the last key of a block (the blank line and the comment
    that introduce the next section) off that key, leaving its end-of-line comment: they stay
    at the block's end when its keys move elsewhere."""
    comment = mapping.ca.items.get(key)
    token = comment[2] if comment and len(comment) > 2 else None
    if not isinstance(token, CommentToken) or "\n" not in token.value.rstrip("\n"):
        return None
    head, _, tail = token.value.partition("\n")
    if head:
        token.value = head + "\n"
    else:
        comment[2] = None
    return [None, None, CommentToken("\n" + tail, token.start_mark), None]


def _move_comment(source: CommentedMap, target: CommentedMap, key: str) -> None:
    comment = source.ca.items.pop(key, None)
    if comment is not None:
        target.ca.items[key] = comment

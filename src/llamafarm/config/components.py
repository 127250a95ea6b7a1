"""LlamaFarm's reusable components: strategies and parsers defined once, referenced by name.

A file may define embedding strategies, retrieval strategies and parsers under `components`
(or `rag.components`) and refer to them by name: a database's `embedding_strategy` /
`retrieval_strategy`, a data processing strategy's `parsers: [name, ...]`, and
`components.defaults` for databases that name none. Like LlamaFarm 0.0.27's
`config/helpers/component_resolver.py`, the references are inlined before validation, so the
rest of the server sees plain strategies:

- a database's reference (else the default) is used only when its own list is empty; it
  becomes the list's one entry and, unless one is named, the database's default;
- with its own list, a database takes the default's name as its default if the list has it;
- a parser name becomes a copy of that parser (without its `name`).

The document itself is never changed (it is stored as written); this works on a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from typing import Any

KINDS = ("embedding_strategies", "retrieval_strategies", "parsers")
_DATABASE_REFS = (
    ("embedding_strategies", "embedding_strategy", "default_embedding_strategy"),
    ("retrieval_strategies", "retrieval_strategy", "default_retrieval_strategy"),
)

Library = dict[str, dict[str, dict[str, Any]]]


def inline_components(data: Any, *, dropped: Mapping[str, Collection[str]]) -> Any:
    """`data` with every component reference replaced by the component; `dropped` names the
    keys (per kind) left out of the copies: ones reported where the component is defined."""
    if not isinstance(data, dict) or not isinstance(data.get("rag"), dict):
        return data
    rag = dict(data["rag"])
    library = _library(
        [("components", data.get("components")), ("rag.components", rag.get("components"))]
    )
    defaults = _defaults(data.get("components"), rag.get("components"))
    if isinstance(rag.get("databases"), list):
        rag["databases"] = [
            _database(db, i, library, defaults, dropped) if isinstance(db, dict) else db
            for i, db in enumerate(rag["databases"])
        ]
    if isinstance(rag.get("data_processing_strategies"), list):
        rag["data_processing_strategies"] = [
            _strategy(s, i, library, dropped) if isinstance(s, dict) else s
            for i, s in enumerate(rag["data_processing_strategies"])
        ]
    return {**data, "rag": rag}


def _library(sources: list[tuple[str, Any]]) -> Library:
    """Components by kind and name; malformed entries are left to the models to report."""
    library: Library = {kind: {} for kind in KINDS}
    for where, block in sources:
        if not isinstance(block, dict):
            continue
        for kind in KINDS:
            entries = block.get(kind)
            found: dict[str, dict[str, Any]] = {}
            for entry in entries if isinstance(entries, list) else []:
                name = entry.get("name") if isinstance(entry, dict) else None
                if isinstance(name, str):
                    found.setdefault(name, entry)  # a repeated name: the model reports it
            both = sorted(set(found) & set(library[kind]))
            if both:
                raise ValueError(f"{where}.{kind}: {both} are defined in components.{kind} too")
            library[kind] |= found
    return library


def _defaults(*blocks: Any) -> dict[str, str]:
    """`components.defaults`, then `rag.components.defaults` for what the first leaves out."""
    merged: dict[str, str] = {}
    for block in blocks:
        defaults = block.get("defaults") if isinstance(block, dict) else None
        if isinstance(defaults, dict):
            for key, value in defaults.items():
                if isinstance(value, str) and value:
                    merged.setdefault(key, value)
    return merged


def _database(
    db: dict[str, Any],
    i: int,
    library: Library,
    defaults: dict[str, str],
    dropped: Mapping[str, Collection[str]],
) -> dict[str, Any]:
    db = dict(db)
    for kind, ref_key, default_key in _DATABASE_REFS:
        own = db.get(kind)
        if own:
            names = (
                [s.get("name") for s in own if isinstance(s, dict)] if isinstance(own, list) else []
            )
            if not db.get(default_key) and defaults.get(ref_key) in names:
                db[default_key] = defaults[ref_key]
            continue
        ref = db.get(ref_key)
        where = f"rag.databases[{i}].{ref_key}"
        if not (isinstance(ref, str) and ref):
            ref, where = defaults.get(ref_key), f"components.defaults.{ref_key}"
        if ref is None:
            continue
        db[kind] = [_copy(_lookup(library, kind, ref, where), dropped.get(kind, ()))]
        if not db.get(default_key):
            db[default_key] = ref
    return db


def _strategy(
    strategy: dict[str, Any], i: int, library: Library, dropped: Mapping[str, Collection[str]]
) -> dict[str, Any]:
    parsers = strategy.get("parsers")
    if not isinstance(parsers, list):
        return strategy
    resolved = []
    for j, parser in enumerate(parsers):
        if isinstance(parser, str):
            where = f"rag.data_processing_strategies[{i}].parsers[{j}]"
            parser = _copy(
                _lookup(library, "parsers", parser, where), {"name", *dropped.get("parsers", ())}
            )
        resolved.append(parser)
    return {**strategy, "parsers": resolved}


def _lookup(library: Library, kind: str, name: str, where: str) -> dict[str, Any]:
    found = library[kind].get(name)
    if found is None:
        known = ", ".join(sorted(library[kind])) or "none"
        raise ValueError(f"{where}: unknown component {name!r} (components.{kind}: {known})")
    return found


def _copy(definition: dict[str, Any], leave_out: Collection[str]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in definition.items() if k not in leave_out}

"""Metadata filters of a query: parsed once, then run by Chroma, SQLite, PostgreSQL or Python.

A client writes `{"source": "a.pdf", "page": {"$gte": 2}}`, with `$and`/`$or` lists at any
level. `parse_filters` turns that into a `Filter` tree, and the three backends agree on it:

- Types never mix: `True` matches only booleans (not `1`), `1` matches `1` and `1.0` but not
  `True`, and `$gt`/`$gte`/`$lt`/`$lte` compare numbers only.
- `$ne` and `$nin` are the negation of `$eq` and `$in`, so a chunk that lacks the key matches
  them. That is what Chroma does, and it reads as "not from a.pdf" should.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from llamafarm.documents import MetadataValue
from llamafarm.errors import BadRequest

Operator = Literal["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"]
OPERATORS: tuple[Operator, ...] = get_args(Operator)
MAX_DEPTH = 8
"""Levels of `$and`/`$or` nesting."""
MAX_CONDITIONS = 64
MAX_VALUES = 1024
"""Values in one filter, `$in` list items included: SQLite binds each as a parameter."""

_RANGES = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_INT64 = 2**63
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*")
_VALID = f"valid operators: {', '.join(OPERATORS)}; and $and/$or with a list of filters"


@dataclass(frozen=True)
class Condition:
    """One test of one metadata key; `value` is a tuple for `$in` and `$nin`."""

    key: str
    op: Operator
    value: MetadataValue | tuple[MetadataValue, ...]


@dataclass(frozen=True)
class All:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Filter, ...]


Filter = Condition | All | AnyOf


def parse_filters(raw: Mapping[str, Any] | None) -> Filter | None:
    """The normalized filter of a client's `metadata_filters`; None when it tests nothing."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise BadRequest(f"metadata_filters: expected an object, got {_kind(raw)}")
    if not raw:
        return None
    return _Parser().object(raw, (), depth=0)


def combine(*filters: Filter | None) -> Filter | None:
    """All of the given filters (a strategy's and a request's); None when none is given."""
    given = [f for f in filters if f is not None]
    return _join(All, given) if given else None


def matches(f: Filter, metadata: Mapping[str, MetadataValue]) -> bool:
    """Whether a chunk's metadata passes `f`."""
    if isinstance(f, All):
        return all(matches(item, metadata) for item in f.items)
    if isinstance(f, AnyOf):
        return any(matches(item, metadata) for item in f.items)
    actual = metadata.get(f.key)
    if f.op in _RANGES:
        if not (_is_number(actual) and _is_number(f.value)):
            return False
        a, b = cast(float, actual), cast(float, f.value)
        return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[f.op]
    values = f.value if isinstance(f.value, tuple) else (f.value,)
    found = any(_same(actual, value) for value in values)
    return not found if f.op in ("$ne", "$nin") else found


def to_chroma(f: Filter) -> dict[str, Any]:
    """The ChromaDB `where` of `f`."""
    if isinstance(f, Condition):
        if not isinstance(f.value, tuple):
            return _chroma_test(f.key, f.op, f.value)
        # Chroma wants one type per list; a mixed list becomes one test per type.
        groups: dict[type, list[MetadataValue]] = {}
        for value in f.value:
            groups.setdefault(type(value), []).append(value)
        tests = [_chroma_test(f.key, f.op, group) for group in groups.values()]
        return tests[0] if len(tests) == 1 else {"$or" if f.op == "$in" else "$and": tests}
    # Chroma refuses an `$and`/`$or` of one item.
    parts = [to_chroma(item) for item in f.items]
    return parts[0] if len(parts) == 1 else {"$and" if isinstance(f, All) else "$or": parts}


def to_sql(f: Filter, column: str) -> tuple[str, list[Any]]:
    """A SQLite condition on `column`, a JSON object of chunk metadata, and its parameters.

    Keys are looked up with `json_each` rather than a `json_extract` path: SQLite 3.40 cannot
    address a key holding a double quote with a path, and this way the key is a plain
    parameter that needs no escaping at all.
    """
    if not _COLUMN.fullmatch(column):
        raise ValueError(f"to_sql: {column!r} is not a column name")
    params: list[Any] = []
    return _sql(f, column, params), params


def to_postgres(f: Filter, column: str) -> tuple[str, dict[str, Any]]:
    """A PostgreSQL condition on `column`, a JSONB object of chunk metadata, and its named
    parameters (`:f0`, `:f1`, …): equality is JSONB containment, which tells `true` from `1`
    and matches `1` with `1.0` as the rules above want; ranges compare numbers only."""
    if not _COLUMN.fullmatch(column):
        raise ValueError(f"to_postgres: {column!r} is not a column name")
    params: dict[str, Any] = {}
    return _postgres(f, column, params), params


class _Parser:
    def __init__(self) -> None:
        self.conditions = 0
        self.values = 0

    def object(self, raw: Mapping[str, Any], path: tuple[str | int, ...], *, depth: int) -> Filter:
        items: list[Filter] = []
        for key, value in raw.items():
            at = (*path, key)
            if not isinstance(key, str) or not key:
                raise BadRequest(f"{_at(path)}: keys must be non-empty strings")
            if not _encodable(key) or key.startswith("#"):
                raise BadRequest(f"{_at(path)}: {key!r} is not a metadata key")
            if key in ("$and", "$or"):
                items.append(self.logical(key, value, at, depth=depth + 1))
            elif key.startswith("$"):
                raise BadRequest(f"{_at(at)}: unknown operator {key!r} here ({_VALID})")
            else:
                items.extend(self.field(key, value, at))
        return _join(All, items)

    def logical(self, key: str, value: Any, at: tuple[str | int, ...], *, depth: int) -> Filter:
        if depth > MAX_DEPTH:
            raise BadRequest(f"{_at(at)}: filters nest deeper than {MAX_DEPTH} levels")
        if not isinstance(value, list | tuple) or not value:
            raise BadRequest(f"{_at(at)}: expected a non-empty list of filters, got {_kind(value)}")
        items = []
        for index, item in enumerate(value):
            if not isinstance(item, Mapping) or not item:
                raise BadRequest(
                    f"{_at((*at, index))}: expected a non-empty object, got {_kind(item)}"
                )
            items.append(self.object(item, (*at, index), depth=depth))
        return _join(All if key == "$and" else AnyOf, items)

    def field(self, key: str, value: Any, at: tuple[str | int, ...]) -> list[Condition]:
        if not isinstance(value, Mapping):
            return [self.condition(key, "$eq", value, at)]
        if not value:
            raise BadRequest(f"{_at(at)}: expected a value or operators ({_VALID})")
        conditions = []
        for op, operand in value.items():
            if op not in OPERATORS:
                hint = "" if str(op).startswith("$") else "; metadata values are never objects"
                raise BadRequest(f"{_at((*at, op))}: unknown operator {op!r} ({_VALID}){hint}")
            conditions.append(self.condition(key, op, operand, (*at, op)))
        return conditions

    def condition(self, key: str, op: Operator, value: Any, at: tuple[str | int, ...]) -> Condition:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise BadRequest(f"metadata_filters: more than {MAX_CONDITIONS} conditions")
        if op in ("$in", "$nin"):
            if not isinstance(value, list | tuple) or not value:
                raise BadRequest(f"{_at(at)}: expected a non-empty list, got {_kind(value)}")
            seen: dict[tuple[str, MetadataValue], MetadataValue] = {}
            for index, item in enumerate(value):
                scalar = self.scalar(item, (*at, index))
                seen.setdefault((_kind(scalar), scalar), scalar)
            return Condition(key, op, tuple(seen.values()))
        scalar = self.scalar(value, at)
        if op in _RANGES and not _is_number(scalar):
            raise BadRequest(f"{_at(at)}: expected a number, got {_kind(scalar)}")
        return Condition(key, op, scalar)

    def scalar(self, value: Any, at: tuple[str | int, ...]) -> MetadataValue:
        self.values += 1
        if self.values > MAX_VALUES:
            raise BadRequest(f"metadata_filters: more than {MAX_VALUES} values")
        if isinstance(value, str) and not _encodable(value):
            raise BadRequest(f"{_at(at)}: not valid Unicode text (a lone surrogate?)")
        if isinstance(value, bool | str):
            return value
        if isinstance(value, int) and -_INT64 <= value < _INT64:
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        hint = (
            ' (use {"$in": [...]} to match any of several values)'
            if isinstance(value, list)
            else ""
        )
        raise BadRequest(
            f"{_at(at)}: expected a string, a finite number or a boolean, got {_kind(value)}{hint}"
        )


def _encodable(text: str) -> bool:
    """Valid Unicode (JSON may carry lone surrogates, which no store can compare)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _join(kind: type[All] | type[AnyOf], items: list[Filter]) -> Filter:
    flat: list[Filter] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else (item,))
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def _chroma_test(
    key: str, op: Operator, value: MetadataValue | list[MetadataValue]
) -> dict[str, Any]:
    test = {key: {op: value}}
    listed = value if isinstance(value, list) else [value]
    fractional = [v for v in listed if isinstance(v, float) and not v.is_integer()]
    if not fractional:
        return test
    # Chroma 1.5 truncates a fractional bound before comparing it with int values, so 2.5
    # acts as 2 on them (chroma-core/chroma#7491). The int neighbours of the bound are the
    # only ints that can come out wrong; each test below settles them explicitly.
    if op in _RANGES:
        low, high = math.floor(fractional[0]), math.ceil(fractional[0])
        ints, failing = ({"$gte": high}, low) if op in ("$gt", "$gte") else ({"$lte": low}, high)
        return {"$and": [{"$or": [test, {key: ints}]}, {key: {"$ne": failing}}]}
    neighbours = {n for x in fractional for n in (math.floor(x), math.ceil(x))} - set(listed)
    if not neighbours:
        return test
    if op in ("$eq", "$in"):
        return {"$and": [test, {key: {"$nin": sorted(neighbours)}}]}
    return {"$or": [test, {key: {"$in": sorted(neighbours)}}]}


def _sql(f: Filter, column: str, params: list[Any]) -> str:
    if isinstance(f, All | AnyOf):
        joiner = " AND " if isinstance(f, All) else " OR "
        return "(" + joiner.join(_sql(item, column, params) for item in f.items) + ")"
    params.append(f.key)
    if f.op in _RANGES:
        params.append(f.value)
        test = f"type IN ('integer', 'real') AND value {_RANGES[f.op]} ?"
    else:
        test = _sql_equals(f.value if isinstance(f.value, tuple) else (f.value,), params)
    exists = f"EXISTS (SELECT 1 FROM json_each({column}) WHERE key = ? AND {test})"
    return f"NOT {exists}" if f.op in ("$ne", "$nin") else exists


def _postgres(f: Filter, column: str, params: dict[str, Any]) -> str:
    def bind(value: Any) -> str:
        name = f"f{len(params)}"
        params[name] = value
        return f":{name}"

    if isinstance(f, All | AnyOf):
        joiner = " AND " if isinstance(f, All) else " OR "
        return "(" + joiner.join(_postgres(item, column, params) for item in f.items) + ")"
    if f.op in _RANGES:
        key, bound = bind(f.key), bind(f.value)
        # CASE, not AND: PostgreSQL may cast before it checks the type.
        return (
            f"(CASE WHEN jsonb_typeof({column} -> {key}) = 'number' THEN "
            f"CAST({column} ->> {key} AS numeric) {_RANGES[f.op]} CAST({bound} AS numeric) "
            "ELSE false END)"
        )
    values = f.value if isinstance(f.value, tuple) else (f.value,)
    tests = [f"{column} @> CAST({bind(json.dumps({f.key: v}))} AS jsonb)" for v in values]
    test = "(" + (" OR ".join(tests) or "false") + ")"
    return f"NOT {test}" if f.op in ("$ne", "$nin") else test


def _sql_equals(values: tuple[MetadataValue, ...], params: list[Any]) -> str:
    # json_each gives JSON true/false as 1/0, so booleans are told apart by their JSON type.
    tests = []
    for json_types, group in (
        ("'text'", [v for v in values if isinstance(v, str)]),
        ("'integer', 'real'", [v for v in values if _is_number(v)]),
    ):
        if group:
            tests.append(f"(type IN ({json_types}) AND value IN ({', '.join('?' * len(group))}))")
            params.extend(group)
    bools = {v for v in values if isinstance(v, bool)}
    tests.extend(f"type = '{name}'" for b, name in ((True, "true"), (False, "false")) if b in bools)
    return "(" + " OR ".join(tests) + ")"


def _same(actual: object, value: MetadataValue) -> bool:
    return _kind(actual) == _kind(value) and actual == value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if _is_number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _at(path: tuple[str | int, ...]) -> str:
    out = "metadata_filters"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out

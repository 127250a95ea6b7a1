"""What a GGUF file's header says: the context it was trained with, its chat template, and what
one token of its KV cache costs.

The header is a list of typed key/value pairs before the tensors
(https://github.com/ggml-org/ggml/blob/master/docs/gguf.md); the few values read here do not
justify loading the `gguf` package (and numpy with it) into the server, so they are read with
`struct`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

# The struct format of each scalar value type; 8 = string, 9 = array.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
KV_TYPE_BYTES = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q4_0": 18 / 32,
    "q4_1": 20 / 32,
    "iq4_nl": 18 / 32,
    "q5_0": 22 / 32,
    "q5_1": 24 / 32,
}
"""Bytes per value of each KV cache type llama.cpp takes (a quantized block of 32 values)."""


def _read(file: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    data = file.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return struct.unpack("<" + fmt, data)[0]


def _skip(file: BinaryIO, kind: int) -> None:
    if kind == _STRING:
        file.seek(_read(file, "Q"), 1)
    elif kind == _ARRAY:
        item, count = _read(file, "I"), _read(file, "Q")
        if item in _SCALARS:
            file.seek(struct.calcsize("<" + _SCALARS[item]) * count, 1)
        else:
            for _ in range(count):
                _skip(file, item)
    elif kind in _SCALARS:
        file.seek(struct.calcsize("<" + _SCALARS[kind]), 1)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")


def _value(file: BinaryIO, kind: int) -> Any:
    """A scalar, a string, or an array of scalars; None (skipped) for anything else."""
    if kind in _SCALARS:
        return _read(file, _SCALARS[kind])
    if kind == _STRING:
        return file.read(_read(file, "Q")).decode("utf-8", "replace")
    if kind == _ARRAY:
        item, count = _read(file, "I"), _read(file, "Q")
        if item in _SCALARS and count <= 65536:
            return [_read(file, _SCALARS[item]) for _ in range(count)]
        file.seek(-12, 1)
    _skip(file, kind)
    return None


def header_values(path: Path, wanted: Callable[[str], bool]) -> dict[str, Any]:
    """The metadata values whose keys `wanted` accepts."""
    found: dict[str, Any] = {}
    with path.open("rb") as file:
        if file.read(4) != b"GGUF":
            raise ValueError("not a GGUF file")
        _version, _tensors, entries = _read(file, "I"), _read(file, "Q"), _read(file, "Q")
        for _ in range(entries):
            key = file.read(_read(file, "Q")).decode("utf-8", "replace")
            kind = _read(file, "I")
            if wanted(key):
                found[key] = _value(file, kind)
            else:
                _skip(file, kind)
    return found


def train_context(path: Path) -> int:
    """The `<arch>.context_length` the model was trained with."""
    values = header_values(path, lambda key: key.endswith(".context_length"))
    value = next((v for v in values.values() if isinstance(v, int)), None)
    if value is None:
        raise ValueError("no context_length in the GGUF header")
    return value


def chat_template(path: Path) -> str | None:
    """The model's Jinja chat template (`tokenizer.chat_template`), if the header has one."""
    value = header_values(path, lambda key: key == "tokenizer.chat_template").get(
        "tokenizer.chat_template"
    )
    return value if isinstance(value, str) else None


def kv_values_per_token(path: Path) -> int | None:
    """The values one token adds to the KV cache (keys and values of every layer), from the
    architecture's layer count, KV heads and head sizes; None when the header does not say
    (an architecture without attention heads, or an unusual layout)."""
    values = header_values(path, lambda key: not key.startswith("tokenizer."))
    arch = values.get("general.architecture")
    if not isinstance(arch, str):
        return None

    def get(name: str) -> Any:
        return values.get(f"{arch}.{name}")

    layers, embedding, heads = (
        get("block_count"),
        get("embedding_length"),
        get("attention.head_count"),
    )
    kv_heads = get("attention.head_count_kv") or heads
    if not isinstance(layers, int) or not isinstance(embedding, int):
        return None
    head = embedding // heads if isinstance(heads, int) and heads else None
    key_size, value_size = (
        get("attention.key_length") or head,
        get("attention.value_length") or head,
    )
    if not isinstance(key_size, int) or not isinstance(value_size, int):
        return None
    per_layer = kv_heads if isinstance(kv_heads, list) else [kv_heads] * layers
    if not all(isinstance(n, int) for n in per_layer):
        return None
    return sum(per_layer) * (key_size + value_size)

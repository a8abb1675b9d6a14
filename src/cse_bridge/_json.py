"""
JSON-safe conversion: anything becomes a JSON value, falling back to ``repr``.

Used wherever application data crosses into an event, so that a value that is not
JSON-able never raises in the application thread
(docs/protocol.md#protocol-schema-conventions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeAlias

__all__ = ["JSONObject", "JSONValue", "to_json_safe"]

JSONValue: TypeAlias = (
    "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
)
"""Any value the stdlib ``json`` module writes as standard JSON."""

JSONObject: TypeAlias = "dict[str, JSONValue]"
"""A JSON object with string keys."""

_MAX_DEPTH = 32


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ must not escape
        return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"


def to_json_safe(
    value: object, _depth: int = 0, _seen: frozenset[int] = frozenset()
) -> JSONValue:
    """
    Return *value* as plain JSON data; whatever is not JSON-able becomes its ``repr``.

    Never raises. Non-finite floats, bytes, sets, custom objects and recursive
    containers become strings; mapping keys become strings; tuples become lists.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(value)
    if _depth >= _MAX_DEPTH or id(value) in _seen:
        return _safe_repr(value)
    if isinstance(value, Mapping):
        seen = _seen | {id(value)}
        return {
            (k if isinstance(k, str) else _safe_repr(k)): to_json_safe(
                v, _depth + 1, seen
            )
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        seen = _seen | {id(value)}
        return [to_json_safe(v, _depth + 1, seen) for v in value]
    return _safe_repr(value)

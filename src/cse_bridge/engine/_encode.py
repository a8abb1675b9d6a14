"""
EventItem -> EncodedEvent: strict JSON, ``repr`` for the rest, and the size rule.

Runs on the worker thread, one item at a time, so a bad value costs that item at most.

The size rule (the gateway refuses a body over ``MAX_EVENT_BYTES``): an event that is
too large is truncated, never dropped:

1. The longest string anywhere in ``data`` (the message, a stack trace, an attribute)
   is cut and ends with ``TRUNCATION_MARKER`` plus the number of characters removed;
   repeated on the next longest until the body fits.
2. If strings alone cannot make it fit (many small values), the largest values under
   ``data.attributes``, then the largest other top-level fields, are replaced by a
   marker string, one at a time.
3. ``data.truncated`` is set to ``true`` whenever anything was cut.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from json import encoder as _json_encoder
from typing import Any, Final

from .._json import JSONValue, to_json_safe
from ._types import EncodedEvent, EventItem

__all__ = [
    "MAX_EVENT_BYTES",
    "PACK_OVERHEAD",
    "TRUNCATION_MARKER",
    "encode_body",
    "encode_item",
    "pack_bodies",
    "pack_events",
]

MAX_EVENT_BYTES: Final = 1024 * 1024 - 8 * 1024
"""Largest body we send, under the gateway's 1 MiB body and 1 MiB - 4 KiB data caps."""
TRUNCATION_MARKER: Final = "...[truncated]"
"""Ends every string the size rule cut."""
PACKED_TYPE: Final = "log.batch"
"""The type of an event carrying several ``log.*`` records in ``data.records``."""

_MIN_KEEP: Final = 256
_MAX_ROUNDS: Final = 64
_PACK_HEAD: Final = b'{"type":"log.batch","data":{"records":['
_PACK_TAIL: Final = b"]}}"


def _default(value: object) -> object:
    # json's hook for what it cannot write: mappings become dicts, the rest a repr.
    if isinstance(value, Mapping):
        return dict(value)
    return to_json_safe(value)


# Built once: json.dumps with any option builds a new encoder per call, which cost
# as much as the encoding of a small event.
_FAST_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default
)
_STRICT_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
)


_C_MAKE_ENCODER: Any = getattr(_json_encoder, "c_make_encoder", None)


def _part_encoder() -> Callable[[object], str]:
    # For the parts a snapshot's build_json hands over: the C encoder with the
    # options above, made once. JSONEncoder.encode makes one per call (and a markers
    # dict), which cost as much as the part. Without markers a circular value ends
    # in RecursionError rather than ValueError: encode_body falls back the same way.
    if _C_MAKE_ENCODER is None:  # no C accelerator (not CPython)
        return _FAST_ENCODER.encode
    iterencode = _C_MAKE_ENCODER(
        None,
        _default,
        _json_encoder.encode_basestring,
        None,
        ":",
        ",",
        False,  # sort_keys (the C signature is positional)
        False,  # skipkeys
        False,  # allow_nan
    )

    def encode(value: object) -> str:
        return "".join(iterencode(value, 0))

    return encode


_ENCODE_PART: Final = _part_encoder()


def _dumps(value: object, *, fast: bool = True) -> bytes:
    text = (_FAST_ENCODER if fast else _STRICT_ENCODER).encode(value)
    # A lone surrogate cannot be UTF-8; inside a JSON string "\udXXX" is a valid escape.
    return text.encode("utf-8", "backslashreplace")


def _plain(data: Mapping[str, object]) -> object:
    # A lazily built mapping (LogRecordData) hands over its dict in one call rather
    # than through json's default hook and a key-by-key copy.
    if type(data) is dict:
        return data
    build = getattr(data, "build", None)
    if callable(build):
        built = build()
        if type(built) is dict:
            return built
    return data


def _data_json(data: Mapping[str, object]) -> bytes:
    # A snapshot that can write its own JSON (LogRecordData.build_json) skips the
    # intermediate dicts; it raises as the encoder would, for the same fallback.
    if type(data) is not dict:
        build_json = getattr(data, "build_json", None)
        if callable(build_json):
            text = build_json(_ENCODE_PART)
            if type(text) is str:
                return text.encode("utf-8", "backslashreplace")
    return _dumps(_plain(data))


def encode_item(item: EventItem, limit: int = MAX_EVENT_BYTES) -> EncodedEvent:
    """
    Return the ``POST /events`` body of *item*: ``{"type": ..., "data": ...}``.

    Never raises for any ``data``: circular, non-string keys, NaN, bytes, sets and
    objects fall back to ``cse_bridge._json.to_json_safe`` (``repr``). A body over
    *limit* bytes is truncated by the module's size rule. CPU only; safe anywhere.
    """
    return EncodedEvent(item.type, encode_body(item, limit))


def encode_body(item: EventItem, limit: int = MAX_EVENT_BYTES) -> bytes:
    """
    Return *item*'s body as ``encode_item`` does, without the ``EncodedEvent``.

    The packer's per-record step: each record is encoded once to its final bytes
    (one C encoder call for its data), and a ``log.batch`` body only joins them.
    """
    try:
        data_json = _data_json(item.data)
    except (TypeError, ValueError, RecursionError):
        data_json = _dumps(to_json_safe(item.data), fast=False)
    head = _HEADS.get(item.type) or _head(item.type)
    body = head + data_json + b"}"
    if len(body) > limit:
        safe = to_json_safe(item.data)
        tree: dict[str, JSONValue] = (
            dict(safe) if isinstance(safe, dict) else {"value": safe}
        )
        body = head + _truncate(tree, limit - len(head) - 1) + b"}"
    return body


_HEADS: dict[str, bytes] = {}


def _head(event_type: str) -> bytes:
    head = b'{"type":' + _dumps(event_type, fast=False) + b',"data":'
    if len(_HEADS) < 256:  # noqa: PLR2004 - a few log.* types; never unbounded
        _HEADS[event_type] = head
    return head


def _truncate(tree: dict[str, JSONValue], limit: int) -> bytes:
    """Cut *tree* in place by the size rule until its JSON fits in *limit* bytes."""
    tree["truncated"] = True
    encoded = _dumps(tree, fast=False)
    for _ in range(_MAX_ROUNDS):
        excess = len(encoded) - limit
        if excess <= 0:
            return encoded
        if not _cut_longest_string(tree, excess) and not _replace_largest(tree):
            break
        encoded = _dumps(tree, fast=False)
    if len(encoded) <= limit:
        return encoded
    # Nothing left to cut (e.g. a gigantic key): keep a readable prefix of it.
    text = encoded[: max(0, limit // 2)].decode("utf-8", "ignore")
    return _dumps({"message": text + TRUNCATION_MARKER, "truncated": True})


def _strings(
    node: JSONValue,
) -> Iterable[tuple[dict[str, JSONValue] | list[JSONValue], str | int, str]]:
    stack: list[JSONValue] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key, value in current.items():
                if isinstance(value, str):
                    yield current, key, value
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(current, list):
            for index, value in enumerate(current):
                if isinstance(value, str):
                    yield current, index, value
                elif isinstance(value, (dict, list)):
                    stack.append(value)


def _cut_longest_string(tree: dict[str, JSONValue], excess: int) -> bool:
    best = max(_strings(tree), key=lambda found: len(found[2]), default=None)
    if best is None or len(best[2]) <= _MIN_KEEP:
        return False
    parent, key, text = best
    # Cut as many characters as the excess needs at this string's own bytes per
    # character (escapes, UTF-8); the loop re-checks and cuts again if needed.
    per_char = len(_dumps(text, fast=False)) / len(text)
    marker = f"{TRUNCATION_MARKER} {len(text)} chars"
    keep = max(_MIN_KEEP, len(text) - int(excess / per_char) - len(marker) - 64)
    cut = text[:keep] + marker
    if isinstance(parent, dict):
        parent[str(key)] = cut
    else:
        parent[int(key)] = cut
    return True


def _replace_largest(tree: dict[str, JSONValue]) -> bool:
    attributes = tree.get("attributes")
    for container in (attributes, tree):
        if not isinstance(container, dict):
            continue
        sizes = {
            key: len(_dumps(value, fast=False))
            for key, value in container.items()
            if isinstance(value, (dict, list))
            or (isinstance(value, str) and not value.startswith("[truncated"))
        }
        sizes = {key: size for key, size in sizes.items() if size > _MIN_KEEP}
        if sizes:
            key = max(sizes, key=lambda name: sizes[name])
            container[key] = f"[truncated {sizes[key]} bytes]"
            return True
    return False


def pack_events(
    events: list[EncodedEvent], limit: int = MAX_EVENT_BYTES
) -> EncodedEvent:
    """
    Return one ``log.batch`` event whose ``data.records`` are the *events* (in order).

    The caller keeps the packed body within *limit*: each body is the
    ``{"type","data"}`` record itself, so packing only joins bytes. CPU only.
    """
    return pack_bodies([event.body for event in events], sum(e.items for e in events))


def pack_bodies(bodies: list[bytes], items: int | None = None) -> EncodedEvent:
    """Return the ``log.batch`` event of record *bodies*: one join, no re-encoding."""
    body = _PACK_HEAD + b",".join(bodies) + _PACK_TAIL
    return EncodedEvent(
        PACKED_TYPE, body, items=len(bodies) if items is None else items
    )


PACK_OVERHEAD: Final = len(_PACK_HEAD) + len(_PACK_TAIL)
"""Bytes a ``log.batch`` body adds around its records (plus a comma between two)."""

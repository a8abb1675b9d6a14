"""
EventItem -> EncodedEvent: strict JSON, ``repr`` for the rest, the size rule, packing,
and ``BatchStream``, the events of one send encoded only as the exporter takes them.

Runs on the worker thread, one item at a time, so a bad value costs that item at most.

``BatchStream``: the events sink pulls the next body when a connection frees up, so
the worker encodes (and packs) body N+1 while bodies up to N are in flight: the
gateway works on the other core meanwhile. Taking items only as they are needed is
also the engine's natural batching: whatever arrived while earlier requests were in
flight goes into the next event (a bigger ``log.batch`` when packing).

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
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from json import encoder as _json_encoder
from typing import Any, Final, Protocol

from .._json import JSONValue, to_json_safe
from ._types import EncodedEvent, EventItem

__all__ = [
    "MAX_EVENT_BYTES",
    "PACKED_CALL_BYTES",
    "PACKED_SPANS_TYPE",
    "PACK_OVERHEAD",
    "TRUNCATION_MARKER",
    "BatchSource",
    "BatchStream",
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
PACKED_SPANS_TYPE: Final = "trace.batch"
"""The type of an event carrying several ``trace.span`` records (``pack_spans``)."""
SPAN_TYPE: Final = "trace.span"

_MIN_KEEP: Final = 256
_MAX_ROUNDS: Final = 64
_PACK_HEADS: Final = {
    packed: b'{"type":"%s","data":{"records":[' % packed.encode()
    for packed in (PACKED_TYPE, PACKED_SPANS_TYPE)
}
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


def pack_bodies(
    bodies: list[bytes], items: int | None = None, packed_type: str = PACKED_TYPE
) -> EncodedEvent:
    """
    Return the *packed_type* event (``log.batch``, ``trace.batch``) of record
    *bodies*: one join, no re-encoding.
    """
    body = _PACK_HEADS[packed_type] + b",".join(bodies) + _PACK_TAIL
    return EncodedEvent(
        packed_type, body, items=len(bodies) if items is None else items
    )


PACK_OVERHEAD: Final = max(map(len, _PACK_HEADS.values())) + len(_PACK_TAIL)
"""Bytes a packed body adds around its records (plus a comma between two)."""


def _pack_kind(event_type: str) -> str | None:
    """The packed type an item of *event_type* may travel in, or None (alone)."""
    if event_type == SPAN_TYPE:
        return PACKED_SPANS_TYPE
    if event_type.startswith("log.") and event_type != PACKED_TYPE:
        return PACKED_TYPE
    return None


# --- one send's events: taken off the queue and encoded as the exporter is ready ---


class BatchSource(Protocol):
    """What ``BatchStream`` needs of the engine: its bounds, ``take``, a drop hook."""

    pack: int
    pack_spans: int
    max_batch_size: int
    max_batch_bytes: int
    max_queue_bytes: int
    removed: int

    @property
    def accepted(self) -> int:
        """Items submitted so far (it grows while a producer is busy)."""

    def take(
        self, most: int | None = None, limit: int | None = None
    ) -> tuple[list[EventItem], int]:
        """Take items off the queue's front; see ``BatchEngine.take``."""

    def encode_failed(self, exc: Exception) -> None:
        """Count one taken item that could not be encoded as dropped."""


PACKED_CALL_BYTES: Final = 16 * MAX_EVENT_BYTES
"""Encoded bytes one packed send carries at most (about 16 full ``log.batch``)."""
_CHUNK: Final = 256
"""Items taken off the queue at once: one lock round trip per chunk, not per item."""
_SLICE_SECONDS: Final = 0.0001
"""
Encoding time between two offers of the GIL (about 32 log records or 8 spans here).

Packing encodes hundreds of records with no I/O in between: the worker would keep
the GIL for whole switch intervals (5 ms), and an application thread that logs
meanwhile would wait for it as long, at every call. ``time.sleep(0)`` after each
slice hands the GIL to a thread waiting for it, which then keeps it for its own
switch interval: the application runs at nearly its own speed while the worker
catches up between its calls. A slice is a time, not a count: a span takes four
times a log record's encoding, and 32 spans a slice cost a tracing thread twice the
wait of 8 (``bench/otel.py``). (``os.sched_yield()`` and a zero-timeout ``select``
release the GIL too, but the worker takes it back before a waiting thread wakes:
that thread then starves for hundreds of milliseconds.) The offer is made after a
slice if something was submitted since the last one, else at most every
``_QUIET_OFFER`` seconds: on CPython 3.11 and later ``sleep(0)`` sleeps for the
kernel's timer slack (about 80 us here), a fifth of the worker's time if it offered
after every slice while nobody logs (a flush, the end of a burst). The interpreter's
switch interval is left alone: it is the application's.
"""
_CLOCK_EVERY: Final = 4
"""Items encoded between two looks at the clock for ``_SLICE_SECONDS``."""
_QUIET_OFFER: Final = 0.001
"""
Seconds between two offers of the GIL while nothing is submitted.

A thread that logged, then blocked (I/O, a lock) and woke up wanting the GIL has not
submitted anything yet: without these offers it would wait for a whole switch
interval (5 ms) every time. With them it waits about a millisecond at most, for a
twelfth of the worker's time while it drains a backlog alone.
"""


class BatchStream:
    """
    The events of one send: *first* (a ``bridge.dropped`` report), then the queue's.

    Bounded per send by ``max_batch_size`` events and ``max_batch_bytes`` of size
    hints (``PACKED_CALL_BYTES`` of bodies when packing). Iterate it once; what was
    taken off the queue but not yet handed out is ``leftover()``.
    """

    def __init__(self, engine: BatchSource, first: list[EncodedEvent]) -> None:
        self.engine = engine
        self.first = first
        self.packing = engine.pack > 1 or engine.pack_spans > 1
        self.end = engine.removed
        """The sequence number of the last item taken off the queue."""
        self._buffer: deque[EventItem] = deque()
        self._items_left = engine.max_batch_size
        self._bytes_left = PACKED_CALL_BYTES if self.packing else engine.max_batch_bytes
        self._closed = False
        self._slice = _CLOCK_EVERY
        self._seen = -1
        """``accepted`` at the last offer of the GIL (see _SLICE_SECONDS): none yet."""
        self._offered = time.perf_counter()
        """When the last offer of the GIL ended, moved on by the time spent handed
        out (``time.perf_counter()``): now minus it is the encoding since."""

    def __iter__(self) -> Iterator[EncodedEvent]:
        yield from self.first
        perf_counter = time.perf_counter
        for event in self._packed() if self.packing else self._single():
            handed = perf_counter()
            yield event
            # The time the sender spent on it is not encoding: the slice resumes.
            self._offered += perf_counter() - handed

    def leftover(self) -> list[EncodedEvent]:
        """Stop taking; return the items already taken, encoded, in order."""
        self._closed = True
        return list(self._packed() if self.packing else self._single())

    def _more(self) -> bool:
        """True if an item is buffered, taking the next chunk if the budget allows."""
        if self._buffer:
            return True
        if self._closed or self._items_left <= 0 or self._bytes_left <= 0:
            return False
        most = min(_CHUNK, self._items_left)
        limit = self._bytes_left if not self.packing else self.engine.max_queue_bytes
        items, end = self.engine.take(most, limit)
        if not items:
            return False
        self.end = end
        if not self.packing:
            self._items_left -= len(items)
            self._bytes_left -= sum(item.size_hint for item in items)
        self._buffer.extend(items)
        return True

    def _body(self, item: EventItem) -> bytes | None:
        self._slice -= 1
        if not self._slice:
            self._slice = _CLOCK_EVERY
            encoding = time.perf_counter() - self._offered  # see __iter__
            if encoding > _SLICE_SECONDS:
                accepted = self.engine.accepted
                # A producer is busy, or someone else may be waiting: offer the GIL.
                if accepted != self._seen or encoding > _QUIET_OFFER:
                    self._seen = accepted
                    time.sleep(0)
                    self._offered = time.perf_counter()
        try:
            return encode_body(item)
        except Exception as exc:  # one bad item never sinks the batch
            self.engine.encode_failed(exc)
            return None

    def _single(self) -> Iterator[EncodedEvent]:
        while self._more():
            item = self._buffer.popleft()
            body = self._body(item)
            if body is not None:
                yield EncodedEvent(item.type, body)

    def _packed(self) -> Iterator[EncodedEvent]:
        # Invariant: `parts` is empty at every yield, so leftover() can run a fresh
        # generator over the buffer while this one is suspended. One pack is open
        # at a time: log records and spans each pack with their own kind.
        most = {
            PACKED_TYPE: self.engine.pack,
            PACKED_SPANS_TYPE: self.engine.pack_spans,
        }
        room = MAX_EVENT_BYTES - PACK_OVERHEAD
        parts: list[bytes] = []
        size, first_type, kind = 0, "", PACKED_TYPE
        while self._more():
            item = self._buffer.popleft()
            event_type = item.type
            body = self._body(item)
            if body is None:
                continue
            joins = _pack_kind(event_type)
            alone = joins is None or most[joins] <= 1
            if parts and (
                alone
                or joins != kind
                or len(parts) >= most[kind]
                or size + len(body) >= room
            ):
                yield self._close(parts, first_type, kind)
                parts, size = [], 0
            if alone or len(body) >= room:  # not a record, or too big to share
                yield self._count(EncodedEvent(event_type, body))
                continue
            if not parts:
                first_type, kind = event_type, joins or PACKED_TYPE
            parts.append(body)
            size += len(body) + 1
        if parts:
            yield self._close(parts, first_type, kind)

    def _close(self, parts: list[bytes], first_type: str, kind: str) -> EncodedEvent:
        # A lone record goes out as itself, as without packing.
        if len(parts) == 1:
            return self._count(EncodedEvent(first_type, parts[0]))
        return self._count(pack_bodies(parts, packed_type=kind))

    def _count(self, event: EncodedEvent) -> EncodedEvent:
        self._items_left -= 1
        self._bytes_left -= len(event.body)
        return event

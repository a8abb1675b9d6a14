"""
Request validation for the gateway's HTTP API: one clear message per bad input.

Each parser returns the parsed value, or raises ``RequestError`` with the message the
client sees; nothing here knows about aiohttp.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote
from typing import Final, NoReturn

from ._tokens import MAX_SANDBOX_ID_LENGTH, MAX_WORKSPACE_ID

try:
    from _json import make_encoder as _make_encoder
except ImportError:  # not CPython: the json module's own, slower path
    _make_encoder = None  # type: ignore[assignment,misc]  # optional C accelerator

__all__ = [
    "MAX_LIMIT",
    "EventQuery",
    "RequestError",
    "is_sandbox_id",
    "parse_event_body",
    "parse_event_query",
    "push_overhead",
]

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
_MAX_INT64: Final = 2**63 - 1
_PUSH_FIXED: Final = (
    len(b"*3\r\n$7\r\nmessage\r\n$\r\n\r\n$\r\n\r\n")
    + len('{"id":"","sandboxId":,"workspaceId":,"type":,"data":,"timestamp":}')
    + len("evt_")
    + 32  # the event id
    + len(str(MAX_WORKSPACE_ID))
    + len(str(_MAX_INT64))  # the timestamp
    + len(str(8 * 1024 * 1024))  # the payload's length, written in digits
)
"""Bytes of a push besides ``data``, the sandbox id and the type, at their largest."""
_COMPACT: Final = (",", ":")
_MISSING: Final = object()


class RequestError(Exception):
    """
    A bad request: the gateway answers *status* with *message* in its error envelope.

    Private to the gateway: it never reaches a client as an exception.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


# Built once, and called below their Python wrappers: json.loads and json.dumps with
# options build a new coder on every call, which costs as much as the work itself.
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)
# The scanner raw_decode calls, without raw_decode's own Python frame.
_Scan = Callable[[str, int], tuple[object, int]]
_SCAN: Final[_Scan] = _DECODER.scan_once  # type: ignore[attr-defined]  # not in typeshed
_NON_WHITESPACE: Final = re.compile(r"[^ \t\n\r]")
_ENCODER: Final = json.JSONEncoder(
    separators=_COMPACT, ensure_ascii=False, check_circular=False, allow_nan=False
)
_ITERENCODE: Final = (
    None
    if _make_encoder is None
    else _make_encoder(
        None,
        _ENCODER.default,
        json.encoder.encode_basestring,
        None,
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )
)
# Lone surrogates can sit only inside JSON strings, and UTF-8 cannot carry them:
# escaping just those keeps every other character as compact as it came.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _decode(body: bytes) -> object:
    """Decode one JSON value from UTF-8 *body*; NaN and Infinity are refused."""
    text = body.decode()
    start = 0 if text[:1] == "{" else _skip_whitespace(text, 0)
    try:
        value, end = _SCAN(text, start)
    except StopIteration as exc:
        raise json.JSONDecodeError("Expecting value", text, exc.value) from None
    if end != len(text) and _skip_whitespace(text, end) != len(text):
        raise ValueError(f"extra data at character {end}")
    return value


def _skip_whitespace(text: str, pos: int) -> int:
    match = _NON_WHITESPACE.search(text, pos)
    return len(text) if match is None else match.start()


def _is_utf8(text: str) -> bool:
    """True if *text* has no lone surrogate; callers try ``isascii()`` first."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def parse_event_body(
    body: bytes, *, max_type_length: int, max_data_bytes: int
) -> tuple[str, str]:
    """
    Return ``(type, data_json)`` of a ``POST /events`` body.

    *data_json* is ``data`` re-encoded as compact JSON object text, at most
    *max_data_bytes* of UTF-8: re-encoding can grow a body (``1e5`` becomes
    ``100000.0``), and every stored event must fit the 1 MiB that subscribers accept.

    Raises:
        RequestError: Not UTF-8 JSON, not an object, a bad ``type`` or ``data``
            (400), or ``data`` too large once encoded (413).
    """
    try:
        obj = _decode(body)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and UnicodeDecodeError.
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else exc
        raise RequestError(f"Request body is not valid JSON: {reason}") from None
    if not isinstance(obj, dict):
        raise RequestError("Request body must be a JSON object")
    event_type = obj.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise RequestError("'type' is required and must be a non-empty string")
    if len(event_type) > max_type_length:
        raise RequestError(f"'type' is longer than {max_type_length} characters")
    # isascii() first, inline: most text is ASCII, and a call costs more than it.
    if not event_type.isascii() and not _is_utf8(event_type):
        raise RequestError("'type' contains an unpaired surrogate")
    data = obj.get("data", _MISSING)
    if data is _MISSING:
        return event_type, "{}"
    if not isinstance(data, dict):
        raise RequestError("'data' must be a JSON object")
    try:
        # Compact JSON that keeps non-ASCII text as it is.
        if _ITERENCODE is None:
            data_json = _ENCODER.encode(data)
        else:
            data_json = "".join(_ITERENCODE(data, 0))
    except RecursionError:
        raise RequestError("'data' is nested too deeply") from None
    except ValueError:  # 1e999 decodes to inf, which JSON cannot carry
        raise RequestError("'data' contains a number out of range") from None
    if not data_json.isascii() and not _is_utf8(data_json):
        data_json = _SURROGATE.sub(_escape_surrogate, data_json)
    # Characters are at most 4 UTF-8 bytes: count bytes only near the limit.
    if len(data_json) * 4 > max_data_bytes and (
        len(data_json.encode()) > max_data_bytes
    ):
        raise RequestError(
            f"'data' is larger than {max_data_bytes} bytes once stored", status=413
        )
    return event_type, data_json


@dataclass(frozen=True, slots=True)
class EventQuery:
    """The parsed query string of ``GET /events/{sandboxId}``."""

    event_type: str | None
    since: int | None
    limit: int


def _non_negative(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    # Later than any timestamp a store can hold: the same as the largest one.
    return int(digits) if len(digits) <= len(str(_MAX_INT64)) else _MAX_INT64


def parse_event_query(
    event_type: str | None, since: str | None, limit: str | None
) -> EventQuery:
    """
    Parse the ``type``, ``since`` and ``limit`` query parameters (None if absent).

    Raises:
        RequestError: ``limit`` is not an integer from 1 to 1000, or ``since`` is
            not a non-negative integer.
    """
    count = DEFAULT_LIMIT
    if limit is not None:
        parsed = _non_negative(limit)
        if parsed is None or not 1 <= parsed <= MAX_LIMIT:
            raise RequestError(f"'limit' must be an integer from 1 to {MAX_LIMIT}")
        count = parsed
    after: int | None = None
    if since is not None:
        after = _non_negative(since)
        if after is None:
            raise RequestError(
                "'since' must be a non-negative integer (milliseconds since the epoch)"
            )
        after = min(after, _MAX_INT64)
    return EventQuery(event_type, after, count)


def push_overhead(sandbox_id: str, event_type: str) -> int:
    """
    Return the most bytes a pub/sub push of an event adds around its ``data``.

    The channel carries the sandbox id in UTF-8; the event JSON carries it and the
    type escaped to ASCII (a character outside the BMP takes 12 bytes there).
    """
    channel = len(sandbox_id.encode("utf-8", "backslashreplace"))
    return (
        _PUSH_FIXED
        + len(str(channel))
        + channel
        + len(_quote(sandbox_id))
        + len(_quote(event_type))
    )


def is_sandbox_id(text: str) -> bool:
    """True if *text* could name a sandbox; no sandbox has any other id."""
    return 0 < len(text) <= MAX_SANDBOX_ID_LENGTH and (text.isascii() or _is_utf8(text))

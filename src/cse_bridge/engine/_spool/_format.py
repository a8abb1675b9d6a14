"""
The bytes of a segment file: a header, then length- and checksum-framed events.

A segment (``*.seg``) is::

    header   MAGIC (8) | acked offset (8, big-endian) | meta length (4) | meta JSON
    frame    SYNC (4) | payload length (4) | CRC32 of payload (4) | payload
    payload  items (4) | type length (2) | type (UTF-8) | body (the POST body)

``acked`` is the offset of the first frame not yet acknowledged by the gateway: the
replaying process overwrites those 8 bytes in place after each acknowledged batch,
so a later replay starts there. ``SYNC`` holds bytes UTF-8 never uses (``0xFF
0xFE``), so after a damaged frame the reader finds the next one by searching for it;
a false match inside damaged bytes fails its checksum and is skipped too.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any, Final

__all__ = [
    "ACKED_AT",
    "FRAME_HEAD",
    "HEADER_HEAD",
    "MAGIC",
    "MAX_PAYLOAD",
    "SEGMENT_SUFFIX",
    "SYNC",
    "decode_payload",
    "encode_frame",
    "encode_header",
    "parse_header",
]

MAGIC: Final = b"CSESPL01"
"""The first bytes of every segment (format version 1)."""
SYNC: Final = b"\xff\xfeSR"
"""The first bytes of every frame."""
HEADER_HEAD: Final = struct.Struct(">8sQI")
"""magic, acked offset, meta length."""
ACKED_AT: Final = 8
"""Where the acked offset lives in the file."""
FRAME_HEAD: Final = struct.Struct(">4sII")
"""sync, payload length, CRC32 of the payload."""
_PAYLOAD_HEAD: Final = struct.Struct(">IH")
MAX_PAYLOAD: Final = 2 * 1024 * 1024
"""A longer length field is damage: no event body comes near it (1 MiB cap)."""
SEGMENT_SUFFIX: Final = ".seg"


def encode_frame(event_type: str, body: bytes, items: int) -> bytes:
    """Return one event's frame: sync, length, CRC32, then the payload."""
    kind = event_type.encode("utf-8")
    payload = _PAYLOAD_HEAD.pack(items, len(kind)) + kind + body
    return FRAME_HEAD.pack(SYNC, len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> tuple[str, bytes, int]:
    """
    Return ``(type, body, items)`` of a payload whose checksum was verified.

    Raises:
        ValueError: Not a payload we wrote (zeros pass a CRC32 too: the CRC32 of no
            bytes is 0).
    """
    start = _PAYLOAD_HEAD.size
    if len(payload) < start:
        raise ValueError("a payload shorter than its head")
    items, size = _PAYLOAD_HEAD.unpack_from(payload)
    if not size or start + size >= len(payload):
        raise ValueError("a payload without a type and a body")
    kind = payload[start : start + size].decode("utf-8")
    return kind, payload[start + size :], items


def encode_header(meta: dict[str, Any], acked: int = 0) -> bytes:
    """Return a segment's header; *acked* 0 means "from the first frame"."""
    raw = json.dumps(meta, separators=(",", ":")).encode()
    return HEADER_HEAD.pack(MAGIC, acked, len(raw)) + raw


def parse_header(data: bytes) -> tuple[int, dict[str, Any], int] | None:
    """
    Return ``(acked, meta, first frame offset)`` of a segment's bytes, or None if
    the header is missing or damaged (a segment cut short while it was created).
    """
    if len(data) < HEADER_HEAD.size:
        return None
    magic, acked, size = HEADER_HEAD.unpack_from(data)
    end = HEADER_HEAD.size + size
    if magic != MAGIC or end > len(data):
        return None
    try:
        meta = json.loads(data[HEADER_HEAD.size : end])
    except ValueError:
        return None
    if not isinstance(meta, dict):
        return None
    return max(acked, end), meta, end

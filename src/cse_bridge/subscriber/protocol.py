"""
The pub/sub client's protocol core, sans I/O: parse, decide, sequence; never read.

What ``PubSubClient`` (threads) and ``cse_bridge.aio.AsyncPubSubClient`` (asyncio)
share, for anyone driving the pub/sub protocol (docs/protocol.md#protocol-pubsub)
from another I/O framework:

- **framing**: ``FrameReader`` turns the bytes read into RESP frames (hiredis);
  ``subscribe_command``, ``PING`` and ``UNSUBSCRIBE`` are the bytes to write;
  ``subscribe_answer`` judges the first reply; ``sort_frames`` splits a read's frames
  into events, pongs and an ending ``-ERR``.
- **reconnects**: ``resolve_settings`` checks the options (argument > env > default);
  ``backoff_delay`` spaces the attempts.
- **gap-free resumes**: ``backfill_start`` says whether a (re)connect needs a
  backfill and from where; the ``Sequencer`` holds live pushes while the backfill
  pages (``BACKFILL_PAGE`` events a request, the next page from
  ``cse_bridge.client.protocol.next_cursor``, failures retried after
  ``backfill_retry_delay``), then merges them in order and drops every event
  already delivered.

Nothing here opens a socket, starts a thread or awaits; none of the stateful objects
(``FrameReader``, ``Sequencer``) is thread-safe: one per connection, or per client,
used from one thread or one event loop. Needs hiredis (the ``redis`` or ``aio``
extra).
"""

from __future__ import annotations

from ._backfill import BACKFILL_PAGE, Sequencer
from ._connect import Settings, backoff_delay
from ._decode import decode_payload, decode_push
from ._options import resolve_settings
from ._resp import INCOMPLETE, MAX_UNPARSED_BYTES, ErrorReply, Frame, FrameReader
from ._rules import (
    BACKFILL_RETRY_CAP,
    PING,
    SHUTTING_DOWN,
    UNSUBSCRIBE,
    FrameBatch,
    backfill_retry_delay,
    backfill_start,
    first_reconnect_delay,
    sort_frames,
    subscribe_answer,
    subscribe_command,
)

__all__ = [
    "BACKFILL_PAGE",
    "BACKFILL_RETRY_CAP",
    "INCOMPLETE",
    "MAX_UNPARSED_BYTES",
    "PING",
    "SHUTTING_DOWN",
    "UNSUBSCRIBE",
    "ErrorReply",
    "Frame",
    "FrameBatch",
    "FrameReader",
    "Sequencer",
    "Settings",
    "backfill_retry_delay",
    "backfill_start",
    "backoff_delay",
    "decode_payload",
    "decode_push",
    "first_reconnect_delay",
    "resolve_settings",
    "sort_frames",
    "subscribe_answer",
    "subscribe_command",
]

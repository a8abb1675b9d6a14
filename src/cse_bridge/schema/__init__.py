"""
Pure event schema codecs: ``encode_*`` next to ``decode_*``, no I/O, no threads.

See docs/protocol.md#protocol-schema.

``logs`` maps ``logging.LogRecord`` and structlog event dicts to the ``data`` of
``log.<level>`` events and back. Nothing here imports structlog or OpenTelemetry.
"""

from __future__ import annotations

from .logs import (
    DecodedLog,
    current_trace_ids,
    decode_log_data,
    decode_log_record,
    encode_exception,
    encode_log_record,
    encode_structlog_event,
    log_event_type,
)

__all__ = [
    "DecodedLog",
    "current_trace_ids",
    "decode_log_data",
    "decode_log_record",
    "encode_exception",
    "encode_log_record",
    "encode_structlog_event",
    "log_event_type",
]

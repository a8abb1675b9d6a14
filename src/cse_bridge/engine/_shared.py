"""
``get_shared_engine``: one engine per (gateway URL, access token) in the process.

EventsHandler, the structlog processor and the OpenTelemetry exporters all call it, so
they share one queue, one worker, one set of connections and one ``flush()``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .. import config
from ._engine import BatchEngine
from ._exporter import EventsSink
from ._options import EngineOptions
from ._transport import Transport

__all__ = ["get_shared_engine"]

# Guards the registry: two producers configured at once must get the same engine.
_lock = threading.Lock()
_engines: dict[tuple[str, str | None], BatchEngine] = {}
_pid = os.getpid()


def get_shared_engine(
    *,
    gateway_url: str | None = None,
    access_token: str | None = None,
    options: EngineOptions | None = None,
    transport: Transport | None = None,
    **engine_options: Any,
) -> BatchEngine:
    """
    Return the process's engine for these credentials, creating it on first use.

    Credentials resolve as everywhere (argument > ``COMPUTESDK_*`` env > default).
    The engine's knobs are *options*, or the same as keywords (*engine_options*,
    resolved by ``EngineOptions.resolve``); with *transport* for the
    ``EventsSink``, they apply only when the engine is created (the first caller
    configures it). A shut-down engine is replaced by a new one. Safe from any
    thread; cheap after the first call; starts no thread.

    Raises:
        TypeError: An unknown keyword, or both *options* and keywords.
        ValueError: An option out of range.
    """
    global _pid  # noqa: PLW0603 - the registry is per process
    if options is not None and engine_options:
        raise TypeError("pass options or keywords, not both")
    url = config.resolve_gateway_url(gateway_url)
    token = config.resolve_access_token(access_token)
    key = (url, token)
    with _lock:
        if _pid != os.getpid():  # a fork child keeps the engines (they reset
            _pid = os.getpid()  # themselves), the lock is new by construction
        engine = _engines.get(key)
        if engine is None or engine.is_shutdown:
            resolved = options or EngineOptions.resolve(**engine_options)
            sink = EventsSink(
                url,
                token,
                connections=resolved.connections,
                transport=transport,
                ca_file=resolved.ca_file,
            )
            engine = BatchEngine(sink, resolved)
            _engines[key] = engine
        return engine

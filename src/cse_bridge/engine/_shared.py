"""
``get_shared_engine``: one engine per (gateway URL, access token) in the process.

EventsHandler, the structlog processor and the OpenTelemetry exporters all call it, so
they share one queue, one worker, one set of connections and one ``flush()``.
"""

from __future__ import annotations

import os
import threading

from .. import config
from ._engine import BatchEngine
from ._sinks import EventsSink

__all__ = ["get_shared_engine"]

_SINK_OPTIONS = ("connections", "transport", "ca_file")
# Guards the registry: two producers configured at once must get the same engine.
_lock = threading.Lock()
_engines: dict[tuple[str, str | None], BatchEngine] = {}
_pid = os.getpid()


def get_shared_engine(
    *,
    gateway_url: str | None = None,
    access_token: str | None = None,
    **engine_options: object,
) -> BatchEngine:
    """
    Return the process's engine for these credentials, creating it on first use.

    Credentials resolve as everywhere (argument > ``COMPUTESDK_*`` env > default).
    *engine_options* are ``BatchEngine`` keywords, plus ``connections``,
    ``transport`` and ``ca_file`` for the ``EventsSink``; they apply only when the
    engine is created (the first caller configures it). A shut-down engine is
    replaced by a new one. Safe from any thread; cheap after the first call; starts
    no thread.

    Raises:
        TypeError: An unknown option (on creation).
        ValueError: An option out of range (on creation).
    """
    global _pid  # noqa: PLW0603 - the registry is per process
    url = config.resolve_gateway_url(gateway_url)
    token = config.resolve_access_token(access_token)
    key = (url, token)
    with _lock:
        if _pid != os.getpid():  # a fork child keeps the engines (they reset
            _pid = os.getpid()  # themselves), the lock is new by construction
        engine = _engines.get(key)
        if engine is None or engine.is_shutdown:
            sink_options = {
                name: engine_options.pop(name)
                for name in _SINK_OPTIONS
                if name in engine_options
            }
            # **options are the caller's keyword arguments, checked by the callees.
            sink = EventsSink(url, token, **sink_options)  # type: ignore[arg-type]  # **kw
            engine = BatchEngine(sink, **engine_options)  # type: ignore[arg-type]  # **kw
            _engines[key] = engine
        return engine

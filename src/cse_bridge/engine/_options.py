"""
The engine's knobs: ``EngineOptions``, their environment variables and defaults.

Precedence is the project's rule: explicit argument > environment variable > default,
resolved once, when the options are built. An explicit argument out of range raises
``ValueError`` there; an environment value that does not parse, or is out of range,
means the default (a typo in a container's environment must never break the
application's logging).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from .. import config

__all__ = [
    "DEFAULT_CONNECTIONS",
    "DEFAULT_EXIT_TIMEOUT",
    "DEFAULT_MAX_BATCH_BYTES",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_MAX_QUEUE_SIZE",
    "DEFAULT_OVERFLOW",
    "DEFAULT_PACK",
    "DEFAULT_PACK_SPANS",
    "DEFAULT_SCHEDULE_DELAY",
    "DEFAULT_SEND_TIMEOUT",
    "DEFAULT_SIGTERM",
    "DEFAULT_SPOOL_AFTER",
    "DEFAULT_SPOOL_MAX_BYTES",
    "ENV_CA_FILES",
    "ENV_CONNECTIONS",
    "ENV_EXIT_TIMEOUT",
    "ENV_MAX_BATCH_BYTES",
    "ENV_MAX_BATCH_SIZE",
    "ENV_MAX_QUEUE_BYTES",
    "ENV_MAX_QUEUE_SIZE",
    "ENV_OVERFLOW",
    "ENV_PACK",
    "ENV_PACK_SPANS",
    "ENV_SCHEDULE_DELAY",
    "ENV_SEND_TIMEOUT",
    "ENV_SIGTERM",
    "ENV_SPOOL_AFTER",
    "ENV_SPOOL_DIR",
    "ENV_SPOOL_MAX_BYTES",
    "EngineOptions",
    "Overflow",
    "resolve_bool",
    "resolve_ca_file",
    "resolve_float",
    "resolve_int",
    "resolve_overflow",
    "resolve_spool_dir",
]

Overflow: TypeAlias = Literal["drop_oldest", "drop_newest"]
"""What a full queue does with one more item (lose the oldest, or refuse the newest)."""

ENV_MAX_QUEUE_SIZE: Final = "CSE_BRIDGE_MAX_QUEUE_SIZE"
ENV_MAX_QUEUE_BYTES: Final = "CSE_BRIDGE_MAX_QUEUE_BYTES"
ENV_MAX_BATCH_SIZE: Final = "CSE_BRIDGE_MAX_BATCH_SIZE"
ENV_MAX_BATCH_BYTES: Final = "CSE_BRIDGE_MAX_BATCH_BYTES"
ENV_SCHEDULE_DELAY: Final = "CSE_BRIDGE_SCHEDULE_DELAY"
ENV_OVERFLOW: Final = "CSE_BRIDGE_OVERFLOW"
ENV_EXIT_TIMEOUT: Final = "CSE_BRIDGE_EXIT_TIMEOUT"
ENV_PACK: Final = "CSE_BRIDGE_PACK"
ENV_CONNECTIONS: Final = "CSE_BRIDGE_CONNECTIONS"
ENV_SEND_TIMEOUT: Final = "CSE_BRIDGE_SEND_TIMEOUT"
ENV_SIGTERM: Final = "CSE_BRIDGE_SIGTERM"
ENV_SPOOL_DIR: Final = "CSE_BRIDGE_SPOOL_DIR"
ENV_SPOOL_MAX_BYTES: Final = "CSE_BRIDGE_SPOOL_MAX_BYTES"
ENV_SPOOL_AFTER: Final = "CSE_BRIDGE_SPOOL_AFTER"
ENV_PACK_SPANS: Final = "CSE_BRIDGE_PACK_SPANS"
ENV_CA_FILES: Final = config.ENV_CA_FILES
"""The standard variables naming a CA bundle, in the order they are consulted."""

DEFAULT_MAX_QUEUE_SIZE: Final = 2048 * 64
"""
Items the queue holds. OTel's 2048 drops half of a 50 000-record burst, so 64 times
that, which holds a 200 000-record packed burst while the worker drains it; memory
is bounded by ``DEFAULT_MAX_QUEUE_BYTES`` anyway.
"""
DEFAULT_MAX_QUEUE_BYTES: Final = 160 * 1024 * 1024
"""
Sum of the items' ``size_hint`` the queue holds (160 MiB). Hints count the memory a
queued log record holds (0.9-1.5 KiB), so the item bound stays the one that binds for
typical records (131 072 records of 1.2 KiB).
"""
DEFAULT_MAX_BATCH_SIZE: Final = 512
"""Events handed to the sink in one send, as in OTel's batch processors."""
DEFAULT_MAX_BATCH_BYTES: Final = 4 * 1024 * 1024
"""Estimated bytes (``size_hint``) of unpacked items handed to the sink in one send."""
DEFAULT_SCHEDULE_DELAY: Final = 0.005
"""
Seconds, at most, that packing waits for a small queue to fill a ``log.batch``.

Without packing the worker never waits: it sends as soon as it is free, and what
queues while a send is in flight forms the next one (the API takes one event per
POST and several are in flight, so waiting to batch buys nothing). 5 ms keeps a
lone packed record's latency low; under load packs fill without waiting.
"""
DEFAULT_OVERFLOW: Final[Overflow] = "drop_oldest"
"""The newest records matter most when something breaks."""
DEFAULT_EXIT_TIMEOUT: Final = 3.0
"""The exit budget (seconds) shared by atexit, ``logging.shutdown()``, ``close()``."""
DEFAULT_PACK: Final = 0
"""``log.*`` items per ``log.batch`` event; 0 sends one event per item."""
DEFAULT_PACK_SPANS: Final = 0
"""
``trace.span`` items per ``trace.batch`` event; 0 sends one event per span. Opt-in,
as the reader must know ``trace.batch`` (the forwarder and ``decode_spans`` do).
"""
DEFAULT_CONNECTIONS: Final = 16
"""
Keep-alive connections the events sink keeps in flight (as many as it has events).

The API takes one event per POST, so requests in flight set the rate. Measured on
the local gateway (``bench/engine_send.py``): 8 -> 16 connections gave 1.19x the
events/s, 16 -> 32 only 1.03x more. Against a distant gateway, rate is about
connections / round trip: raise it there, or pack (``CSE_BRIDGE_PACK``).
"""
DEFAULT_SEND_TIMEOUT: Final = 10.0
"""Seconds one ``sink.send`` call may take before its unsent events are retried."""

DEFAULT_SIGTERM: Final = True
"""
Whether engines install the SIGTERM handler, from the main thread and only over the
default disposition, so that a container stop flushes within the exit budget.
"""

DEFAULT_SPOOL_MAX_BYTES: Final = 256 * 1024 * 1024
"""
Bytes the spool directory's segments may take (256 MiB, every process and sandbox
together); past it the oldest segment is removed, counted and reported.
"""
DEFAULT_SPOOL_AFTER: Final = 10.0
"""
Seconds without an answer from the gateway after which queued records go to the
spool instead of waiting in memory (where a killed process would lose them).
"""


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def resolve_int(value: int | None, env: str, default: int, *, minimum: int = 1) -> int:
    """
    Return *value*, else the integer in *env*, else *default*.

    Raises:
        ValueError: The explicit *value* is below *minimum* (not for the environment).
    """
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"expected an integer >= {minimum}, got {value!r}")
        return value
    raw = _env(env)
    if raw is not None:
        try:
            parsed = int(raw)
        except ValueError:
            return default
        if parsed >= minimum:
            return parsed
    return default


def resolve_float(
    value: float | None, env: str, default: float, *, minimum: float = 0.0
) -> float:
    """
    Return *value*, else the number in *env*, else *default*.

    Raises:
        ValueError: The explicit *value* is below *minimum* or not finite.
    """
    if value is not None:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not minimum <= value < float("inf")
        ):
            raise ValueError(f"expected a number >= {minimum}, got {value!r}")
        return float(value)
    raw = _env(env)
    if raw is not None:
        try:
            parsed = float(raw)
        except ValueError:
            return default
        if minimum <= parsed < float("inf"):
            return parsed
    return default


def resolve_overflow(value: str | None) -> Overflow:
    """
    Return the overflow policy: *value*, else ``CSE_BRIDGE_OVERFLOW``, else drop_oldest.

    Raises:
        ValueError: The explicit *value* is not a known policy.
    """
    if value is not None:
        if value not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"overflow must be drop_oldest or drop_newest: {value!r}")
        return "drop_oldest" if value == "drop_oldest" else "drop_newest"
    raw = (_env(ENV_OVERFLOW) or "").lower()
    return "drop_newest" if raw == "drop_newest" else DEFAULT_OVERFLOW


_FALSE: Final = frozenset({"0", "false", "no", "off"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})


def resolve_bool(value: bool | None, env: str, default: bool) -> bool:
    """
    Return *value*, else *env* read as a boolean (1/0, true/false, yes/no, on/off),
    else *default*.

    Raises:
        ValueError: The explicit *value* is not a bool.
    """
    if value is not None:
        if not isinstance(value, bool):
            raise ValueError(f"expected True or False, got {value!r}")
        return value
    raw = (_env(env) or "").lower()
    if raw in _FALSE:
        return False
    if raw in _TRUE:
        return True
    return default


def resolve_ca_file(value: str | None) -> str | None:
    """Return *value*, else the first of ``ENV_CA_FILES`` set, else None (system)."""
    return config.resolve_ca_file(value)


def resolve_spool_dir(value: str | os.PathLike[str] | None) -> str | None:
    """
    Return the spool directory: *value*, else ``CSE_BRIDGE_SPOOL_DIR``, else None
    (no spool: off by default). ``~`` is expanded; the directory is created on
    first use, not here.

    Raises:
        ValueError: The explicit *value* is empty.
    """
    if value is not None:
        text = os.fspath(value)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"spool_dir must name a directory, got {value!r}")
        return os.path.expanduser(text)
    raw = _env(ENV_SPOOL_DIR)
    return os.path.expanduser(raw) if raw else None


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """
    Every knob of an engine and of its events exporter, resolved and validated.

    Build it with ``EngineOptions.resolve(...)`` (argument > environment > default);
    the engine, the shared-engine registry and the producers then pass this one
    object around. See each ``DEFAULT_*`` constant for what a knob means.
    """

    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    """Items the queue holds."""
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    """Sum of the items' ``size_hint`` the queue holds."""
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    """Events per send."""
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    """Estimated bytes of unpacked items per send."""
    schedule_delay: float = DEFAULT_SCHEDULE_DELAY
    """When packing, the longest wait for a small queue to fill a ``log.batch``."""
    overflow: Overflow = DEFAULT_OVERFLOW
    """``drop_oldest`` or ``drop_newest`` when the queue is full."""
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT
    """The exit budget in seconds."""
    pack: int = DEFAULT_PACK
    """``log.*`` items per ``log.batch`` event (0: one event per item)."""
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    """Seconds one send may take."""
    handle_sigterm: bool = DEFAULT_SIGTERM
    """Install the SIGTERM handler (main thread, default disposition only)."""
    connections: int = DEFAULT_CONNECTIONS
    """Requests the events exporter keeps in flight."""
    ca_file: str | None = None
    """The CA bundle that verifies an ``https`` gateway (None: the system's)."""
    spool_dir: str | None = None
    """Where records that cannot be sent wait on disk; None for no spool."""
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    """Bytes the spool directory may hold; the oldest segment goes past it."""
    spool_after: float = DEFAULT_SPOOL_AFTER
    """Seconds of a gateway that does not answer before the queue goes to disk."""
    pack_spans: int = DEFAULT_PACK_SPANS
    """``trace.span`` items per ``trace.batch`` event (0: one event per span)."""

    @classmethod
    def resolve(
        cls,
        *,
        max_queue_size: int | None = None,
        max_queue_bytes: int | None = None,
        max_batch_size: int | None = None,
        max_batch_bytes: int | None = None,
        schedule_delay: float | None = None,
        overflow: str | None = None,
        exit_timeout: float | None = None,
        pack: int | None = None,
        send_timeout: float | None = None,
        handle_sigterm: bool | None = None,
        connections: int | None = None,
        ca_file: str | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int | None = None,
        spool_after: float | None = None,
        pack_spans: int | None = None,
    ) -> EngineOptions:
        """
        Return the options for these arguments; None takes the environment, else
        the default.

        Raises:
            ValueError: An explicit argument is out of range.
            TypeError: An unknown keyword (Python's own check).
        """
        return cls(
            max_queue_size=resolve_int(
                max_queue_size, ENV_MAX_QUEUE_SIZE, DEFAULT_MAX_QUEUE_SIZE
            ),
            max_queue_bytes=resolve_int(
                max_queue_bytes, ENV_MAX_QUEUE_BYTES, DEFAULT_MAX_QUEUE_BYTES
            ),
            max_batch_size=resolve_int(
                max_batch_size, ENV_MAX_BATCH_SIZE, DEFAULT_MAX_BATCH_SIZE
            ),
            max_batch_bytes=resolve_int(
                max_batch_bytes, ENV_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_BYTES
            ),
            schedule_delay=resolve_float(
                schedule_delay, ENV_SCHEDULE_DELAY, DEFAULT_SCHEDULE_DELAY
            ),
            overflow=resolve_overflow(overflow),
            exit_timeout=resolve_float(
                exit_timeout, ENV_EXIT_TIMEOUT, DEFAULT_EXIT_TIMEOUT
            ),
            pack=resolve_int(pack, ENV_PACK, DEFAULT_PACK, minimum=0),
            send_timeout=resolve_float(
                send_timeout, ENV_SEND_TIMEOUT, DEFAULT_SEND_TIMEOUT, minimum=0.001
            ),
            handle_sigterm=resolve_bool(handle_sigterm, ENV_SIGTERM, DEFAULT_SIGTERM),
            connections=resolve_int(connections, ENV_CONNECTIONS, DEFAULT_CONNECTIONS),
            ca_file=resolve_ca_file(ca_file),
            spool_dir=resolve_spool_dir(spool_dir),
            spool_max_bytes=resolve_int(
                spool_max_bytes,
                ENV_SPOOL_MAX_BYTES,
                DEFAULT_SPOOL_MAX_BYTES,
                minimum=64 * 1024,
            ),
            spool_after=resolve_float(
                spool_after, ENV_SPOOL_AFTER, DEFAULT_SPOOL_AFTER
            ),
            pack_spans=resolve_int(
                pack_spans, ENV_PACK_SPANS, DEFAULT_PACK_SPANS, minimum=0
            ),
        )

"""
``PubSubClient``'s arguments, checked and resolved against the environment.

Argument > ``COMPUTESDK_*`` environment variable > default, as everywhere (``config``).
"""

from __future__ import annotations

import math

from .. import config
from ..config import sandbox_from_token
from ._connect import Settings

__all__ = ["positive", "resolve_settings", "sandbox_from_token"]


def positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds: {value}")
    return float(value)


def resolve_settings(
    *,
    sandbox_id: str | None,
    access_token: str | None,
    host: str | None,
    port: int | None,
    since: int | None,
    auto_reconnect: bool,
    reconnect_delay: float | None,
    max_reconnect_delay: float,
    keepalive_interval: float,
    keepalive_timeout: float,
    connect_timeout: float,
    max_rejections: int,
    max_buffer_bytes: int,
    tls: bool | None = None,
    ca_file: str | None = None,
) -> Settings:
    """
    Return the connection settings of a client built with these arguments.

    Raises:
        TypeError, ValueError: An argument (or the env value it falls back to) is bad.
    """
    token = config.resolve_access_token(access_token) or ""
    sandbox = sandbox_id or sandbox_from_token(token) or ""
    delay = (
        config.DEFAULT_RECONNECT_DELAY if reconnect_delay is None else reconnect_delay
    )
    if since is not None and (isinstance(since, bool) or not isinstance(since, int)):
        raise TypeError("since must be an int (milliseconds since the epoch)")
    if max_rejections < 1 or max_buffer_bytes < 1:
        raise ValueError("max_rejections and max_buffer_bytes must be positive")
    return Settings(
        host=config.resolve_pubsub_host(host),
        port=config.resolve_pubsub_port(port),
        sandbox_id=sandbox,
        token=token,
        connect_timeout=positive("connect_timeout", connect_timeout),
        auto_reconnect=bool(auto_reconnect),
        reconnect_delay=positive("reconnect_delay", delay),
        max_reconnect_delay=positive("max_reconnect_delay", max_reconnect_delay),
        keepalive_interval=positive("keepalive_interval", keepalive_interval),
        keepalive_timeout=positive("keepalive_timeout", keepalive_timeout),
        max_rejections=max_rejections,
        max_buffer_bytes=max_buffer_bytes,
        tls=config.resolve_pubsub_tls(tls),
        ca_file=config.resolve_ca_file(ca_file),
    )

"""
The one place Redis failures become ``StoreUnavailableError`` (503, the client retries).

Only failures that may pass are translated: connection lost or refused, timeouts, a
server loading or failing over, a cluster slot without a reachable owner. Anything else
(a script bug, a CROSSSLOT mistake) stays what it is and answers 500.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from redis.exceptions import (
    AskError,
    ClusterDownError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import StoreUnavailableError

__all__ = ["translate", "unavailable_on_failure"]

_TRANSIENT_REPLIES: Final = (
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "READONLY",
)
"""Error replies of a Redis that is starting, failing over or busy: worth a retry."""
_TRANSIENT_CLASSES: Final = (
    RedisConnectionError,
    RedisTimeoutError,
    # redis-py strips the reply's code from these; they mean a failover, and a
    # MOVED or ASK (AskError covers both) that redis-py gave up following, too.
    ClusterDownError,
    TryAgainError,
    AskError,
    SlotNotCoveredError,
)
"""Exceptions (cluster ones included) of a Redis that may come back by itself."""
_UNREACHABLE_CLUSTER: Final = "Redis Cluster cannot be connected"
"""How redis-py words "no startup node answered" (a bare RedisClusterException)."""


def translate(exc: BaseException) -> BaseException:
    """
    Return *exc* as ``StoreUnavailableError`` if it may pass, else unchanged.

    MOVED and ASK get here only when redis-py gave up following them (slots moving
    on and on): a resharding or failover in progress, so they count as transient.
    """
    transient = isinstance(exc, _TRANSIENT_CLASSES) or (
        isinstance(exc, ResponseError) and str(exc).startswith(_TRANSIENT_REPLIES)
    )
    if not transient and isinstance(exc, RedisClusterException):
        transient = str(exc).startswith(_UNREACHABLE_CLUSTER)
    if not transient:
        return exc
    unavailable = StoreUnavailableError(f"event store unavailable: {exc}", 503)
    unavailable.__cause__ = exc
    return unavailable


@contextlib.contextmanager
def unavailable_on_failure() -> Iterator[None]:
    """Turn the Redis failures that may pass into ``StoreUnavailableError``."""
    try:
        yield
    except (RedisError, RedisClusterException) as exc:
        translated = translate(exc)
        if translated is exc:
            raise
        raise translated from exc

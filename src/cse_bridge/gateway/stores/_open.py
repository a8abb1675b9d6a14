"""Turn a store URL into a store."""

from __future__ import annotations

from urllib.parse import urlsplit

from ._base import DEFAULT_RETENTION, EventStore

__all__ = ["open_store"]


def open_store(url: str, *, retention: int = DEFAULT_RETENTION) -> EventStore:
    """
    Return the (unopened) store that *url* names.

    ``memory://`` keeps events in memory; ``sqlite:///path/to/file.db`` keeps them in
    an SQLite file (``sqlite:///relative.db`` is relative to the working directory,
    ``sqlite:////abs/path.db`` absolute); ``redis://[:password@]host:port/db?prefix=NAME``
    (or ``rediss://``) shares one event log between gateway processes, and
    ``redis+cluster://host:port[,host:port...]?prefix=NAME`` (or ``rediss+cluster://``)
    does so on a Redis Cluster (the ``redis`` extra, imported only here).

    Raises:
        ValueError: The scheme is unknown or the URL is malformed.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(retention=retention)
    if scheme == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore.from_url(url, retention=retention)
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        try:
            from .redis import RedisStore
        except ImportError as exc:  # the optional redis extra is not installed
            raise ValueError(
                f"store URL {url!r} needs redis-py: pip install 'cse-bridge[redis]'"
            ) from exc
        return RedisStore.from_url(url, retention=retention)
    raise ValueError(
        f"unknown store URL {url!r}: use memory://, sqlite:///PATH or "
        "redis://HOST:PORT/DB?prefix=NAME, redis+cluster://HOST:PORT[,HOST:PORT]"
    )

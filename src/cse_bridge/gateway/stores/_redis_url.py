"""
Redis store URLs, and the redis-py client each one names.

- ``redis://[[user]:password@]host[:port][/db][?prefix=NAME&...]`` and ``rediss://``:
  one endpoint (a standalone server, or a primary behind Sentinel or a proxy).
- ``redis+cluster://[[user]:password@]host[:port][,host[:port]...][?prefix=NAME&...]``
  and ``rediss+cluster://``: a Redis Cluster, discovered from any of the seed nodes
  (one is enough; more let the gateway start while one of them is down).

Query options other than ``prefix`` go to redis-py under its own names (for example
``socket_timeout=2``) and win over our defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import SlotNotCoveredError

__all__ = ["DEFAULT_PREFIX", "RedisTarget", "parse_redis_url", "slot_owner"]

DEFAULT_PREFIX: Final = "cse"
"""Key prefix when the URL has no ``?prefix=``."""
CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""Our cluster schemes, and the redis-py scheme each one's seed URL gets."""
_SOCKET_DEFAULTS: Final[dict[str, Any]] = {
    "socket_timeout": 5.0,
    "socket_connect_timeout": 2.0,
    "socket_keepalive": True,
}
"""Connection settings of both client kinds."""
_USAGE: Final = (
    "use redis://[:password@]host:port/db?prefix=NAME (or rediss://), or "
    "redis+cluster://host:port[,host:port...]?prefix=NAME (or rediss+cluster://)"
)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """
    What a store URL names: a redis-py URL, and the other seed nodes of a cluster.

    ``seeds`` is None for a single endpoint, and a (maybe empty) tuple of further
    ``(host, port)`` seeds for a cluster, whose first seed is in ``url``.
    """

    url: str
    prefix: str
    seeds: tuple[tuple[str, int], ...] | None

    @property
    def cluster(self) -> bool:
        """True for a Redis Cluster."""
        return self.seeds is not None

    def create_client(self) -> Redis | RedisCluster:
        """
        Return an unconnected client: ``RedisCluster`` for a cluster, else ``Redis``.

        Neither connects before its first command, so this never fails for Redis
        being down.
        """
        if self.seeds is None:
            pool = BlockingConnectionPool.from_url(
                self.url,
                decode_responses=True,
                # One retry on a fresh connection: a pooled one may predate a Redis
                # restart. More would only delay the 503 the client retries on anyway.
                retry=Retry(NoBackoff(), 1),
                max_connections=64,
                timeout=5.0,  # seconds to wait for a free pooled connection
                **_SOCKET_DEFAULTS,
            )
            return Redis(connection_pool=pool)
        return RedisCluster.from_url(
            self.url,
            startup_nodes=[ClusterNode(host, port) for host, port in self.seeds],
            decode_responses=True,
            # No cluster-level retry: redis-py's retry of a pipeline closes every
            # node's connections, disturbing the healthy shards for one dead one.
            # MOVED and ASK are followed anyway, and the client retries a 503.
            retry=Retry(NoBackoff(), 0),
            # Keep serving the sandboxes whose shard is up while another one is not.
            require_full_coverage=False,
            # Per node; the cluster pool does not wait for a free connection.
            max_connections=128,
            **_SOCKET_DEFAULTS,
        )


def parse_redis_url(url: str) -> RedisTarget:
    """
    Split a store URL into the redis-py URL, our prefix and any cluster seeds.

    Raises:
        ValueError: Not a Redis URL, a host missing, or a bad prefix.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", *CLUSTER_SCHEMES):
        raise ValueError(f"bad Redis URL {url!r}: {_USAGE}")
    options = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in options if name == "prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_PREFIX
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError(f"bad Redis key prefix {prefix!r}: no braces, not empty")
    rest = urlencode([(name, value) for name, value in options if name != "prefix"])
    if scheme not in CLUSTER_SCHEMES:
        if not parts.hostname:
            raise ValueError(f"bad Redis URL {url!r}: {_USAGE}")
        return RedisTarget(urlunsplit(parts._replace(query=rest)), prefix, None)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    seeds = [_host_port(url, host) for host in hosts.split(",")]
    first = hosts.split(",", 1)[0]
    seed_url = urlunsplit(
        (CLUSTER_SCHEMES[scheme], f"{userinfo}{at}{first}", parts.path, rest, "")
    )
    return RedisTarget(seed_url, prefix, tuple(seeds[1:]))


def _host_port(url: str, host: str) -> tuple[str, int]:
    """``host[:port]`` (IPv6 in brackets) as a pair; the port defaults to 6379."""
    parts = urlsplit(f"//{host}")
    try:
        port = parts.port or 6379
    except ValueError:  # a port that is not a number
        port = 0
    if not parts.hostname or not port:
        raise ValueError(f"bad Redis Cluster seed {host!r} in {url!r}: {_USAGE}")
    return parts.hostname, port


def slot_owner(cluster: RedisCluster, key: str) -> ClusterNode:
    """
    The primary that owns *key*'s slot, from the client's slot map (no round trip).

    Raises:
        SlotNotCoveredError: The slot map is not known yet, or has no owner for it.
    """
    node = cluster.get_node_from_key(key)
    if node is None:  # only for replica=True, but redis-py's types allow it
        raise SlotNotCoveredError(f"no primary owns the slot of {key!r}")
    return node

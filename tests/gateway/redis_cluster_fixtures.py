"""A private 3-node Redis Cluster for the cluster tests, started in a temporary dir."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import redis
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.crc import key_slot

from .redis_fixtures import free_port

_BOOT_TIMEOUT = 15.0
"""Seconds the cluster may take to start and agree on its slots."""


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"the Redis Cluster tests need {name} on PATH (e.g. apt-get install "
            "redis-server; they start their own three-node cluster on free ports)"
        )
    return found


class OwnRedisCluster:
    """Three redis-server primaries (no replicas, no persistence) in one cluster."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.directory = directory
        self.ports = [free_port() for _ in range(size)]
        self.procs: dict[int, subprocess.Popen[str]] = {}

    def url(self, prefix: str) -> str:
        """A store URL with two of the nodes as seeds and *prefix*."""
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.ports[:2])
        return f"redis+cluster://{seeds}?prefix={prefix}"

    def unique_url(self) -> str:
        """A store URL under a fresh prefix (the cluster is thrown away afterwards)."""
        return self.url(f"cse-test-{uuid.uuid4().hex[:12]}")

    def start(self) -> None:
        """Start the nodes, join them into a cluster; return once it serves."""
        for port in self.ports:
            self._start_node(port)
        subprocess.run(
            [
                _binary("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=_BOOT_TIMEOUT,
        )
        self._wait_until_ok()

    def _start_node(self, port: int) -> None:
        proc = subprocess.Popen(
            [
                _binary("redis-server"),
                "--port",
                str(port),
                # Ephemeral ports + 10000 may pass 65535: pick the bus port too.
                "--cluster-port",
                str(free_port()),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "2000",
                # The shards that are up keep serving while one is down.
                "--cluster-require-full-coverage",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError(
                f"redis-server on port {port} exited before it was ready"
            )
        # Nobody reads on: let the log go where it would block nothing.
        proc.stdout.close()
        self.procs[port] = proc

    def _wait_until_ok(self) -> None:
        deadline = time.monotonic() + _BOOT_TIMEOUT
        for port in self.ports:
            client = redis.Redis(port=port, decode_responses=True)
            try:
                while "ok" != client.cluster("INFO").get("cluster_state"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the Redis Cluster did not come up")
                    time.sleep(0.05)  # bounded: the nodes gossip their slots
            finally:
                client.close()

    def owner_port(self, key: str) -> int:
        """The port of the primary that owns *key*'s slot."""
        client = SyncRedisCluster(host="127.0.0.1", port=self.ports[0])
        try:
            node = client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
            return int(node.port)
        finally:
            client.close()

    def kill(self, port: int) -> None:
        """SIGKILL the node on *port*, as a crash would."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        """Stop every node that still runs."""
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(10)
        self.procs.clear()

"""A real OTLP receiver for the tests: the rotel collector, reporting over TCP."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sysconfig
import threading
from pathlib import Path
from typing import Any

import rotel

AGENT = Path(rotel.__file__).parent / "rotel-agent"
PROCESSOR = Path(__file__).with_name("rotel_processor.py")


def agent_library_path() -> str:
    """
    ``LD_LIBRARY_PATH`` with this interpreter's libpython first.

    rotel-agent embeds the Python of the wheel it came with (for its processors) and
    links ``libpython3.X.so``; an interpreter built outside the system's library
    path (pyenv, a venv of a custom build) keeps that library in its own LIBDIR.
    """
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    rest = os.environ.get("LD_LIBRARY_PATH", "")
    return os.pathsep.join(part for part in (libdir, rest) if part)


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Received:
    """A TCP listener collecting the JSON lines rotel's processor sends."""

    def __init__(self) -> None:
        self.items: queue.Queue[dict[str, Any]] = queue.Queue()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn, conn.makefile("r") as lines:
                for line in lines:
                    self.items.put(json.loads(line))

    def take(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Block until *count* items arrived (raises queue.Empty after *timeout*)."""
        return [self.items.get(timeout=timeout) for _ in range(count)]

    def close(self) -> None:
        self._server.close()


class RotelReceiver:
    """rotel-agent on free HTTP and gRPC ports with our processor, blackhole export."""

    def __init__(self, received: Received) -> None:
        self.received = received
        self.http_port, self.grpc_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []
        """rotel's output lines (errors of the processor show here)."""

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        """Start rotel and block until its HTTP port accepts connections."""
        env = dict(
            os.environ,
            CSE_TEST_SINK_PORT=str(self.received.port),
            LD_LIBRARY_PATH=agent_library_path(),
        )
        self.process = subprocess.Popen(
            [
                str(AGENT), "start", "--exporter", "blackhole",
                "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
                "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
                "--otlp-with-trace-processor", str(PROCESSOR),
                "--otlp-with-logs-processor", str(PROCESSOR),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        # rotel logs "Starting Rotel" once both receivers are bound.
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if b"Starting Rotel" in line:
                break
        threading.Thread(target=self._drain, daemon=True).start()
        socket.create_connection(("127.0.0.1", self.http_port), timeout=5).close()

    def _drain(self) -> None:
        process = self.process
        assert process is not None
        assert process.stdout is not None
        for line in process.stdout:
            self.log.append(line.decode("utf-8", "replace"))
        process.stdout.close()

    def stop(self) -> None:
        """Stop rotel and wait for it to exit."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

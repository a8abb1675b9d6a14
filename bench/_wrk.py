"""
Driving ``wrk`` (Debian package ``wrk``) against a gateway: the baseline every
throughput benchmark here is compared with.
"""

from __future__ import annotations

import os
import re
import subprocess

from cse_bridge.engine._options import (
    DEFAULT_CONNECTIONS,
    ENV_CONNECTIONS,
    resolve_int,
)


def engine_connections() -> int:
    """The engine's connection count (``CSE_BRIDGE_CONNECTIONS``, else its default)."""
    return resolve_int(None, ENV_CONNECTIONS, DEFAULT_CONNECTIONS)


def post_lua(body: str) -> str:
    """A wrk script that POSTs *body* to /events with the token from ``BENCH_TOKEN``."""
    if "]]" in body:
        raise ValueError("the body must not contain ']]' (it ends a Lua long string)")
    return f"""
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
"""


POST_LUA = post_lua(
    '{"type":"bench.event","data":{"i":1,"message":"hello from the benchmark","ok":true}}'
)
"""POST an 80-byte event to /events with the access token from ``BENCH_TOKEN``."""


def run_wrk(
    url: str,
    token: str,
    script: str,
    duration: int,
    connections: int,
    *,
    path: str = "/events",
    api_key: str = "bench-key",
) -> float:
    """Return the requests/s wrk measured (one thread); fail on any non-2xx answer."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", script, url + path],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_TOKEN": token, "BENCH_API_KEY": api_key},
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"no rate in wrk output:\n{out}")
    return float(match.group(1))

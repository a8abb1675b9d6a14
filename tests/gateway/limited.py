"""A gateway process with only 256 file descriptors, for the exhaustion tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..helpers import API_KEY, CONFIG_ENV, SECRET, wait_until

_LIMITED_GATEWAY = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
sys.argv[0] = "cse-bridge"
from cse_bridge.cli import main
sys.exit(main())
"""


@contextmanager
def limited_gateway(tmp_path: Path, *options: str) -> Iterator[dict[str, str]]:
    """
    Run ``cse-bridge gateway`` (HTTP and pub/sub) under 256 descriptors.

    Yields the addresses of its ready file. On exit it is stopped, and its stderr
    must hold no traceback and fewer than five ``refusing`` lines (throttled).
    """
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _LIMITED_GATEWAY,
            "gateway",
            "--port=0",
            "--pubsub-port=0",
            f"--secret={SECRET}",
            f"--api-key={API_KEY}=1",
            f"--ready-file={ready}",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k not in CONFIG_ENV},
    )
    try:
        assert wait_until(ready.exists, "the ready file", timeout=20)
        yield json.loads(ready.read_text())
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    lines = err.decode().splitlines()
    assert 5 > len([line for line in lines if "refusing" in line]), lines
    assert not [line for line in lines if "Traceback" in line], lines

"""The examples under examples/ run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> str:
    """Run one example in a clean environment (no COMPUTESDK_* set); return stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTESDK_")}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    return result.stdout


class TestStoreAndRead:
    """examples/store_and_read.py."""

    def test_round_trip_on_an_embedded_gateway(self) -> None:
        """It stores three events and reads all three back, then the filtered one."""
        lines = run_example("store_and_read.py").splitlines()
        assert lines[0].startswith("stored evt_")
        assert [
            "[execution.started] {'command': 'python main.py'}",
            "[terminal.output] {'text': 'Hello, World!\\n'}",
            "[execution.completed] {'exitCode': 0, 'duration': 1234}",
            "completed: 1 exitCode=0",
        ] == lines[1:]

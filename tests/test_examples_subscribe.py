"""examples/subscribe.py runs as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class TestSubscribeExample:
    """examples/subscribe.py."""

    def test_prints_the_events_it_stored(self) -> None:
        """On an embedded gateway it prints three events, in order, and exits 0."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTESDK_")}
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "subscribe.py")],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env=env,
        )
        assert [f"custom {{'n': {n}}}" for n in range(3)] == out.stdout.splitlines()

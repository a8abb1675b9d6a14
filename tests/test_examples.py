"""The examples under examples/ run as written."""

from __future__ import annotations

from .helpers import run_example


class TestStoreAndRead:
    """examples/store_and_read.py."""

    def test_round_trip_on_an_embedded_gateway(self) -> None:
        """It stores three events and reads all three back, then the filtered one."""
        lines = run_example("store_and_read.py").stdout.splitlines()
        assert lines[0].startswith("stored evt_")
        assert [
            "[execution.started] {'command': 'python main.py'}",
            "[terminal.output] {'text': 'Hello, World!\\n'}",
            "[execution.completed] {'exitCode': 0, 'duration': 1234}",
            "completed: 1 exitCode=0",
        ] == lines[1:]

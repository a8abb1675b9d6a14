"""examples/subscribe.py runs as written."""

from __future__ import annotations

from .helpers import run_example


class TestSubscribeExample:
    """examples/subscribe.py."""

    def test_prints_the_events_it_stored(self) -> None:
        """On an embedded gateway it prints three events, in order, and exits 0."""
        out = run_example("subscribe.py")
        assert [f"custom {{'n': {n}}}" for n in range(3)] == out.stdout.splitlines()

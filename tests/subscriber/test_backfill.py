"""Gap-free reconnects: the sequencer, and a real gateway restarted mid-stream."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from cse_bridge.errors import EventsNetworkError, EventsPubSubError
from cse_bridge.gateway import GatewayThread
from cse_bridge.models import SandboxEvent
from cse_bridge.subscriber import PubSubClient
from cse_bridge.subscriber._backfill import Sequencer

from ..conftest import make_gateway_config
from .conftest import WAIT, Recorder, gateway_options, producer

MakeClient = Callable[..., PubSubClient]


def _event(index: int) -> SandboxEvent:
    return SandboxEvent(f"evt_{index}", "sb", 1, "custom", {"i": index}, 1000 + index)


class TestSequencer:
    """Ordering and de-duplication across a backfill."""

    def test_live_events_pass_once(self) -> None:
        """Live pushes are delivered at once; a repeated id is dropped."""
        seq = Sequencer()
        assert [_event(1), _event(2)] == seq.live([_event(1), _event(2), _event(1)])

    def test_held_pushes_merge_after_backfill(self) -> None:
        """Pushes held during a backfill follow it, in order, without duplicates."""
        seq = Sequencer(1000)
        seq.begin_backfill()
        held = seq.live([_event(4), _event(3)])
        page = seq.backfilled([_event(1), _event(2), _event(3)])
        rest = seq.end_backfill()
        assert ([], [1, 2, 3], [4], 1004) == (
            held,
            [e.data["i"] for e in page],
            [e.data["i"] for e in rest],
            seq.last_timestamp,
        )

    def test_aborted_backfill_drops_held(self) -> None:
        """After an abort nothing held is delivered and the cursor stays put."""
        seq = Sequencer(1000)
        seq.begin_backfill()
        seq.live([_event(5)])
        seq.abort_backfill()
        assert ([], 1000) == (seq.end_backfill(), seq.last_timestamp)


class TestGatewayRestart:
    """The subscriber survives a gateway restart with nothing lost or repeated."""

    def test_sqlite_gateway_killed_and_restarted(
        self, tmp_path: Path, sandbox_id: str, make_client: MakeClient
    ) -> None:
        """Events stored before, during and after a restart arrive once, in order."""
        config = make_gateway_config(f"sqlite:///{tmp_path / 'events.db'}")
        first = GatewayThread(config).start()
        fixed = make_gateway_config(
            config.store_url,
            http_port=first.gateway.http_port,
            pubsub_port=first.pubsub_port,
        )
        second = GatewayThread(fixed)
        client = make_client(**gateway_options(first, sandbox_id))
        seen = Recorder(client)
        client.connect()
        http = producer(first, sandbox_id)
        stored: list[str] = []
        restarted = threading.Event()
        quiet = threading.Event()

        def store(count: int) -> None:
            while len(stored) < count and not quiet.is_set():
                try:
                    stored.append(
                        http.store_event("custom", {"n": len(stored)}).event_id
                    )
                except EventsNetworkError:
                    restarted.wait(WAIT)  # down: wait for the new gateway

        try:
            store(20)
            restarted.clear()
            worker = threading.Thread(target=store, args=(60,))
            worker.start()
            first.stop()
            second.start()
            restarted.set()
            worker.join(WAIT * 2)
            got = seen.wait_for(60)
        finally:
            quiet.set()
            client.disconnect()
            http.close()
            first.stop()
            second.stop()
        assert (stored, 60) == ([e.id for e in got], len(got))

    def test_without_api_key_a_gap_is_reported_once(
        self,
        gateway: GatewayThread,
        sandbox_id: str,
        make_client: MakeClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Without an API key a reconnect warns once, via ``error``, of a gap."""
        monkeypatch.delenv("COMPUTESDK_API_KEY", raising=False)
        options = {**gateway_options(gateway, sandbox_id), "api_key": None}
        config = make_gateway_config(
            http_port=gateway.gateway.http_port, pubsub_port=gateway.pubsub_port
        )
        client = make_client(**options)
        seen = Recorder(client)
        client.connect()
        seen.connects.get(timeout=WAIT)
        gateway.stop()
        with GatewayThread(config):
            seen.connects.get(timeout=WAIT)
            error = seen.errors.get(timeout=WAIT)
        assert (EventsPubSubError, True) == (type(error), "API key" in str(error))

"""The conservation law: every accepted event is delivered, or counted and reported."""

from __future__ import annotations

import time

import pytest

from cse_bridge.engine import InMemorySink
from cse_bridge.engine._lifecycle import format_exit_line
from cse_bridge.gateway import GatewayThread

from .conftest import EngineFactory, item, read_events
from .exits import run_program
from .servers import AnsweringServer, closed_port


class TestExitLine:
    """The one final line: its form and its count."""

    def test_nothing_lost_says_nothing(self) -> None:
        """No drops, no line."""
        assert None is format_exit_line({"exit": 0}, {})

    def test_the_largest_reason_leads_and_the_others_follow(self) -> None:
        """The reason with most events names the error; the others add their counts."""
        line = format_exit_line(
            {"queue_full": 5, "exit": 20, "rejected": 1},
            {"exit": "ConnectionRefusedError: refused"},
        )
        expected = (
            "cse-bridge: 26 events not delivered "
            "(exit: ConnectionRefusedError: refused; queue_full: 5; rejected: 1)"
        )
        assert expected == line


class TestAbandonedSend:
    """A send that never returns cannot hold shutdown, nor hide its events."""

    def test_hung_send_is_counted_as_exit(self, make_engine: EngineFactory) -> None:
        """Shutdown past a hung send counts every queued and in-flight item as exit."""
        sink = InMemorySink(["hang"])
        engine = make_engine(sink, send_timeout=30)
        for index in range(40):
            engine.submit(item(index))
        assert sink.wait_calls(1, 10)
        started = time.monotonic()
        assert not engine.shutdown(0.5)
        stats = engine.stats()
        assert time.monotonic() - started < 1.5
        assert ({"exit": 40}, 0, 0) == (
            dict(stats.dropped),
            stats.in_flight,
            stats.queue_depth,
        )


class TestProcessReport:
    """A real program against a real server: what arrives plus what is said."""

    def test_delivered_in_full_prints_nothing(self, gateway: GatewayThread) -> None:
        """Every event delivered: stderr stays empty, the status is the program's."""
        token = gateway.issue_token("sb-report-up")
        ended = run_program("normal", 300, gateway.http_url, token)
        assert (0, "") == (ended.status, ended.stderr)
        assert 300 == len(read_events(gateway, "sb-report-up"))

    def test_refused_connections_are_retried_then_reported(self) -> None:
        """Nothing listening: a 'retrying' line, then one exact exit line; status 3."""
        url = f"http://127.0.0.1:{closed_port()}"
        ended = run_program("sys.exit", 300, url, "token")
        lines = ended.stderr.splitlines()
        assert 3 == ended.status
        assert 1 == len(ended.exit_lines), ended.stderr
        assert lines[-1].startswith("cse-bridge: 300 events not delivered (exit: ")
        assert "ConnectionRefusedError" in lines[-1]
        assert any("; retrying, " in line for line in lines), ended.stderr
        assert ended.seconds < 1.0 + 2.5

    def test_a_hanging_gateway_cannot_stretch_the_exit(self) -> None:
        """Accepted, never answered: exit within the budget, all 300 reported."""
        with AnsweringServer(hang=True) as server:
            ended = run_program("normal", 300, server.url, "token")
        assert 0 == ended.status
        assert [
            "cse-bridge: 300 events not delivered "
            "(exit: the exit budget ran out while a send was in flight)"
        ] == ended.exit_lines, ended.stderr
        assert ended.seconds < 1.0 + 2.5

    def test_500s_are_said_as_drops(self) -> None:
        """A gateway answering 500: the line says 'dropped', and the count adds up."""
        with AnsweringServer(500, body=b"broken") as server:
            ended = run_program("normal", 300, server.url, "token", budget=3.0)
        assert 0 == ended.status
        assert 300 == ended.reported, ended.stderr
        assert any(
            line.startswith("cse-bridge: dropped ") and "send_failed: HTTP 500" in line
            for line in ended.stderr.splitlines()
        ), ended.stderr


class TestSigterm:
    """SIGTERM is an ending: flush within the budget, then die of the signal."""

    def test_sigterm_flushes_then_dies_of_it(self, gateway: GatewayThread) -> None:
        """5,000 records then SIGTERM: all arrive, and the status is still -SIGTERM."""
        token = gateway.issue_token("sb-sigterm")
        # A budget that fits a loaded machine: this test is about arriving, not time.
        ended = run_program("sigterm", 5000, gateway.http_url, token, budget=15.0)
        assert (-15, "") == (ended.status, ended.stderr)
        assert 5000 == len(read_events(gateway, "sb-sigterm"))

    @pytest.mark.parametrize("how", ["option", "environment"])
    def test_the_handler_can_be_turned_off(self, how: str) -> None:
        """handle_sigterm=False or CSE_BRIDGE_SIGTERM=0: SIGTERM kills at once."""
        env = {"CSE_BRIDGE_SIGTERM": "0"} if how == "environment" else {}
        program = "handle_sigterm=False" if how == "option" else ""
        ended = run_program(
            "sigterm",
            300,
            f"http://127.0.0.1:{closed_port()}",
            "token",
            env=env,
            handler_options=program,
        )
        assert (-15, []) == (ended.status, ended.exit_lines)

    def test_an_application_handler_is_kept(self) -> None:
        """A handler installed before the engine starts stays the one that runs."""
        ended = run_program(
            "sigterm",
            300,
            f"http://127.0.0.1:{closed_port()}",
            "token",
            prelude="signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))",
        )
        assert 7 == ended.status
        assert 300 == ended.reported, ended.stderr

    def test_pool_workers_flush_their_own_engine(self, gateway: GatewayThread) -> None:
        """A Pool with-block (terminate() SIGTERMs the workers) delivers everything."""
        token = gateway.issue_token("sb-pool")
        ended = run_program("pool", 1800, gateway.http_url, token, budget=15.0)
        assert (0, "") == (ended.status, ended.stderr)
        assert 1800 == len(read_events(gateway, "sb-pool"))

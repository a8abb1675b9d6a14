"""``cse-bridge tail``: rendering, history then live, filters, and Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid

import pytest

from cse_bridge.cli._args import parse_since
from cse_bridge.cli._render import render_json, render_line
from cse_bridge.client import EventsClient
from cse_bridge.gateway import GatewayThread
from cse_bridge.models import SandboxEvent

from .helpers import API_KEY

WAIT = 20.0


def _event(kind: str, data: dict[str, object]) -> SandboxEvent:
    return SandboxEvent("evt_1", "sb", 1, kind, data, 1_700_000_000_123)


class TestTailRendering:
    """The one-line and JSON renderings."""

    def test_log_event_shows_level_logger_message(self) -> None:
        """A ``log.*`` event shows its level, logger and message, coloured on demand."""
        event = _event("log.warning", {"message": "disk low", "logger": "app"})
        plain = render_line(event)
        coloured = render_line(event, colour=True)
        assert (True, True, "\x1b[33m") == (
            plain.endswith("WARNING  app: disk low"),
            "\x1b[0m" in coloured,
            coloured.split(" ")[1][:5],
        )

    def test_other_event_shows_compact_data(self) -> None:
        """Other events show their type and data as compact JSON."""
        line = render_line(_event("custom", {"a": 1}))
        assert line.endswith('custom               {"a":1}')

    def test_json_is_the_wire_form(self) -> None:
        """``--json`` lines parse back to the event's wire form."""
        event = _event("custom", {"a": [1, "é"]})
        assert event.to_json() == json.loads(render_json(event))

    @pytest.mark.parametrize(
        ("text", "expected"),
        [("10m", 400_000), ("2h", 0), ("30s", 970_000), ("1500", 1500)],
    )
    def test_since_durations(self, text: str, expected: int) -> None:
        """Durations count back from now; plain digits are ms since the epoch."""
        assert expected == parse_since(text, now_ms=1_000_000)

    def test_since_rejects_other_text(self) -> None:
        """Anything else is a ValueError."""
        with pytest.raises(ValueError, match="duration"):
            parse_since("yesterday")


def _tail(gw: GatewayThread, sandbox: str, *extra: str) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "cse_bridge",
        "tail",
        sandbox,
        "--token",
        gw.issue_token(sandbox),
        "--api-key",
        API_KEY,
        "--gateway-url",
        gw.http_url,
        "--host",
        gw.pubsub_host,
        "--port",
        str(gw.pubsub_port),
        *extra,
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stop(proc: subprocess.Popen[str]) -> tuple[int, list[str]]:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=WAIT)
    return proc.returncode, out.splitlines()


class TestTailFollow:
    """The command against a real gateway, in a subprocess."""

    def test_since_prints_history_then_live_and_ctrl_c_exits_0(
        self, gateway: GatewayThread
    ) -> None:
        """History, then live events, each once; SIGINT ends it with status 0."""
        sandbox = f"sb-{uuid.uuid4().hex[:10]}"
        with EventsClient(
            gateway_url=gateway.http_url,
            access_token=gateway.issue_token(sandbox),
            api_key=API_KEY,
        ) as http:
            for i in range(5):
                http.store_event("custom", {"i": i})
            proc = _tail(gateway, sandbox, "--since", "1", "--json")
            assert proc.stdout is not None
            head = [json.loads(proc.stdout.readline())["data"]["i"] for _ in range(5)]
            for i in range(5, 10):
                http.store_event("custom", {"i": i})
            tail = [json.loads(proc.stdout.readline())["data"]["i"] for _ in range(5)]
            code, rest = _stop(proc)
        assert (list(range(10)), 0, []) == (head + tail, code, rest)

    def test_type_glob_filters(self, gateway: GatewayThread) -> None:
        """``--type 'log.*'`` prints only matching events."""
        sandbox = f"sb-{uuid.uuid4().hex[:10]}"
        with EventsClient(
            gateway_url=gateway.http_url, access_token=gateway.issue_token(sandbox)
        ) as http:
            http.store_event("custom", {"skip": True})
            http.store_event("log.error", {"message": "bad", "logger": "x"})
            proc = _tail(gateway, sandbox, "--since", "1", "--type", "log.*")
            assert proc.stdout is not None
            line = proc.stdout.readline()
            code, rest = _stop(proc)
        assert (True, 0, []) == (line.rstrip().endswith("ERROR    x: bad"), code, rest)

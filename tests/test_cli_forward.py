"""``cse-bridge forward`` and ``cse-bridge demo`` as processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import requests

from cse_bridge.client import EventsClient
from cse_bridge.gateway import GatewayThread

from .helpers import API_KEY

TOTAL = 300


def _forward(gateway: GatewayThread, token: str, out: Path, state: Path):
    env = dict(
        os.environ,
        COMPUTESDK_ACCESS_TOKEN=token,
        COMPUTESDK_API_KEY=API_KEY,
        COMPUTESDK_GATEWAY_URL=gateway.http_url,
        COMPUTESDK_PUBSUB_HOST=gateway.pubsub_host,
        COMPUTESDK_PUBSUB_PORT=str(gateway.pubsub_port),
    )
    return subprocess.Popen(
        [
            sys.executable, "-m", "cse_bridge", "forward", "--sandbox", "kill-sb",
            "--to", f"jsonl={out}", "--to", "jsonl", "--since", "0",
            "--state-file", str(state), "--checkpoint-interval", "0.05",
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip


class TestForwardKilled:
    """SIGKILL mid-stream, then a restart on the same state file."""

    def test_every_event_lands_exactly_once(
        self, gateway: GatewayThread, tmp_path: Path
    ) -> None:
        """The JSONL file ends with each of 300 events once, in order."""
        token = gateway.issue_token("kill-sb", 1)
        out, state = tmp_path / "events.jsonl", tmp_path / "state.json"
        ids: list[str] = []

        def produce() -> None:
            with EventsClient(gateway_url=gateway.http_url, access_token=token) as c:
                ids.extend(
                    c.store_event("custom", {"i": i}).event_id for i in range(TOTAL)
                )

        first = _forward(gateway, token, out, state)
        producer = threading.Thread(target=produce)
        producer.start()
        assert first.stdout is not None
        for _ in range(50):  # blocks on the forwarder's output: it is mid-stream
            first.stdout.readline()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        first.stdout.close()
        producer.join(30)
        second = _forward(gateway, token, out, state)
        assert second.stdout is not None
        for line in second.stdout:
            if json.loads(line)["id"] == ids[-1]:
                break
        second.send_signal(signal.SIGTERM)
        assert 0 == second.wait(10)
        second.stdout.close()
        written = [json.loads(line)["id"] for line in out.read_text().splitlines()]
        assert ids == written


class TestDemo:
    """``cse-bridge demo``."""

    def test_shows_the_round_trip_and_exits_zero(self) -> None:
        """It prints the sandbox's records as forwarded logging and a summary."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTESDK_")}
        result = subprocess.run(
            [sys.executable, "-m", "cse_bridge", "demo"],
            capture_output=True,
            text=True,
            timeout=40,
            env=env,
            check=False,
        )
        lines = result.stdout.splitlines()
        assert (0, True, True, True, True) == (
            result.returncode,
            any("sandbox.demo.app [demo-sandbox] sandbox started" in x for x in lines),
            any("KeyError: 'missing'" in x for x in lines),
            any("trace.span checkout" in x for x in lines),
            "8 came back through the forwarder" in result.stderr,
        )


class TestForwardTerminated:
    """SIGTERM: the sinks are flushed and the state file saved before the exit."""

    def test_sigterm_flushes_and_saves_and_serves_metrics(
        self, gateway: GatewayThread, tmp_path: Path
    ) -> None:
        """No checkpoint ran (interval 1 h): the state still names the last event."""
        from .cli.commands import Background, gateway_environ
        from .helpers import sample, scrape, wait_until

        token = gateway.issue_token("term-sb", 1)
        out, state = tmp_path / "events.jsonl", tmp_path / "state.json"
        # --since 0: /healthz answers once the forwarder runs, maybe before its
        # subscription is up; history first, so no event stored meanwhile is missed.
        forward = Background(
            "forward", "--sandbox", "term-sb", "--to", f"jsonl={out}",
            "--state-file", str(state), "--checkpoint-interval", "3600",
            "--metrics-port", "0", "--status", "never", "--since", "0",
            env=gateway_environ(gateway, "term-sb"),
            merged=True,
        )  # fmt: skip
        try:
            line = forward.wait_for(lambda text: "/metrics\n" in text)
            url = line.split("metrics on ", 1)[1].split()[0]
            health = url.replace("/metrics", "/healthz")
            wait_until(
                lambda: requests.get(health, timeout=5).status_code == 200,
                "the forwarder running",
            )
            with EventsClient(gateway_url=gateway.http_url, access_token=token) as c:
                ids = [c.store_event("custom", {"i": i}).event_id for i in range(5)]
            wait_until(
                lambda: (
                    sample(
                        scrape(url),
                        "cse_forwarder_events_delivered_total",
                        sink="jsonl",
                    )
                    == 5
                ),
                "5 events delivered",
            )
            assert not state.exists()  # no checkpoint yet: only the exit saves it
            code = forward.stop(signal.SIGTERM)
        finally:
            forward.kill()
        assert 0 == code, forward.out
        assert ids == [json.loads(line)["id"] for line in out.read_text().splitlines()]
        saved = json.loads(state.read_text())
        assert ids[-1] in json.dumps(saved)

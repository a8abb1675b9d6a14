"""The optional access log: one JSON line per request, never a credential."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path

import pytest
import requests

from cse_bridge import config as cfg
from cse_bridge.gateway import ACCESS_LOGGER, GatewayThread

from ..cli.commands import Background, environ, run
from ..conftest import make_gateway_config
from ..helpers import API_KEY, SECRET, wait_until


def lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    """The access log lines captured so far, decoded."""
    return [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == ACCESS_LOGGER
    ]


class TestAccessLog:
    """``GatewayConfig.access_log``."""

    def test_one_line_per_request(self, caplog: pytest.LogCaptureFixture) -> None:
        """A POST and a 404: two lines with method, path, status; no token."""
        caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
        with GatewayThread(make_gateway_config(access_log=True)) as gw:
            token = gw.issue_token("sb-log")
            answer = requests.post(
                f"{gw.http_url}/events?x=1",
                json={"type": "custom", "data": {}},
                headers={"Authorization": f"Bearer {token}", "User-Agent": "t/1"},
                timeout=10,
            )
            assert 200 == answer.status_code
            assert 404 == requests.get(f"{gw.http_url}/nope", timeout=10).status_code
        post, missing = lines(caplog)
        assert ("POST", "/events", "x=1", 200, "t/1") == (
            post["method"],
            post["path"],
            post["query"],
            post["status"],
            post["user_agent"],
        )
        assert len(answer.content) == post["bytes"]
        assert 0 <= post["duration_ms"] < 10_000
        assert ("GET", "/nope", 404) == (
            missing["method"],
            missing["path"],
            missing["status"],
        )
        assert token not in caplog.text

    def test_off_by_default(
        self, gateway: GatewayThread, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Without the option nothing is logged, even at INFO."""
        caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
        requests.get(f"{gateway.http_url}/healthz", timeout=10)
        assert [] == lines(caplog)


class TestGatewayCommandOptions:
    """``--access-log``, ``--drain-timeout`` and their environment variables."""

    def test_access_log_from_the_environment_goes_to_stdout(
        self, tmp_path: Path
    ) -> None:
        """CSE_GATEWAY_ACCESS_LOG=1: each request is a JSON line on stdout."""
        ready = tmp_path / "ready.json"
        gateway = Background(
            "gateway", "--port=0", "--pubsub-port=0", f"--secret={SECRET}",
            f"--api-key={API_KEY}=1", f"--ready-file={ready}",
            env=environ(**{cfg.ENV_GATEWAY_ACCESS_LOG: "1"}),
        )  # fmt: skip
        try:
            wait_until(ready.exists, "the ready file", timeout=20)
            url = json.loads(ready.read_text())["http"]
            assert 200 == requests.get(f"{url}/readyz", timeout=10).status_code
            out = gateway.wait_for(lambda text: '"path":"/readyz"' in text)
            assert 0 == gateway.stop(signal.SIGTERM)
        finally:
            gateway.kill()
        (line,) = [line for line in out.splitlines() if line.startswith("{")]
        assert (200, "GET") == (json.loads(line)["status"], json.loads(line)["method"])

    @pytest.mark.parametrize(
        ("env", "args", "expected"),
        [
            (
                {cfg.ENV_GATEWAY_ACCESS_LOG: "maybe"},
                [],
                f"{cfg.ENV_GATEWAY_ACCESS_LOG}: expected 1 or 0",
            ),
            (
                {cfg.ENV_GATEWAY_DRAIN_TIMEOUT: "soon"},
                [],
                f"{cfg.ENV_GATEWAY_DRAIN_TIMEOUT}: not a number: 'soon'",
            ),
            ({}, ["--drain-timeout", "-1"], "must be a non-negative number: -1"),
        ],
        ids=["access-log-env", "drain-env", "drain-flag"],
    )
    def test_bad_values_are_one_line_usage_errors(
        self, env: dict[str, str], args: list[str], expected: str
    ) -> None:
        """Exit 2 and one line naming the variable or flag; no traceback."""
        done = run("gateway", "--port=0", "--pubsub-port=0", *args, env=environ(**env))
        assert 2 == done.returncode
        assert expected in done.stderr
        assert "Traceback" not in done.stderr

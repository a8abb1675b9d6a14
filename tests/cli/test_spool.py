"""``cse-bridge spool status|flush|clear`` on spools real programs left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cse_bridge import config as cfg
from cse_bridge.gateway import GatewayThread

from ..engine.exits import run_program
from ..engine.servers import closed_port
from ..helpers import read_all_events
from .commands import environ, run

pytestmark = pytest.mark.usefixtures("clean_config_env")


def _left_behind(gateway: GatewayThread, spool: Path, sandbox: str, count: int) -> None:
    """A program whose gateway was down for its whole life spooled *count* records."""
    ended = run_program(
        "normal",
        count,
        f"http://127.0.0.1:{closed_port()}",
        gateway.issue_token(sandbox),
        env={"CSE_BRIDGE_SPOOL_DIR": str(spool)},
    )
    assert count == ended.spooled, ended


def _numbers(gateway: GatewayThread, sandbox: str) -> list[int]:
    events = read_all_events(gateway.http_url, sandbox)
    return sorted(e["data"]["attributes"]["i"] for e in events)


class TestSpoolCommand:
    """What waits, sending it, deleting it."""

    def test_status_flush_clear(self, gateway: GatewayThread, tmp_path: Path) -> None:
        """status names the count and sandboxes; flush sends one sandbox's with the
        token; clear deletes the rest."""
        _left_behind(gateway, tmp_path, "sb-cli-a", 100)
        _left_behind(gateway, tmp_path, "sb-cli-b", 50)
        env = environ(CSE_BRIDGE_SPOOL_DIR=str(tmp_path))
        done = run("spool", "status", env=env)
        assert (0, "") == (done.returncode, done.stderr)
        lines = done.stdout.splitlines()
        assert lines[0].startswith(f"{tmp_path}: 150 events in 2 segments, ")
        assert "oldest 20" in lines[0]
        assert ["  sb-cli-a  100", "  sb-cli-b  50"] == lines[1:]
        done = run("spool", "status", "--json", "--spool-dir", str(tmp_path))
        status = json.loads(done.stdout)
        assert (150, 2, {"sb-cli-a": 100, "sb-cli-b": 50}) == (
            status["events"],
            status["segments"],
            status["sandboxes"],
        )
        env[cfg.ENV_GATEWAY_URL] = gateway.http_url
        env[cfg.ENV_ACCESS_TOKEN] = gateway.issue_token("sb-cli-a")
        done = run("spool", "flush", env=env)
        assert (0, "") == (done.returncode, done.stderr)
        assert f"sent 100 events of sandbox sb-cli-a from {tmp_path}\n" == done.stdout
        assert list(range(100)) == _numbers(gateway, "sb-cli-a")
        assert [] == read_all_events(gateway.http_url, "sb-cli-b")
        done = run("spool", "clear", env=env)
        assert f"deleted 50 events in 1 segments from {tmp_path}\n" == done.stdout
        done = run("spool", "status", env=env)
        assert f"{tmp_path}: nothing waits\n" == done.stdout

    def test_flush_another_sandbox_with_the_token(
        self, gateway: GatewayThread, tmp_path: Path
    ) -> None:
        """--sandbox sends that sandbox's records with the given token."""
        _left_behind(gateway, tmp_path, "sb-cli-old", 30)
        token = gateway.issue_token("sb-cli-new")
        done = run(
            "spool",
            "flush",
            "--sandbox",
            "sb-cli-old",
            "--token",
            token,
            "--gateway-url",
            gateway.http_url,
            "--spool-dir",
            str(tmp_path),
        )
        assert (0, "") == (done.returncode, done.stderr)
        assert list(range(30)) == _numbers(gateway, "sb-cli-new")

    def test_flush_with_the_gateway_down(
        self, gateway: GatewayThread, tmp_path: Path
    ) -> None:
        """A gateway that does not answer: one line, exit 1, nothing lost."""
        _left_behind(gateway, tmp_path, "sb-cli-down", 20)
        done = run(
            "spool",
            "flush",
            "--spool-dir",
            str(tmp_path),
            "--token",
            gateway.issue_token("sb-cli-down"),
            "--gateway-url",
            f"http://127.0.0.1:{closed_port()}",
        )
        assert (1, "") == (done.returncode, done.stdout)
        assert 1 == len(done.stderr.splitlines()), done.stderr
        assert done.stderr.startswith("cse-bridge spool flush: cannot send (")
        assert "sent 0 events of sandbox sb-cli-down" in done.stderr
        assert "20 still waiting" in done.stderr
        status = run("spool", "status", "--json", "--spool-dir", str(tmp_path))
        assert 20 == json.loads(status.stdout)["events"]

    @pytest.mark.parametrize(
        ("args", "said"),
        [
            (
                ("status",),
                "no spool directory: give --spool-dir or set CSE_BRIDGE_SPOOL_DIR",
            ),
            (("status", "--spool-dir", "/nonexistent/x"), "no spool directory at"),
            (("flush", "--spool-dir", "."), "an access token is required"),
            (
                ("flush", "--spool-dir", ".", "--token", "garbage"),
                "the access token names no sandbox",
            ),
        ],
    )
    def test_mistakes(self, args: tuple[str, ...], said: str) -> None:
        """A mistake is one line and exit 2, naming the fix."""
        done = run("spool", *args)
        assert 2 == done.returncode
        assert 1 == len(done.stderr.splitlines()), done.stderr
        assert said in done.stderr

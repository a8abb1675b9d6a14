"""cse_bridge.testing: a local gateway for users' tests, and the pytest plugin."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cse_bridge import testing
from cse_bridge.engine import FakeClock, InMemorySink
from cse_bridge.integrations.logging import EventsHandler


class TestLocalGateway:
    """``LocalGateway``."""

    def test_reads_what_a_handler_shipped(self) -> None:
        """Events shipped with its URL and token come back from ``read_events``."""
        with testing.LocalGateway("sbx-1") as gateway:
            handler = EventsHandler(
                gateway_url=gateway.http_url, access_token=gateway.access_token
            )
            logger = logging.getLogger("test_testing.reads")
            logger.addHandler(handler)
            try:
                logger.warning("hello")
            finally:
                logger.removeHandler(handler)
                handler.close()
            (event,) = gateway.read_events(type="log.warning")
        assert ("sbx-1", "hello") == (event.sandbox_id, event.data["message"])

    def test_not_running(self) -> None:
        """Before ``start`` there is no URL."""
        with pytest.raises(RuntimeError, match="not running"):
            _ = testing.LocalGateway().http_url

    def test_other_sandbox_token(self) -> None:
        """``token_for`` issues tokens of other sandboxes of the workspace."""
        with testing.LocalGateway() as gateway:
            token = gateway.token_for("sbx-2")
        assert token != gateway.access_token


class TestCaptureEvents:
    """``capture_events``."""

    def test_environment_is_set_and_restored(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """COMPUTESDK_* point at the gateway inside the block and are restored after."""
        monkeypatch.setenv("COMPUTESDK_GATEWAY_URL", "http://before")
        monkeypatch.delenv("COMPUTESDK_ACCESS_TOKEN", raising=False)
        with testing.capture_events() as gateway:
            inside = (
                os.environ["COMPUTESDK_GATEWAY_URL"],
                os.environ["COMPUTESDK_ACCESS_TOKEN"],
            )
            assert (gateway.http_url, gateway.access_token) == inside
        assert "http://before" == os.environ["COMPUTESDK_GATEWAY_URL"]
        assert "COMPUTESDK_ACCESS_TOKEN" not in os.environ

    def test_reexports(self) -> None:
        """The engine's test doubles are available from ``cse_bridge.testing``."""
        assert (InMemorySink, FakeClock) == (testing.InMemorySink, testing.FakeClock)


class TestPytestPlugin:
    """``pytest_plugins = ["cse_bridge.testing"]``."""

    def test_fixture_in_a_users_suite(self, tmp_path: Path) -> None:
        """A user's test using the ``cse_gateway`` fixture passes as documented."""
        (tmp_path / "conftest.py").write_text(
            'pytest_plugins = ["cse_bridge.testing"]\n'
        )
        (tmp_path / "test_user.py").write_text(
            textwrap.dedent(
                """
                import logging
                from cse_bridge.integrations.logging import EventsHandler

                def test_login_is_logged(cse_gateway):
                    handler = EventsHandler()
                    logger = logging.getLogger("app")
                    logger.addHandler(handler)
                    logger.warning("login failed", extra={"user": "ann"})
                    (event,) = cse_gateway.read_events(type="log.warning")
                    logger.removeHandler(handler)
                    assert event.data["attributes"] == {"user": "ann"}
                """
            )
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=50,
            check=False,
            cwd=tmp_path,
        )
        assert 0 == done.returncode, done.stdout + done.stderr
        assert "1 passed" in done.stdout

"""The examples and a shell with a gateway's ``export`` lines pasted into it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cse_bridge import config as cfg
from cse_bridge.client import EventsClient
from cse_bridge.gateway import GatewayThread

from .helpers import API_KEY, EXAMPLES, read_all_events, run_example

EXAMPLE_NAMES = [
    "store_and_read.py",
    "logging_handler.py",
    "dictconfig.py",
    "structlog_setup.py",
    "otel_pipeline.py",
    "subscribe.py",
    "forward_to_logging.py",
    "forward_to_otlp.py",
]


def pasted(gateway: GatewayThread) -> dict[str, str]:
    """What ``cse-bridge gateway`` tells a user to paste, for sandbox-1."""
    return {
        cfg.ENV_GATEWAY_URL: gateway.http_url,
        cfg.ENV_PUBSUB_HOST: gateway.pubsub_host,
        cfg.ENV_PUBSUB_PORT: str(gateway.pubsub_port),
        cfg.ENV_ACCESS_TOKEN: gateway.issue_token("sandbox-1"),
        cfg.ENV_API_KEY: API_KEY,
        "SANDBOX_ID": "sandbox-1",
    }


class TestPastedExports:
    """Examples use their embedded gateway unless told ``--use-env``."""

    @pytest.mark.parametrize("name", EXAMPLE_NAMES)
    def test_embedded_gateway_by_default(
        self, gateway: GatewayThread, name: str
    ) -> None:
        """The example finishes on its own gateway; the pasted one gets nothing."""
        run_example(name, **pasted(gateway))
        assert [] == read_all_events(gateway.http_url, "sandbox-1")

    def test_use_env_writes_where_it_says(self, gateway: GatewayThread) -> None:
        """``--use-env`` stores into the pasted sandbox and names it on stderr."""
        done = run_example("store_and_read.py", "--use-env", **pasted(gateway))
        expected = f"--use-env: sandbox sandbox-1 on {gateway.http_url}\n"
        assert (expected, 3) == (
            done.stderr,
            len(read_all_events(gateway.http_url, "sandbox-1")),
        )

    def test_subscribe_says_what_it_follows(self, gateway: GatewayThread) -> None:
        """``subscribe.py --use-env`` says what it waits for, then prints the event."""
        env = {**os.environ, **pasted(gateway)}
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "subscribe.py"), "1", "--use-env"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stderr is not None
            said = proc.stderr.readline()  # blocks until the subscription is made
            token = gateway.issue_token("sandbox-1")
            with EventsClient(gateway_url=gateway.http_url, access_token=token) as c:
                c.store_event("custom", {"n": 1})
            out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert (
            0,
            "--use-env: following sandbox-1 on 127.0.0.1; waiting for 1 events: "
            "store some with `cse-bridge send TYPE`\n",
            "custom {'n': 1}\n",
        ) == (proc.returncode, said, out)

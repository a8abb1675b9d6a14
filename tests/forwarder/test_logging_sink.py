"""LoggingSink end to end: a sandbox process's records come back as local records."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from cse_bridge.client import EventsClient
from cse_bridge.forwarder import FORWARDED_ATTR, Forwarder, LoggingSink
from cse_bridge.gateway import GatewayThread
from cse_bridge.integrations.logging import EventsHandler

from ..helpers import API_KEY
from .conftest import Capture

EMIT = Path(__file__).with_name("emit_logs.py")


def _view(record: logging.LogRecord) -> dict:
    return {
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
        "created": round(record.created, 6),
        "excText": record.exc_text,
        "attributes": {
            k: v for k, v in vars(record).items() if k in {"percent", "tags", "user"}
        },
    }


class TestLoggingSinkRoundTrip:
    """EventsHandler in a subprocess -> gateway -> forwarder -> local logging."""

    def test_records_come_back_equal(
        self, gateway: GatewayThread, options: dict, capture: Capture
    ) -> None:
        """Level, prefixed logger, message, time, exception text and extras match."""
        token = gateway.issue_token("logs-sb", 1)
        env = dict(
            os.environ,
            COMPUTESDK_GATEWAY_URL=gateway.http_url,
            COMPUTESDK_ACCESS_TOKEN=token,
            CSE_BRIDGE_SCHEDULE_DELAY="0.01",
        )
        with Forwarder([LoggingSink()], tokens={"logs-sb": token}, since=0, **options):
            out = subprocess.run(
                [sys.executable, str(EMIT)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            sent = [json.loads(line) for line in out.stdout.splitlines()]
            records = capture.wait(len(sent))
        expected = [
            dict(s, logger="sandbox." + s["logger"], created=round(s["created"], 6))
            for s in sent
        ]
        assert expected == [_view(r) for r in records]
        assert ["logs-sb"] * 4 == [r.sandboxId for r in records]

    def test_other_events_become_info_records(
        self, gateway: GatewayThread, options: dict, capture: Capture
    ) -> None:
        """An execution.completed event is an INFO record of sandbox.events."""
        token = gateway.issue_token("exec-sb", 1)
        with Forwarder([LoggingSink()], tokens={"exec-sb": token}, **options):
            with EventsClient(gateway_url=gateway.http_url, access_token=token) as c:
                stored = c.store_event("execution.completed", {"exitCode": 0})
            (record,) = capture.wait(1)
        assert (
            "sandbox.events",
            logging.INFO,
            'execution.completed {"exitCode": 0}',
            stored.event_id,
            {"exitCode": 0},
        ) == (
            record.name,
            record.levelno,
            record.getMessage(),
            record.eventId,
            record.eventData,
        )

    def test_log_batch_is_unpacked(
        self, gateway: GatewayThread, options: dict, capture: Capture
    ) -> None:
        """Each record of a log.batch event becomes its own record, in order."""
        token = gateway.issue_token("batch-sb", 1)
        batch = {
            "records": [
                {"type": "log.info", "data": {"message": "one", "logger": "a"}},
                {"type": "log.error", "data": {"message": "two", "logger": "b"}},
            ]
        }
        with Forwarder([LoggingSink()], tokens={"batch-sb": token}, **options):
            with EventsClient(gateway_url=gateway.http_url, access_token=token) as c:
                c.store_event("log.batch", batch)
            records = capture.wait(2)
        assert [("sandbox.a", "one"), ("sandbox.b", "two")] == [
            (r.name, r.getMessage()) for r in records
        ]


class TestNoEcho:
    """A process that both ships its logs and forwards its own sandbox's stream."""

    def test_re_emitted_records_are_not_shipped_back(
        self, gateway: GatewayThread, options: dict, capture: Capture
    ) -> None:
        """The root EventsHandler sees the re-emitted record but does not ship it."""
        token = gateway.issue_token("echo-sb", 1)
        handler = EventsHandler(
            gateway_url=gateway.http_url, access_token=token, own_engine=True
        )
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            with Forwarder([LoggingSink()], tokens={"echo-sb": token}, **options):
                logging.getLogger("app").warning("only once")
                handler.flush()
                (record,) = capture.wait(1)
                handler.flush()
        finally:
            root.removeHandler(handler)
            handler.close()
        with EventsClient(gateway_url=gateway.http_url, api_key=API_KEY) as client:
            shipped = [e.data["logger"] for e in client.iter_events("echo-sb")]
        assert (["app"], True) == (shipped, getattr(record, FORWARDED_ATTR))

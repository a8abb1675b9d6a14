"""
Forward a sandbox's spans and logs to an OTLP endpoint (Collector, Jaeger, Grafana...).

The endpoint is OTEL_EXPORTER_OTLP_ENDPOINT (HTTP/protobuf unless
OTEL_EXPORTER_OTLP_PROTOCOL says grpc). Without it the script starts the rotel
collector (``pip install rotel``) on free ports and prints what rotel received; without
rotel either, it sends to http://127.0.0.1:4318. The gateway is an embedded local
one; with ``--use-env``, the one COMPUTESDK_* name (said on stderr). The "sandbox" is
this same process: it traces through EventsSpanExporter and logs through EventsHandler.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from cse_bridge.forwarder import Forwarder
from cse_bridge.forwarder.otlp import OtlpSink
from cse_bridge.integrations.logging import EventsHandler
from cse_bridge.integrations.otel import EventsSpanExporter
from cse_bridge.models import SandboxEvent
from cse_bridge.subscriber import sandbox_from_token

EVENTS = 4  # two spans and two log records, one event each
DEFAULT_ENDPOINT = "http://127.0.0.1:4318"


class Countdown:
    """A sink that sets ``done`` after *count* events: the script's finish line."""

    name = "countdown"

    def __init__(self, count: int) -> None:
        self.count, self.done = count, threading.Event()

    def deliver(self, event: SandboxEvent) -> None:
        self.count -= 1  # only the forwarder's sink thread calls this
        if self.count == 0:
            self.done.set()

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        pass

    def drops(self) -> Mapping[str, int]:
        return {}


def _echo(lines: Iterable[str]) -> None:
    for line in lines:
        print(f"rotel | {line}", end="")


def _with_libpython() -> str:
    """LD_LIBRARY_PATH with this Python's LIBDIR: rotel-agent links libpython."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    rest = os.environ.get("LD_LIBRARY_PATH", "")
    return os.pathsep.join(part for part in (libdir, rest) if part)


def start_rotel(stack: ExitStack) -> str | None:
    """Start rotel on free ports, echoing its debug log; return its URL, or None."""
    try:
        import rotel
    except ImportError:
        return None
    ports: list[int] = []
    for _ in range(2):  # free a moment ago: good enough for an example
        with socket.create_server(("127.0.0.1", 0)) as probe:
            ports.append(probe.getsockname()[1])
    agent = subprocess.Popen(  # noqa: S603 - the installed rotel package's binary
        [
            Path(rotel.__file__).parent / "rotel-agent", "start",
            "--exporter", "blackhole", "--debug-log-verbosity", "detailed",
            "--debug-log", "traces", "--debug-log", "logs",
            "--otlp-http-endpoint", f"127.0.0.1:{ports[0]}",
            "--otlp-grpc-endpoint", f"127.0.0.1:{ports[1]}",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, NO_COLOR="1", LD_LIBRARY_PATH=_with_libpython()),
    )  # fmt: skip
    output = agent.stdout or ()
    for line in output:  # "Starting Rotel" once it listens
        _echo([line])
        if "Starting Rotel" in line:
            break
    echo = threading.Thread(target=_echo, args=(output,))
    echo.start()
    stack.callback(echo.join)  # after rotel exited: its last lines are printed
    stack.callback(agent.wait)
    stack.callback(agent.terminate)
    return f"http://127.0.0.1:{ports[0]}"


def run_sandbox() -> None:
    """Trace and log like an application in a sandbox; send it all now."""
    log = logging.getLogger("shop")
    log.setLevel(logging.INFO)
    shipper = EventsHandler(service_name="shop")  # COMPUTESDK_* from the environment
    log.addHandler(shipper)
    provider = TracerProvider(resource=Resource({"service.name": "shop"}))
    # The exporter only enqueues (the engine batches): SimpleSpanProcessor suffices.
    provider.add_span_processor(SimpleSpanProcessor(EventsSpanExporter()))
    tracer = provider.get_tracer("shop.checkout")
    with tracer.start_as_current_span("checkout", attributes={"cart.items": 3}):
        with tracer.start_as_current_span("charge card"):
            log.info("charged %s", "card", extra={"amount": 42.5})  # trace ids ride
        try:
            prices: dict[str, float] = {}
            print(prices["missing"])  # raises: a real exception to log
        except KeyError:
            log.exception("receipt failed")
    shipper.flush()  # send now rather than after the engine's batch wait
    provider.shutdown()


def main() -> int:
    """Follow the sandbox into OTLP, run it; 0 once the endpoint accepted it all."""
    with ExitStack() as stack:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or start_rotel(stack)
        if endpoint is None:
            endpoint = DEFAULT_ENDPOINT
            print(
                f"no OTEL_EXPORTER_OTLP_ENDPOINT and no rotel: sending to {endpoint}; "
                "run a collector there (docker run -p 4318:4318 "
                "otel/opentelemetry-collector) or pip install rotel"
            )
        token = os.environ.get("COMPUTESDK_ACCESS_TOKEN", "")
        if "--use-env" in sys.argv[1:]:
            sandbox_id = sandbox_from_token(token) or os.environ["SANDBOX_ID"]
            host, port = None, None  # COMPUTESDK_PUBSUB_HOST / _PORT
            print(f"--use-env: sandbox {sandbox_id} (COMPUTESDK_*)", file=sys.stderr)
        else:
            from cse_bridge.testing import capture_events

            # Points COMPUTESDK_* at the local gateway, as a sandbox would have them.
            gateway = stack.enter_context(capture_events("shop-sandbox"))
            sandbox_id = gateway.sandbox_id
            host, port = gateway.pubsub_host, gateway.pubsub_port

        otlp, countdown = (
            OtlpSink(endpoint, schedule_delay_millis=50),
            Countdown(EVENTS),
        )
        forwarder = Forwarder(
            [otlp, countdown], sandboxes=[sandbox_id], host=host, port=port
        )
        stack.enter_context(forwarder)  # subscribed before the sandbox runs
        run_sandbox()
        # Countdown comes after the OTLP sink, so done means otlp has them all; flush
        # then waits until the endpoint accepted them.
        if not (countdown.done.wait(10.0) and forwarder.flush(10.0)):
            print(f"not everything reached {endpoint}: {forwarder.stats()}")
            return 1
        print(f"{otlp.exported} spans and log records from {sandbox_id} at {endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

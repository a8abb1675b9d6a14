"""
The fault matrix: every ending of a process against every state of the gateway.

Each cell runs a real program that logs through ``EventsHandler`` and ends its way,
against a real server in that state, and checks the conservation law: the events
the gateway stored, plus those the exit lines say were spooled, plus those they
report lost, equal those emitted; the exit status is the program's own, and the exit
(from the ending's start) takes the budget at most, plus a margin.
The six endings of one gateway state run in parallel to keep the suite fast.

The spool cells run the same endings with a spool directory, then replay it with a
next engine against the real gateway: every event not reported lost arrives, once.

Set ``CSE_BRIDGE_MATRIX_OUT`` to a file to get the matrix as a Markdown table.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import trustme

from cse_bridge.engine import BatchEngine, EventItem, EventsSink
from cse_bridge.gateway import GatewayThread

from ..helpers import wait_until
from .conftest import read_events
from .exits import EXPECTED_STATUS, Ended, run_program
from .servers import AnsweringServer, closed_port

ENDINGS = ("normal", "sys.exit", "raise", "sigterm", "pool", "os._exit")
STATES = ("up", "refusing", "hanging", "bad certificate", "429 Retry-After: 0", "500")
BUDGET = 1.0
"""The exit budget the cells of a failing gateway run with (CSE_BRIDGE_EXIT_TIMEOUT)."""
UP_BUDGET = 5.0
"""The budget against a gateway that is up: room to deliver everything on a loaded
machine (the gateway shares this process). A send still in flight when a budget ends
is counted as not delivered, though the gateway may have stored it: such a cell would
count some events twice."""
MARGIN = 1.0
"""Seconds past the budget an exit may take: finalising the interpreter, a loaded
machine (six programs run at once)."""
EMITTED = {"pool": 600}
"""Records each ending emits (the Pool's three workers share six parts of 100)."""
DEFAULT_EMITTED = 300
SPOOL_STATES = ("up", "refusing", "hanging")
CONNECTIONS = 16
"""Requests in flight at once (the default): the most a cut-short send can repeat."""


@contextlib.contextmanager
def _gateway_in(state: str, gateway: GatewayThread) -> Iterator[str]:
    """Yield the URL of a gateway in *state*."""
    if state == "up":
        yield gateway.http_url
    elif state == "refusing":
        yield f"http://127.0.0.1:{closed_port()}"
    elif state == "bad certificate":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
        with AnsweringServer(tls=context) as server:
            yield server.url
    else:
        server = {
            "hanging": lambda: AnsweringServer(hang=True),
            "429 Retry-After: 0": lambda: AnsweringServer(429, {"Retry-After": "0"}),
            "500": lambda: AnsweringServer(500, body=b"broken"),
        }[state]()
        with server:
            yield server.url


def _sandbox(ending: str, state: str, spool: Path | None) -> str:
    sandbox = f"sb-matrix-{ending}-{state}".replace(" ", "-").replace(":", "")
    sandbox = sandbox.replace(".", "").replace("_", "")
    return sandbox + ("-spool" if spool else "")


def _run_cell(
    ending: str,
    state: str,
    url: str,
    gateway: GatewayThread,
    spool: Path | None = None,
) -> tuple[Ended, int, int]:
    sandbox = _sandbox(ending, state, spool)
    token = gateway.issue_token(sandbox)
    emitted = EMITTED.get(ending, DEFAULT_EMITTED)
    # No CA of the shell's: the test CA's certificate must not verify.
    env = {"SSL_CERT_FILE": "", "REQUESTS_CA_BUNDLE": "", "SETTLE": "0.05"}
    if spool is not None:
        env["CSE_BRIDGE_SPOOL_DIR"] = str(spool / sandbox)
    ended = run_program(ending, emitted, url, token, budget=_budget(state), env=env)
    delivered = len(read_events(gateway, sandbox)) if state == "up" else 0
    return ended, emitted, delivered


def _budget(state: str) -> float:
    return UP_BUDGET if state == "up" else BUDGET


def _table_row(state: str, cells: dict[str, tuple[Ended, int, int]]) -> str:
    parts = []
    for ending in ENDINGS:
        ended, emitted, delivered = cells[ending]
        parts.append(
            f"{delivered}+{ended.reported}/{emitted}, "
            f"{ended.status}, {ended.ending:.2f} s"
        )
    return f"| {state} | " + " | ".join(parts) + " |"


@pytest.mark.parametrize("state", STATES)
def test_delivered_plus_reported_is_emitted(gateway: GatewayThread, state: str) -> None:
    """Every ending against *state*: delivered + reported == emitted, status, time."""
    with (
        _gateway_in(state, gateway) as url,
        ThreadPoolExecutor(len(ENDINGS)) as pool,
    ):
        futures = {
            ending: pool.submit(_run_cell, ending, state, url, gateway)
            for ending in ENDINGS
        }
        cells = {ending: future.result() for ending, future in futures.items()}
    out = os.environ.get("CSE_BRIDGE_MATRIX_OUT")
    if out:
        with Path(out).open("a", encoding="utf-8") as table:
            table.write(_table_row(state, cells) + "\n")
    for ending, (ended, emitted, delivered) in cells.items():
        where = f"{ending} x {state}: {ended}"
        if ending == "os._exit":
            # os._exit skips every exit hook by definition: the program's only
            # news is flush()'s answer (status 9 when it returned False) and the
            # drops the engine counted (a 500 drops each event after three tries,
            # which may all happen within the flush).
            if ended.status == 0:
                counted = delivered + ended.dropped_before_os_exit
                assert (emitted, 0) == (counted, ended.reported), where
            else:
                assert (9, 0) == (ended.status, delivered), where
        else:
            assert EXPECTED_STATUS[ending] == ended.status, where
            assert emitted == delivered + ended.spooled + ended.reported, where
        if state == "up":  # nothing lost, nothing said (a traceback is the app's)
            assert "cse-bridge:" not in ended.stderr, where
        assert ended.ending < _budget(state) + MARGIN, where


def _replay(gateway: GatewayThread, sandbox: str, spool: Path) -> BatchEngine:
    """The next program: an engine of the same sandbox and spool, until it is empty."""
    sink = EventsSink(gateway.http_url, gateway.issue_token(sandbox))
    engine = BatchEngine(sink, spool_dir=str(spool), handle_sigterm=False)
    engine.submit(EventItem("custom", {"next": True}))  # starts the worker
    assert wait_until(
        lambda: not list(spool.glob("*.seg")),
        'not list(spool.glob("*.seg"))',
        timeout=20,
    ), sandbox
    engine.shutdown(1.0)
    return engine


@pytest.mark.parametrize("state", SPOOL_STATES)
def test_delivered_plus_spooled_plus_reported_is_emitted(
    gateway: GatewayThread, state: str, tmp_path: Path
) -> None:
    """With a spool: nothing is reported lost, delivered + spooled covers what was
    emitted, and a replay brings every record to the gateway; status and exit time
    as without a spool."""
    with (
        _gateway_in(state, gateway) as url,
        ThreadPoolExecutor(len(ENDINGS)) as pool,
    ):
        futures = {
            ending: pool.submit(_run_cell, ending, state, url, gateway, tmp_path)
            for ending in ENDINGS
        }
        cells = {ending: future.result() for ending, future in futures.items()}
    for ending, (ended, emitted, delivered) in cells.items():
        where = f"{ending} x {state} with a spool: {ended}"
        if ending == "os._exit":
            if ended.status == 0:  # as without a spool
                counted = delivered + ended.dropped_before_os_exit
                assert (emitted, 0) == (counted, ended.reported), where
            else:
                assert (9, 0, 0) == (ended.status, delivered, ended.spooled), where
            continue
        assert EXPECTED_STATUS[ending] == ended.status, where
        assert ended.ending < _budget(state) + MARGIN, where
        assert 0 == ended.reported, where  # a spool takes what the budget cannot
        if "cse-bridge:" not in ended.stderr:  # nothing to say: all delivered
            assert (emitted, 0) == (delivered, ended.spooled), where
        else:
            # At least once: a send cut short at the drain deadline may have been
            # stored although its answer never came.
            assert emitted <= delivered + ended.spooled, where
        sandbox = _sandbox(ending, state, tmp_path)
        _replay(gateway, sandbox, tmp_path / sandbox)
        numbers = [
            (event["data"]["process"]["pid"], event["data"]["attributes"]["i"])
            for event in read_events(gateway, sandbox)
            if event["type"].startswith("log.")
        ]
        assert emitted == len(set(numbers)), where  # every record arrived
        processes = len({pid for pid, _ in numbers})
        duplicates = len(numbers) - len(set(numbers))
        assert duplicates <= CONNECTIONS * processes, where  # at most those in flight

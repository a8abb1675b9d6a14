"""The durable spool against the real gateway, real files and real processes."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cse_bridge.engine import BatchEngine, EventItem, EventsSink, Spool
from cse_bridge.engine._spool._format import FRAME_HEAD, parse_header
from cse_bridge.engine._spool._reader import SegmentReader
from cse_bridge.gateway import GatewayThread

from ..helpers import wait_until
from .conftest import EngineFactory, read_events
from .exits import SPOOL_LINE, run_program
from .fault_proxy import Fault, FaultProxy
from .servers import closed_port

WAIT = 20.0
"""Seconds a test waits at most for what another thread or process does."""


def _numbers(events: list[dict[str, Any]], key: str = "i") -> list[int]:
    """The numbers of the spooled test items among *events*, in arrival order."""
    return [e["data"][key] for e in events if key in e["data"]]


def _segments(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.seg"))


def _spool_offline(
    make_engine: EngineFactory, spool: Path, token: str, count: int, **options: Any
) -> BatchEngine:
    """An engine whose gateway refuses connections: *count* items go to disk."""
    sink = EventsSink(f"http://127.0.0.1:{closed_port()}", token)
    options.setdefault("spool_after", 0.0)
    engine = make_engine(sink, spool_dir=str(spool), handle_sigterm=False, **options)
    for index in range(count):
        engine.submit(EventItem("log.info", {"message": f"record {index}", "i": index}))
    assert engine.flush(WAIT)  # resolved: written to the spool
    engine.shutdown(1.0)
    return engine


def _replay(
    make_engine: EngineFactory, gateway: GatewayThread, spool: Path, sandbox: str
) -> BatchEngine:
    """The next program: an engine of *sandbox* replays until no segment of it is
    left, then shuts down."""
    sink = EventsSink(gateway.http_url, gateway.issue_token(sandbox))
    engine = make_engine(sink, spool_dir=str(spool), handle_sigterm=False)
    engine.submit(EventItem("custom", {"next": True}))  # the worker starts
    mine = Spool(str(spool), 1 << 30).names(sandbox)
    assert wait_until(
        lambda: not any(os.path.exists(p) for p in mine),
        "not any(os.path.exists(p) for p in mine)",
        timeout=WAIT,
    )
    engine.shutdown(1.0)
    return engine


class TestNextProgram:
    """What one program could not send, the next one of its sandbox sends, once."""

    def test_gateway_down_for_a_whole_program(
        self, gateway: GatewayThread, make_engine: EngineFactory, tmp_path: Path
    ) -> None:
        """Gateway down for two programs' lives (one ends by SIGTERM), up for the
        next: every record arrives once, the oldest program's first."""
        token = gateway.issue_token("sb-next")
        down = f"http://127.0.0.1:{closed_port()}"
        env = {"CSE_BRIDGE_SPOOL_DIR": str(tmp_path)}
        ended = run_program("normal", 300, down, token, env=env)
        assert 0 == ended.status, ended
        lines = [m for x in ended.stderr.splitlines() if (m := SPOOL_LINE.match(x))]
        assert [("300", str(tmp_path), "exit: 300")] == [m.groups() for m in lines]
        assert 0 == ended.reported
        later = run_program("sigterm", 100, down, token, env=env)
        assert (-signal.SIGTERM, 100) == (later.status, later.spooled), later
        assert [] == read_events(gateway, "sb-next")
        engine = _replay(make_engine, gateway, tmp_path, "sb-next")
        events = read_events(gateway, "sb-next")
        by_pid: dict[int, list[dict[str, Any]]] = {}
        for event in events:
            if event["type"] == "log.info":
                by_pid.setdefault(event["data"]["process"]["pid"], []).append(event)
        first, second = sorted(by_pid.values(), key=len, reverse=True)
        assert list(range(300)) == sorted(e["data"]["attributes"]["i"] for e in first)
        assert list(range(100)) == sorted(e["data"]["attributes"]["i"] for e in second)
        # Oldest first: the first program's records all before the second's.
        assert max(e["timestamp"] for e in first) < min(e["timestamp"] for e in second)
        assert 1 == sum(1 for e in events if e["type"] == "custom")
        assert 400 == engine.stats().spool_replayed
        assert [] == _segments(tmp_path)

    def test_another_sandbox_waits_for_its_token(
        self, gateway: GatewayThread, make_engine: EngineFactory, tmp_path: Path
    ) -> None:
        """An engine replays its own sandbox's segments only; the others stay."""
        _spool_offline(make_engine, tmp_path, gateway.issue_token("sb-a"), 20)
        _spool_offline(make_engine, tmp_path, gateway.issue_token("sb-b"), 30)
        _replay(make_engine, gateway, tmp_path, "sb-a")
        assert list(range(20)) == sorted(_numbers(read_events(gateway, "sb-a")))
        assert [] == read_events(gateway, "sb-b")
        status = Spool(str(tmp_path), 1 << 30).status()
        assert ({"sb-b": 30}, 30) == (dict(status.sandboxes), status.events)
        _replay(make_engine, gateway, tmp_path, "sb-b")
        assert list(range(30)) == sorted(_numbers(read_events(gateway, "sb-b")))


class TestExit:
    """At exit, what a failing gateway cannot take goes to disk at once."""

    @pytest.mark.parametrize("ending", ["normal", "sigterm"])
    def test_a_large_backlog_is_spooled_whole(
        self, gateway: GatewayThread, tmp_path: Path, ending: str
    ) -> None:
        """10 000 records, a refusing gateway, a 2 s budget: all on disk before the
        drain deadline (1.5 s) that retrying would have waited for."""
        ended = run_program(
            ending,
            10000,
            f"http://127.0.0.1:{closed_port()}",
            gateway.issue_token("sb-exit"),
            budget=2.0,
            env={"CSE_BRIDGE_SPOOL_DIR": str(tmp_path)},
        )
        assert (10000, 0) == (ended.spooled, ended.reported), ended
        assert ended.ending < 1.5, ended
        assert 10000 == Spool(str(tmp_path), 1 << 30).status().events


def _answer_503_while(down: threading.Event) -> Any:
    def rule(number: int, body: bytes) -> Fault | None:
        return (503, {}) if down.is_set() else None

    return rule


class TestOutage:
    """A gateway that stops answering: the backlog goes to disk, then comes back."""

    def test_outage_spools_and_the_same_engine_replays(
        self, gateway: GatewayThread, make_engine: EngineFactory, tmp_path: Path
    ) -> None:
        """Past spool_after the queue goes to disk; when the gateway is back, it is
        sent from there, each event once."""
        down = threading.Event()
        down.set()
        with FaultProxy(gateway.http_url, _answer_503_while(down)) as proxy:
            sink = EventsSink(proxy.url, gateway.issue_token("sb-outage"))
            engine = make_engine(
                sink, spool_dir=str(tmp_path), spool_after=0.2, handle_sigterm=False
            )
            for index in range(200):
                engine.submit(EventItem("log.info", {"i": index}))
            assert wait_until(
                lambda: 200 == engine.stats().spooled,
                "200 == engine.stats().spooled",
                timeout=WAIT,
            )
            assert {"outage": 200} == engine.stats().spooled_by
            assert 0 == engine.stats().queue_depth + engine.stats().in_flight
            assert _segments(tmp_path)
            down.clear()
            assert wait_until(
                lambda: [] == _segments(tmp_path),
                "[] == _segments(tmp_path)",
                timeout=WAIT,
            )
            stats = engine.stats()
        assert list(range(200)) == sorted(_numbers(read_events(gateway, "sb-outage")))
        assert (0, 200, 200, {}) == (
            stats.sent,
            stats.spooled,
            stats.spool_replayed,
            stats.dropped,
        )


class TestOverflow:
    """A full memory queue spools its oldest records instead of dropping them."""

    def test_full_queue_spools_oldest(
        self, gateway: GatewayThread, make_engine: EngineFactory, tmp_path: Path
    ) -> None:
        """delivered + spooled + dropped == queued; all spooled arrive, once."""
        down = threading.Event()
        down.set()
        with FaultProxy(gateway.http_url, _answer_503_while(down)) as proxy:
            sink = EventsSink(proxy.url, gateway.issue_token("sb-overflow"))
            engine = make_engine(
                sink,
                spool_dir=str(tmp_path),
                spool_after=60.0,  # no outage spooling: only the overflow
                max_queue_size=256,  # a spill of 32 items: bursts of 25 fit
                handle_sigterm=False,
            )
            for burst in range(40):
                for index in range(burst * 25, burst * 25 + 25):
                    engine.submit(EventItem("log.info", {"i": index}))
                assert wait_until(
                    lambda: not engine.spill, "not engine.spill", timeout=WAIT
                )
            before = engine.stats()
            assert before.spooled_by.get("overflow", 0) >= 400, before
            down.clear()
            assert engine.flush(WAIT)
            assert wait_until(
                lambda: [] == _segments(tmp_path),
                "[] == _segments(tmp_path)",
                timeout=WAIT,
            )
            stats = engine.stats()
        dropped = sum(stats.dropped.values())
        assert 1000 == stats.sent + stats.spooled + dropped, stats
        arrived = _numbers(read_events(gateway, "sb-overflow"))
        assert len(arrived) == len(set(arrived))  # once each
        assert stats.sent + stats.spool_replayed == len(arrived)
        assert 1000 - dropped == len(arrived)


SPOOLING = textwrap.dedent(
    """
    import sys
    from cse_bridge.engine import BatchEngine, EventItem, EventsSink
    url, token, spool = sys.argv[1:4]
    engine = BatchEngine(
        EventsSink(url, token), spool_dir=spool, spool_after=0, handle_sigterm=False
    )
    i = 0
    while True:
        for _ in range(50):
            engine.submit(EventItem("log.info", {"message": "x" * 200, "i": i}))
            i += 1
        engine.flush(10)
        print(engine.stats().spooled, flush=True)
    """
)


def _read_until(process: subprocess.Popen[str], at_least: int) -> int:
    """Read the spooled counts *process* prints until one reaches *at_least*."""
    assert process.stdout is not None
    seen = 0
    end = threading.Event()
    timer = threading.Timer(WAIT, end.set)
    timer.start()
    try:
        while seen < at_least and not end.is_set():
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if ready:
                line = process.stdout.readline()
                assert line, "the spooling program ended"
                seen = int(line)
    finally:
        timer.cancel()
    return seen


class TestCrash:
    """A process killed while it spools loses nothing it had written."""

    def test_sigkill_while_spooling(
        self, gateway: GatewayThread, make_engine: EngineFactory, tmp_path: Path
    ) -> None:
        """SIGKILL mid-spooling: what it said was spooled arrives, once; at most
        one torn record is skipped."""
        down = f"http://127.0.0.1:{closed_port()}"
        token = gateway.issue_token("sb-kill")
        with subprocess.Popen(
            [sys.executable, "-c", SPOOLING, down, token, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
        ) as process:
            try:
                spooled = _read_until(process, 2000)
            finally:
                process.kill()
        assert -signal.SIGKILL == process.wait(10)
        assert spooled >= 2000
        engine = _replay(make_engine, gateway, tmp_path, "sb-kill")
        arrived = _numbers(read_events(gateway, "sb-kill"))
        assert len(arrived) == len(set(arrived))
        assert len(arrived) >= spooled
        assert sorted(arrived) == list(range(len(arrived)))  # no gap
        assert engine.stats().spool_damaged <= 1


class TestDamage:
    """Torn and corrupted records are skipped and counted; the rest arrive."""

    def test_corrupted_segment(
        self, gateway: GatewayThread, make_engine: EngineFactory, tmp_path: Path
    ) -> None:
        """A flipped byte, a garbage length and a torn tail: three skipped, counted."""
        _spool_offline(make_engine, tmp_path, gateway.issue_token("sb-bad"), 100)
        [segment] = _segments(tmp_path)
        data = bytearray(segment.read_bytes())
        header = parse_header(bytes(data))
        assert header is not None
        reader = SegmentReader(bytes(data), header[0])
        starts = [header[0]]
        while (found := reader.next()) is not None:
            starts.append(found[1])
        assert 101 == len(starts)  # 100 frames, and the end
        data[starts[10] + FRAME_HEAD.size + 20] ^= 0xFF  # a bit flip in a payload
        data[starts[50] + 4 : starts[50] + 8] = b"\x7f\xff\xff\xff"  # a bad length
        del data[starts[99] + 30 :]  # torn: the last frame cut short
        segment.write_bytes(bytes(data))
        engine = _replay(make_engine, gateway, tmp_path, "sb-bad")
        arrived = _numbers(read_events(gateway, "sb-bad"))
        assert sorted(set(range(100)) - {10, 50, 99}) == sorted(arrived)
        assert (3, 97) == (engine.stats().spool_damaged, engine.stats().spool_replayed)


REPLAYER = textwrap.dedent(
    """
    import os, sys, time
    from cse_bridge.engine import BatchEngine, EventItem, EventsSink, Spool
    url, token, spool, sandbox = sys.argv[1:5]
    engine = BatchEngine(EventsSink(url, token), spool_dir=spool, handle_sigterm=False)
    engine.submit(EventItem("custom", {"pid": os.getpid()}))
    end = time.monotonic() + 20
    while Spool(spool, 1 << 30).names(sandbox) and time.monotonic() < end:
        time.sleep(0.02)
    engine.shutdown(2)
    print(engine.stats().spool_replayed)
    """
)


class TestSharing:
    """Several processes may use one spool directory at once."""

    def test_two_processes_replay_one_directory(
        self, gateway: GatewayThread, make_engine: EngineFactory, tmp_path: Path
    ) -> None:
        """Two replayers of one directory: every event arrives exactly once."""
        token = gateway.issue_token("sb-shared")
        _spool_offline(make_engine, tmp_path, token, 3000, spool_max_bytes=1 << 19)
        assert len(_segments(tmp_path)) >= 4
        args = [gateway.http_url, token, str(tmp_path), "sb-shared"]
        replayers = [
            subprocess.Popen(
                [sys.executable, "-c", REPLAYER, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [process.communicate(timeout=60) for process in replayers]
        assert [0, 0] == [process.returncode for process in replayers], outputs
        replayed = [int(out) for out, _ in outputs]
        arrived = _numbers(read_events(gateway, "sb-shared"))
        assert 3000 == sum(replayed)
        assert list(range(3000)) == sorted(arrived)  # each exactly once
        assert [] == _segments(tmp_path)


class TestBound:
    """spool_max_bytes bounds the directory: the oldest segment goes, counted."""

    def test_full_spool_drops_oldest_segment(
        self,
        gateway: GatewayThread,
        make_engine: EngineFactory,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Past the bound the oldest segments go, counted and said; the rest (the
        newest) arrive."""
        bound = 64 * 1024
        engine = _spool_offline(
            make_engine,
            tmp_path,
            gateway.issue_token("sb-full"),
            2000,
            spool_max_bytes=bound,
        )
        stats = engine.stats()
        assert (2000, True) == (stats.spooled, stats.spool_evicted > 0)
        assert sum(p.stat().st_size for p in _segments(tmp_path)) <= bound
        said = [x for x in capsys.readouterr().err.splitlines() if "spool_max" in x]
        assert said
        assert "reached spool_max_bytes (65536)" in said[0]
        kept = Spool(str(tmp_path), bound).status().events
        assert 2000 == kept + stats.spool_evicted
        _replay(make_engine, gateway, tmp_path, "sb-full")
        arrived = sorted(_numbers(read_events(gateway, "sb-full")))
        assert list(range(2000 - kept, 2000)) == arrived  # the newest stayed


def _run_quietly(*command: str) -> bool:
    """Run *command*; True if it succeeded."""
    return 0 == subprocess.run(command, capture_output=True, check=False).returncode


@contextlib.contextmanager
def _read_only(directory: Path) -> Iterator[Path]:
    """
    Yield a spool directory no one may create files in, even root.

    Root ignores permission bits: it gets *directory* made immutable (``chattr
    +i``), or, on a file system without that (overlayfs), a directory under
    ``/sys``, where the kernel refuses new files.
    """
    chattr = shutil.which("chattr")
    undo: list[str] | None = None
    if os.geteuid() != 0:
        directory.chmod(0o500)
    elif chattr and _run_quietly(chattr, "+i", str(directory)):
        undo = [chattr, "-i", str(directory)]
    else:
        directory = Path("/sys/cse-bridge-spool")
    try:
        with pytest.raises(PermissionError):
            (directory / "probe").mkdir(parents=True)
        yield directory
    finally:
        if undo:
            subprocess.run(undo, check=True)
        if os.geteuid() != 0:
            directory.chmod(0o700)


class TestBrokenDisk:
    """A spool that cannot be written: one clear line, no crash, counted as lost."""

    def test_read_only_directory(self, gateway: GatewayThread, tmp_path: Path) -> None:
        """Read-only spool, gateway down: the program ends as it would; the lost
        records are reported, the cause said once."""
        (tmp_path / "spool").mkdir()
        down = f"http://127.0.0.1:{closed_port()}"
        with _read_only(tmp_path / "spool") as spool:
            ended = run_program(
                "sys.exit",
                300,
                down,
                gateway.issue_token("sb-ro"),
                env={"CSE_BRIDGE_SPOOL_DIR": str(spool), "CSE_BRIDGE_SPOOL_AFTER": "0"},
            )
        assert 3 == ended.status, ended
        assert (0, 300) == (ended.spooled, ended.reported), ended
        said = [x for x in ended.stderr.splitlines() if "cannot write the spool" in x]
        assert 1 == len(said), ended.stderr
        assert f"in {spool} (PermissionError" in said[0]
        assert "Traceback" not in ended.stderr

    def test_full_disk(self, gateway: GatewayThread, tmp_path: Path) -> None:
        """A disk that fills up mid-spool (a file size limit): what fit is spooled,
        the rest reported; spooled + reported == emitted."""
        limit = (
            "import resource; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (40000, 40000))"
        )
        down = f"http://127.0.0.1:{closed_port()}"
        ended = run_program(
            "normal",
            300,
            down,
            gateway.issue_token("sb-fulldisk"),
            env={"CSE_BRIDGE_SPOOL_DIR": str(tmp_path)},
            prelude=limit,
        )
        assert 0 == ended.status, ended
        assert 300 == ended.spooled + ended.reported, ended
        assert 0 < ended.spooled < 300, ended
        assert "cannot write the spool" in ended.stderr
        assert "File too large" in ended.stderr
        assert Spool(str(tmp_path), 1 << 30).status().events == ended.spooled

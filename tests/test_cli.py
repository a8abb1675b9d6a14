"""The ``cse-bridge`` command line (cse_bridge.cli)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from cse_bridge import EventsClient, SandboxEvent
from cse_bridge import config as cfg
from cse_bridge.cli import main
from cse_bridge.gateway import GatewayThread

from .helpers import API_KEY, CONFIG_ENV, SECRET

pytestmark = pytest.mark.usefixtures("clean_config_env")


def clean_environ(**extra: str) -> dict[str, str]:
    """The test process's environment without our variables, plus *extra*."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_ENV}
    env.update(extra)
    return env


def cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cse_bridge ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "cse_bridge", *args],
        capture_output=True,
        text=True,
        env=clean_environ() if env is None else env,
        timeout=30,
        check=False,
    )


@dataclass
class Result:
    """What an in-process ``main(argv)`` run returned and printed."""

    code: int
    out: str
    err: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):
    """Run ``main(argv)`` in-process; argparse's SystemExit becomes the code."""

    def invoke(*argv: str) -> Result:
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def gateway_env(
    gateway: GatewayThread, monkeypatch: pytest.MonkeyPatch
) -> GatewayThread:
    """The test gateway, with COMPUTESDK_* pointing at it (token for sandbox-1)."""
    monkeypatch.setenv(cfg.ENV_GATEWAY_URL, gateway.http_url)
    monkeypatch.setenv(cfg.ENV_ACCESS_TOKEN, gateway.issue_token("sandbox-1"))
    monkeypatch.setenv(cfg.ENV_API_KEY, API_KEY)
    return gateway


@dataclass
class GatewayProcess:
    """A ``cse-bridge gateway`` subprocess and what it announced."""

    proc: subprocess.Popen[str]
    lines: list[str]
    exports: dict[str, str]
    ready_file: Path


def read_announcement(proc: subprocess.Popen[str], *, until: str) -> list[str]:
    """Read stdout lines up to the one starting with *until* (blocks until then)."""
    assert proc.stdout is not None
    lines: list[str] = []
    while True:
        line = proc.stdout.readline()
        if not line:
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"the gateway exited early ({proc.returncode}): {err}")
        lines.append(line.rstrip("\n"))
        if line.startswith(until):
            return lines


def parse_exports(lines: list[str]) -> dict[str, str]:
    """``export NAME=value`` lines as a dict."""
    exports = {}
    for line in lines:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            exports[name] = value
    return exports


def start_gateway(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None, until: str
) -> GatewayProcess:
    """Start ``cse-bridge gateway`` on free ports and wait for its announcement."""
    ready = tmp_path / "run" / "ready.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cse_bridge",
            "gateway",
            "--port",
            "0",
            "--pubsub-port",
            "0",
            "--ready-file",
            str(ready),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_environ() if env is None else env,
    )
    lines = read_announcement(proc, until=until)
    return GatewayProcess(proc, lines, parse_exports(lines), ready)


def stop_gateway(gw: GatewayProcess, signum: int = signal.SIGTERM) -> tuple[int, str]:
    """Signal the gateway; return its exit code and stderr."""
    gw.proc.send_signal(signum)
    _, err = gw.proc.communicate(timeout=20)
    return gw.proc.returncode, err


@pytest.fixture
def fresh_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A ``cse-bridge gateway`` with an sqlite store and nothing configured."""
    gw = start_gateway(
        tmp_path,
        "--store",
        f"sqlite:///{tmp_path / 'events.db'}",
        until=f"export {cfg.ENV_GATEWAY_SECRET}=",
    )
    yield gw
    if gw.proc.poll() is None:
        gw.proc.kill()
        gw.proc.communicate(timeout=10)


class TestGatewayCommand:
    """``cse-bridge gateway`` as a real subprocess."""

    def test_announces_and_writes_ready_file(
        self, fresh_gateway: GatewayProcess
    ) -> None:
        """It prints paste-ready exports and writes the addresses to the ready file."""
        exports = fresh_gateway.exports
        expected_names = [
            cfg.ENV_GATEWAY_URL,
            cfg.ENV_PUBSUB_HOST,
            cfg.ENV_PUBSUB_PORT,
            cfg.ENV_ACCESS_TOKEN,
            cfg.ENV_API_KEY,
            cfg.ENV_GATEWAY_SECRET,
        ]
        assert expected_names == list(exports)
        expected = {
            "http": exports[cfg.ENV_GATEWAY_URL],
            "pubsub": f"{exports[cfg.ENV_PUBSUB_HOST]}:{exports[cfg.ENV_PUBSUB_PORT]}",
        }
        assert expected == json.loads(fresh_gateway.ready_file.read_text())

    def test_pubsub_port_accepts_connections(
        self, fresh_gateway: GatewayProcess
    ) -> None:
        """The announced pub/sub address answers PING."""
        exports = fresh_gateway.exports
        address = (exports[cfg.ENV_PUBSUB_HOST], int(exports[cfg.ENV_PUBSUB_PORT]))
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"PING\r\n")
            expected = b"+PONG\r\n"
            assert expected == sock.recv(64)

    def test_printed_credentials_work(self, fresh_gateway: GatewayProcess) -> None:
        """The printed token stores an event that the printed API key reads."""
        exports = fresh_gateway.exports
        with EventsClient(
            gateway_url=exports[cfg.ENV_GATEWAY_URL],
            access_token=exports[cfg.ENV_ACCESS_TOKEN],
            api_key=exports[cfg.ENV_API_KEY],
        ) as client:
            result = client.store_event("custom", {"hello": "world"})
            events = client.get_events("sandbox-1")
        expected = [(result.event_id, {"hello": "world"})]
        assert expected == [(e.id, e.data) for e in events]

    def test_send_and_events_subprocesses(self, fresh_gateway: GatewayProcess) -> None:
        """``send``, ``events`` and ``events --json`` work from the printed exports."""
        env = clean_environ(**fresh_gateway.exports)
        sent = cli("send", "execution.completed", "--data", '{"exitCode": 0}', env=env)
        assert (0, "") == (sent.returncode, sent.stderr)
        result = json.loads(sent.stdout)
        table = cli("events", "sandbox-1", env=env)
        as_json = cli("events", "sandbox-1", "--json", env=env)
        expected_codes = (0, 0)
        assert expected_codes == (table.returncode, as_json.returncode)
        header, row = table.stdout.splitlines()
        assert header.split() == ["TIME", "TYPE", "ID", "DATA"]
        assert [result["eventId"], '{"exitCode":0}'] == row.split()[2:]
        event = SandboxEvent.from_json(json.loads(as_json.stdout))
        expected = (result["eventId"], "execution.completed", {"exitCode": 0})
        assert expected == (event.id, event.type, event.data)

    def test_token_from_store_secret(
        self, fresh_gateway: GatewayProcess, tmp_path: Path
    ) -> None:
        """``token --store`` signs with the secret the gateway kept beside its store."""
        issued = cli(
            "token",
            "--store",
            f"sqlite:///{tmp_path / 'events.db'}",
            "--sandbox",
            "sandbox-9",
        )
        assert (0, "") == (issued.returncode, issued.stderr)
        with EventsClient(
            gateway_url=fresh_gateway.exports[cfg.ENV_GATEWAY_URL],
            access_token=issued.stdout.strip(),
        ) as client:
            expected = "sandbox-9"
            assert expected == client.store_event("custom").sandbox_id

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_signal_shuts_down_cleanly(
        self, fresh_gateway: GatewayProcess, signum: int
    ) -> None:
        """SIGTERM and SIGINT stop it with exit code 0 and remove the ready file."""
        code, err = stop_gateway(fresh_gateway, signum)
        expected = (0, False)
        assert expected == (code, fresh_gateway.ready_file.exists())
        assert "Traceback" not in err

    def test_events_survive_restart(self, tmp_path: Path) -> None:
        """With sqlite, a restarted gateway keeps events and accepts the old token."""
        store = f"sqlite:///{tmp_path / 'events.db'}"
        first = start_gateway(
            tmp_path, "--store", store, until=f"export {cfg.ENV_API_KEY}="
        )
        env = clean_environ(**first.exports)
        assert 0 == cli("send", "custom", env=env).returncode
        assert 0 == stop_gateway(first)[0]
        second = start_gateway(
            tmp_path,
            "--store",
            store,
            "--api-key",
            f"{first.exports[cfg.ENV_API_KEY]}=1",
            until=f"export {cfg.ENV_API_KEY}=",
        )
        try:
            env[cfg.ENV_GATEWAY_URL] = second.exports[cfg.ENV_GATEWAY_URL]
            assert 0 == cli("send", "custom", env=env).returncode
            listed = cli("events", "sandbox-1", "--json", env=env)
            expected = 2
            assert expected == len(listed.stdout.splitlines())
        finally:
            assert 0 == stop_gateway(second)[0]

    def test_configured_gateway_prints_no_credentials(self, tmp_path: Path) -> None:
        """With a secret and keys from the environment it prints only addresses."""
        env = clean_environ(
            **{
                cfg.ENV_GATEWAY_SECRET: SECRET,
                cfg.ENV_GATEWAY_API_KEYS: f"{API_KEY}=1, k2=2",
            }
        )
        gw = start_gateway(tmp_path, env=env, until=f"export {cfg.ENV_PUBSUB_PORT}=")
        try:
            expected = [cfg.ENV_GATEWAY_URL, cfg.ENV_PUBSUB_HOST, cfg.ENV_PUBSUB_PORT]
            assert expected == list(gw.exports)
            token = jwt.encode({"sandboxId": "s", "workspaceId": 1}, SECRET)
            with EventsClient(
                gateway_url=gw.exports[cfg.ENV_GATEWAY_URL],
                access_token=token,
                api_key=API_KEY,
            ) as client:
                client.store_event("custom")
                expected_count = 1
                assert expected_count == len(client.get_events("s"))
        finally:
            assert 0 == stop_gateway(gw)[0]

    def test_port_in_use_fails(self, tmp_path: Path) -> None:
        """A port that is taken makes it exit 1 with a message, not a traceback."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = str(taken.getsockname()[1])
            done = cli("gateway", "--port", port, "--pubsub-port", "0")
        assert 1 == done.returncode
        assert "cannot start" in done.stderr
        assert "Traceback" not in done.stderr

    def test_unwritable_ready_file_fails(self, tmp_path: Path) -> None:
        """A ready file that cannot be written makes it exit 1 without a traceback."""
        blocker = tmp_path / "file"
        blocker.write_text("")
        done = cli(
            "gateway",
            "--port",
            "0",
            "--pubsub-port",
            "0",
            "--ready-file",
            str(blocker / "ready.json"),
        )
        expected = 1
        assert expected == done.returncode
        assert "cannot write" in done.stderr
        assert "Traceback" not in done.stderr


class TestGatewayUsage:
    """``cse-bridge gateway`` refuses bad settings before it serves."""

    @pytest.mark.parametrize(
        "args",
        [
            ["--secret", "too-short"],
            ["--api-key", "no-workspace"],
            ["--api-key", "key=one"],
            ["--port", "70000"],
            ["--retention", "0"],
            ["--store", "postgres://db"],
        ],
    )
    def test_bad_arguments(self, run, args: list[str]) -> None:
        """Each bad argument exits 2 with an error message."""
        result = run("gateway", "--port", "0", "--pubsub-port", "0", *args)
        expected = 2
        assert expected == result.code
        assert "error" in result.err

    def test_bad_api_keys_variable(self, run, monkeypatch: pytest.MonkeyPatch) -> None:
        """A malformed CSE_GATEWAY_API_KEYS exits 2 and names the variable."""
        monkeypatch.setenv(cfg.ENV_GATEWAY_API_KEYS, "key-without-workspace")
        result = run("gateway", "--port", "0", "--pubsub-port", "0")
        expected = 2
        assert expected == result.code
        assert cfg.ENV_GATEWAY_API_KEYS in result.err


class TestTokenCommand:
    """``cse-bridge token``."""

    def test_claims(self, run) -> None:
        """The token carries the sandbox, workspace and expiry asked for."""
        result = run(
            "token",
            "--secret",
            SECRET,
            "--sandbox",
            "sb",
            "--workspace",
            "4",
            "--ttl",
            "60",
        )
        assert 0 == result.code
        claims = jwt.decode(result.out.strip(), SECRET, algorithms=["HS256"])
        expected = ("sb", 4, 60)
        assert expected == (
            claims["sandboxId"],
            claims["workspaceId"],
            claims["exp"] - claims["iat"],
        )

    def test_secret_from_environment_and_no_expiry(
        self, run, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CSE_GATEWAY_SECRET supplies the secret; --ttl 0 means no exp claim."""
        monkeypatch.setenv(cfg.ENV_GATEWAY_SECRET, SECRET)
        result = run("token", "--sandbox", "sb", "--ttl", "0")
        claims = jwt.decode(result.out.strip(), SECRET, algorithms=["HS256"])
        assert "exp" not in claims

    def test_gateway_accepts_it(self, run, gateway: GatewayThread) -> None:
        """A token from the command stores events on a gateway with that secret."""
        token = run("token", "--secret", SECRET, "--sandbox", "from-cli").out.strip()
        with EventsClient(gateway_url=gateway.http_url, access_token=token) as client:
            expected = "from-cli"
            assert expected == client.store_event("custom").sandbox_id

    @pytest.mark.parametrize(
        "args",
        [
            ["--sandbox", "sb"],
            ["--secret", "short", "--sandbox", "sb"],
            ["--secret", SECRET],
            ["--secret", SECRET, "--sandbox", ""],
            ["--secret", SECRET, "--sandbox", "sb", "--ttl", "-1"],
        ],
    )
    def test_bad_usage(self, run, args: list[str]) -> None:
        """Missing secret or sandbox, a short secret, a negative TTL: exit 2."""
        expected = 2
        assert expected == run("token", *args).code


class TestSendCommand:
    """``cse-bridge send`` against the in-process test gateway."""

    def test_prints_result(self, run, gateway_env: GatewayThread) -> None:
        """It stores the event and prints the result as one JSON object."""
        result = run("send", "custom", "--data", '{"k": [1, 2]}')
        assert (0, "") == (result.code, result.err)
        printed = json.loads(result.out)
        expected = ("sandbox-1", "custom")
        assert expected == (printed["sandboxId"], printed["type"])
        with EventsClient(gateway_url=gateway_env.http_url, api_key=API_KEY) as c:
            stored = c.get_events("sandbox-1")
        expected_data = [(printed["eventId"], {"k": [1, 2]})]
        assert expected_data == [(e.id, e.data) for e in stored]

    def test_flags_beat_environment(self, run, gateway: GatewayThread) -> None:
        """--token and --gateway-url work without any environment."""
        result = run(
            "send",
            "custom",
            "--token",
            gateway.issue_token("flagged"),
            "--gateway-url",
            gateway.http_url,
        )
        expected = (0, "flagged")
        assert expected == (result.code, json.loads(result.out)["sandboxId"])

    @pytest.mark.parametrize("data", ["not json", "[1, 2]", '"text"'])
    def test_bad_data(self, run, gateway_env: GatewayThread, data: str) -> None:
        """--data that is not a JSON object is a usage error."""
        expected = 2
        assert expected == run("send", "custom", "--data", data).code

    def test_missing_token(self, run, gateway: GatewayThread) -> None:
        """Without a token it exits 2 and says where a token comes from."""
        result = run("send", "custom", "--gateway-url", gateway.http_url)
        expected = 2
        assert expected == result.code
        assert cfg.ENV_ACCESS_TOKEN in result.err

    def test_rejected_token(self, run, gateway: GatewayThread) -> None:
        """A token the gateway refuses exits 1 with the server's message."""
        result = run(
            "send", "custom", "--token", "bogus", "--gateway-url", gateway.http_url
        )
        expected = 1
        assert expected == result.code
        # The gateway's message, not its JSON envelope; the status kept.
        expected_err = (
            "cse-bridge send: Invalid access token: Not enough segments (HTTP 401)\n"
        )
        assert expected_err == result.err

    def test_unreachable_gateway(self, run) -> None:
        """A gateway that is not there exits 1 with a network message."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}"
        result = run("send", "custom", "--token", "t", "--gateway-url", url)
        expected = 1
        assert expected == result.code
        assert (
            f"cse-bridge send: cannot reach the gateway at {url} (from --gateway-url): "
            "nothing answers there (connection refused)\n"
        ) == result.err


@pytest.fixture
def many_events(gateway_env: GatewayThread) -> list[SandboxEvent]:
    """1100 events in sandbox-1, read back in order."""
    with EventsClient() as client:
        for n in range(1100):
            client.store_event("even" if n % 2 == 0 else "odd", {"n": n})
        return list(client.iter_events("sandbox-1"))


def json_lines(text: str) -> list[SandboxEvent]:
    """``events --json`` output as events."""
    return [SandboxEvent.from_json(json.loads(line)) for line in text.splitlines()]


class TestEventsCommand:
    """``cse-bridge events`` against the in-process test gateway."""

    def test_default_is_newest_100(self, run, many_events: list[SandboxEvent]) -> None:
        """Without --since or --limit it shows the newest 100, oldest first."""
        result = run("events", "sandbox-1", "--json")
        expected = many_events[-100:]
        assert expected == json_lines(result.out)

    def test_limit_above_1000_is_newest_n(
        self, run, many_events: list[SandboxEvent]
    ) -> None:
        """--limit 1050 without --since shows the newest 1050, across pages."""
        result = run("events", "sandbox-1", "--json", "--limit", "1050")
        expected = many_events[-1050:]
        assert expected == json_lines(result.out)

    def test_since_pages_past_1000(self, run, many_events: list[SandboxEvent]) -> None:
        """--since 0 lists all 1100 events, paging past the API's limit."""
        result = run("events", "sandbox-1", "--json", "--since", "0")
        assert many_events == json_lines(result.out)

    def test_since_with_limit(self, run, many_events: list[SandboxEvent]) -> None:
        """--since with --limit stops after N events."""
        since = str(many_events[9].timestamp)
        result = run("events", "sandbox-1", "--json", "--since", since, "--limit", "5")
        expected = many_events[10:15]
        assert expected == json_lines(result.out)

    def test_since_iso(self, run, gateway_env: GatewayThread) -> None:
        """--since accepts an ISO 8601 time, as the table prints it."""
        assert 0 == run("send", "custom").code
        table = run("events", "sandbox-1").out.splitlines()
        printed_time = table[1].split()[0]
        expected: list[SandboxEvent] = []
        assert expected == json_lines(
            run("events", "sandbox-1", "--json", "--since", printed_time).out
        )
        before = run("events", "sandbox-1", "--json", "--since", "2000-01-01T00:00:00")
        expected_count = 1
        assert expected_count == len(json_lines(before.out))

    def test_type_filter(self, run, gateway_env: GatewayThread) -> None:
        """--type shows events of that type only."""
        for event_type in ("a", "b", "a"):
            run("send", event_type)
        result = run("events", "sandbox-1", "--json", "--type", "a")
        expected = ["a", "a"]
        assert expected == [e.type for e in json_lines(result.out)]

    def test_table_format(self, run, gateway_env: GatewayThread) -> None:
        """The table shows the UTC time with milliseconds, type, id and compact data."""
        sent = json.loads(run("send", "custom", "--data", '{"a": 1, "b": "x"}').out)
        header, row = run("events", "sandbox-1").out.splitlines()
        millis = sent["timestamp"] % 1000
        expected = [f"{millis:03d}Z", "custom", sent["eventId"], '{"a":1,"b":"x"}']
        time, *rest = row.split()
        assert expected == [time[-4:], *rest]
        assert "TIME" == header.split()[0]

    def test_long_data_is_cut_in_table(self, run, gateway_env: GatewayThread) -> None:
        """Data too long for the table ends with an ellipsis; --json keeps it all."""
        run("send", "custom", "--data", json.dumps({"text": "x" * 500}))
        row = run("events", "sandbox-1").out.splitlines()[1]
        assert row.endswith("...")
        expected = {"text": "x" * 500}
        assert expected == json_lines(run("events", "sandbox-1", "--json").out)[0].data

    def test_bad_key(self, run, gateway_env: GatewayThread) -> None:
        """A key the gateway refuses exits 1 with its message on stderr."""
        result = run("events", "sandbox-1", "--api-key", "wrong")
        expected = (1, "")
        assert expected == (result.code, result.out)
        assert "Invalid API key" in result.err

    @pytest.mark.parametrize(
        "args",
        [
            ["--limit", "0"],
            ["--limit", "many"],
            ["--since", "yesterday"],
            ["--since", "-5"],
            ["--type", ""],
        ],
    )
    def test_bad_usage(self, run, gateway_env: GatewayThread, args: list[str]) -> None:
        """Bad --limit, --since or --type values exit 2."""
        expected = 2
        assert expected == run("events", "sandbox-1", *args).code

    def test_missing_key(self, run, gateway: GatewayThread) -> None:
        """Without an API key it exits 2 and says where a key comes from."""
        result = run("events", "sandbox-1", "--gateway-url", gateway.http_url)
        expected = 2
        assert expected == result.code
        assert cfg.ENV_API_KEY in result.err


class TestEntryPoints:
    """How the command is started."""

    def test_python_dash_m(self) -> None:
        """``python -m cse_bridge --version`` prints the version."""
        import cse_bridge

        done = cli("--version")
        expected = (0, f"cse-bridge {cse_bridge.__version__} (Python")
        assert expected == (done.returncode, done.stdout[: len(expected[1])])

    def test_console_script(self) -> None:
        """The installed ``cse-bridge`` script runs main()."""
        script = Path(sys.executable).with_name("cse-bridge")
        done = subprocess.run(
            [str(script), "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert 0 == done.returncode
        assert "gateway" in done.stdout

    def test_no_command_is_usage_error(self, run) -> None:
        """Without a command it exits 2."""
        expected = 2
        assert expected == run().code

    def test_python_dash_m_cli_package(self) -> None:
        """``python -m cse_bridge.cli --version`` still runs main() as a package."""
        import cse_bridge

        done = subprocess.run(
            [sys.executable, "-m", "cse_bridge.cli", "--version"],
            capture_output=True,
            text=True,
            env=clean_environ(),
            timeout=30,
            check=False,
        )
        expected = (0, f"cse-bridge {cse_bridge.__version__} (Python")
        assert expected == (done.returncode, done.stdout[: len(expected[1])])


class TestCliImportCost:
    """What ``import cse_bridge.cli`` pulls in: the subcommands import lazily."""

    def test_import_loads_no_optional_dependency(self) -> None:
        """The CLI package loads no aiohttp, JWT, Redis, OpenTelemetry or structlog."""
        code = (
            "import sys, cse_bridge.cli\n"
            "heavy = ('aiohttp', 'jwt', 'redis', 'opentelemetry', 'structlog')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy "
            "or m.startswith(('cse_bridge.gateway', 'cse_bridge.subscriber'))))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=clean_environ(),
            timeout=30,
            check=True,
        )
        assert "[]" == out.stdout.strip()


class TestRedactUrl:
    """The store URL printed at start-up hides its password."""

    def test_password_is_masked(self) -> None:
        """A Redis URL's password is replaced by stars, the rest kept."""
        from cse_bridge.cli._gateway import _redact_url

        assert "redis://:***@db.example:6380/0?prefix=x" == _redact_url(
            "redis://:s3cret@db.example:6380/0?prefix=x"
        )
        assert "rediss://me:***@db.example/1" == _redact_url(
            "rediss://me:s3cret@db.example/1"
        )

    def test_url_without_password_is_unchanged(self) -> None:
        """URLs without a password are printed as given."""
        from cse_bridge.cli._gateway import _redact_url

        assert "sqlite:///events.db" == _redact_url("sqlite:///events.db")

"""
The ``cse-bridge`` command as a user meets it: errors, input, signals, help.

Every test runs the installed console script in a subprocess and checks its exit
status, stdout and stderr.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cse_bridge import config as cfg
from cse_bridge.client import EventsClient
from cse_bridge.gateway import GatewayThread

from ..helpers import API_KEY
from .commands import WAIT, Background, environ, gateway_environ, run

pytestmark = pytest.mark.usefixtures("clean_config_env")


def free_url() -> str:
    """A local URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def one_line(text: str) -> str:
    """*text*, asserted to be one line without a traceback."""
    assert "Traceback" not in text
    assert 1 == len(text.splitlines()), text
    return text


class TestUserMistakes:
    """A mistake is one line on stderr and exit 2 (usage) or 1 (the gateway said no)."""

    def test_empty_type(self) -> None:
        """``send ''`` names the problem instead of a traceback."""
        done = run("send", "", "--data", "{}", "--token", "t")
        assert (2, "", "cse-bridge send: error: type must not be empty\n") == (
            done.returncode,
            done.stdout,
            one_line(done.stderr),
        )

    def test_rejected_token_shows_the_message_and_status(
        self, gateway: GatewayThread
    ) -> None:
        """The gateway's message, not its JSON envelope; the HTTP status kept."""
        done = run(
            "send", "custom", "--token", "bogus", "--gateway-url", gateway.http_url
        )
        expected = (
            "cse-bridge send: Invalid access token: Not enough segments (HTTP 401)\n"
        )
        assert (1, "", expected) == (done.returncode, done.stdout, done.stderr)

    def test_unreachable_gateway_from_the_flag(self) -> None:
        """The URL tried, that nothing answers, and that it came from the flag."""
        url = free_url()
        done = run("send", "custom", "--token", "t", "--gateway-url", url)
        expected = (
            f"cse-bridge send: cannot reach the gateway at {url} (from --gateway-url): "
            "nothing answers there (connection refused)\n"
        )
        assert (1, expected) == (done.returncode, done.stderr)

    def test_unreachable_gateway_from_the_environment(self) -> None:
        """A URL from COMPUTESDK_GATEWAY_URL says so."""
        url = free_url()
        env = environ(**{cfg.ENV_GATEWAY_URL: url, cfg.ENV_API_KEY: "k"})
        done = run("events", "sb", env=env)
        expected = (
            f"cse-bridge events: cannot reach the gateway at {url} (from "
            f"{cfg.ENV_GATEWAY_URL}): nothing answers there (connection refused)\n"
        )
        assert (1, "", expected) == (done.returncode, done.stdout, done.stderr)

    def test_default_url_is_named_as_the_default(self) -> None:
        """Without flag or variable, the message says the default was used."""
        from cse_bridge.cli._io import url_origin

        assert (
            cfg.DEFAULT_GATEWAY_URL,
            f"the default; set --gateway-url or {cfg.ENV_GATEWAY_URL} for another",
        ) == url_origin(None)

    def test_sqlite_store_in_a_missing_directory(self, tmp_path: Path) -> None:
        """The full path is named, and no directory is created."""
        done = run("gateway", "--store", "sqlite:///nonexistent/dir/x.db", cwd=tmp_path)
        missing = tmp_path / "nonexistent" / "dir"
        expected = (
            f"cse-bridge gateway: error: --store sqlite:///nonexistent/dir/x.db: the "
            f"directory {missing} does not exist (create it first; sqlite:///PATH is "
            "relative to the working directory, sqlite:////PATH absolute)\n"
        )
        assert (2, expected, False) == (
            done.returncode,
            done.stderr,
            (tmp_path / "nonexistent").exists(),
        )

    def test_token_from_a_store_without_a_secret(self) -> None:
        """``token --store memory://`` says that only an sqlite store keeps one."""
        done = run("token", "--sandbox", "sb", "--store", "memory://")
        expected = (
            "cse-bridge token: error: --store memory://: only an sqlite store keeps "
            f"its secret; use --secret or {cfg.ENV_GATEWAY_SECRET} (a gateway that "
            "generated its secret prints it)\n"
        )
        assert (2, "", expected) == (done.returncode, done.stdout, done.stderr)

    def test_bad_flag_shows_the_subcommand_usage(self) -> None:
        """``gateway --bogus`` prints the gateway's usage, not the top-level one."""
        done = run("gateway", "--bogus")
        lines = done.stderr.splitlines()
        assert (2, "usage: cse-bridge gateway", lines[-1]) == (
            done.returncode,
            lines[0][: len("usage: cse-bridge gateway")],
            "cse-bridge gateway: error: unrecognized arguments: --bogus",
        )

    def test_version(self) -> None:
        """``--version`` names the program and the Python it runs on."""
        import platform

        from cse_bridge import __version__

        done = run("--version")
        expected = f"cse-bridge {__version__} (Python {platform.python_version()})\n"
        assert (0, expected) == (done.returncode, done.stdout)


class TestMissingExtras:
    """Without an extra, one line that names the ``pip install`` to run."""

    @pytest.mark.parametrize(
        ("args", "block", "expected"),
        [
            (
                ["tail", "sb", "--token", "t"],
                ["redis", "hiredis"],
                "cse-bridge tail: needs the redis extra (hiredis is not installed): "
                "pip install 'cse-bridge[redis]'",
            ),
            (
                ["forward", "--sandbox", "sb", "--token", "t"],
                ["redis", "hiredis"],
                "cse-bridge forward: needs the redis extra (hiredis is not "
                "installed): pip install 'cse-bridge[redis]'",
            ),
            (
                ["forward", "--sandbox", "sb", "--token", "t", "--to", "otlp"],
                ["opentelemetry"],
                "cse-bridge forward: --to otlp needs the otlp extra "
                "(opentelemetry is not installed): pip install 'cse-bridge[otlp]'",
            ),
            (
                ["gateway"],
                ["aiohttp"],
                "cse-bridge gateway: needs the gateway extra (aiohttp is not "
                "installed): pip install 'cse-bridge[gateway]'",
            ),
            (
                ["gateway"],
                ["prometheus_client"],
                "cse-bridge gateway: needs the gateway extra (prometheus_client is "
                "not installed): pip install 'cse-bridge[gateway]'",
            ),
            (
                ["forward", "--sandbox", "sb", "--token", "t", "--metrics-port", "0"],
                ["prometheus_client"],
                "cse-bridge forward: --metrics-port needs the forward extra "
                "(prometheus_client is not installed): pip install "
                "'cse-bridge[forward]'",
            ),
            (
                ["gateway", "--store", "redis://127.0.0.1:1/0"],
                ["redis", "hiredis"],
                "cse-bridge gateway: --store redis:// needs the redis extra "
                "(redis is not installed): pip install 'cse-bridge[redis]'",
            ),
            (
                ["demo"],
                ["aiohttp"],
                "cse-bridge demo: needs the gateway,redis extras (aiohttp is not "
                "installed): pip install 'cse-bridge[gateway,redis]'",
            ),
        ],
        ids=[
            "tail",
            "forward",
            "forward-otlp",
            "gateway",
            "gateway-prometheus",
            "forward-metrics",
            "gateway-redis",
            "demo",
        ],
    )
    def test_one_line(self, args: list[str], block: list[str], expected: str) -> None:
        """Exit 1, nothing on stdout, the line on stderr."""
        done = run(*args, block=block)
        assert (1, "", expected) == (
            done.returncode,
            done.stdout,
            one_line(done.stderr).rstrip("\n"),
        )

    def test_token_needs_no_extra(self, gateway: GatewayThread) -> None:
        """``token`` signs with the standard library: the gateway accepts it."""
        from ..helpers import SECRET

        done = run(
            "token", "--secret", SECRET, "--sandbox", "sb-x",
            block=["aiohttp", "jwt", "redis", "hiredis"],
        )  # fmt: skip
        assert (0, "") == (done.returncode, done.stderr)
        token = done.stdout.strip()
        with EventsClient(gateway_url=gateway.http_url, access_token=token) as client:
            assert "sb-x" == client.store_event("custom", {}).sandbox_id


class TestSendData:
    """``send --data``: literal JSON, ``@FILE`` or ``-`` (stdin)."""

    def test_from_a_file(self, gateway: GatewayThread, tmp_path: Path) -> None:
        """A payload too large for an argument list is read from a file."""
        payload = {"blob": "x" * 900_000}
        path = tmp_path / "data.json"
        path.write_text(json.dumps(payload))
        env = gateway_environ(gateway, "sb-file")
        done = run("send", "custom", "--data", f"@{path}", env=env)
        stored = read_back(gateway, "sb-file")
        assert (0, "", [payload]) == (done.returncode, done.stderr, stored)
        assert "sb-file" == json.loads(done.stdout)["sandboxId"]

    def test_from_stdin(self, gateway: GatewayThread) -> None:
        """``-`` reads the JSON object from stdin."""
        env = gateway_environ(gateway, "sb-stdin")
        done = run("send", "custom", "--data", "-", env=env, stdin='{"k": [1, 2]}')
        assert (0, [{"k": [1, 2]}]) == (done.returncode, read_back(gateway, "sb-stdin"))

    @pytest.mark.parametrize(
        ("data", "stdin", "expected"),
        [
            ("@/nonexistent/x.json", None, "--data: cannot read /nonexistent/x.json: "
             "No such file or directory"),
            ("-", "[1]", "--data: stdin must hold a JSON object, e.g. '{\"k\": 1}'"),
            ("{", None, "--data: the value is not valid JSON: Expecting property name "
             "enclosed in double quotes: line 1 column 2 (char 1)"),
        ],
    )  # fmt: skip
    def test_bad_data(self, data: str, stdin: str | None, expected: str) -> None:
        """A missing file or a non-object is a one-line usage error."""
        done = run("send", "custom", "--token", "t", "--data", data, stdin=stdin)
        assert (2, f"cse-bridge send: error: {expected}\n") == (
            done.returncode,
            done.stderr,
        )


def read_back(gateway: GatewayThread, sandbox: str) -> list[dict[str, object]]:
    """The data of every event *sandbox* stored, oldest first."""
    with EventsClient(gateway_url=gateway.http_url, api_key=API_KEY) as client:
        return [event.data for event in client.iter_events(sandbox)]


def store(gateway: GatewayThread, sandbox: str, kind: str, data: dict) -> None:
    """Store one event for *sandbox*."""
    token = gateway.issue_token(sandbox)
    with EventsClient(gateway_url=gateway.http_url, access_token=token) as client:
        client.store_event(kind, data)


@pytest.fixture
def background() -> Iterator[list[Background]]:
    """Background commands to kill at the end of the test, whatever happened."""
    started: list[Background] = []
    yield started
    for command in started:
        command.kill()


class TestSince:
    """One ``--since`` grammar: a duration, epoch milliseconds or ISO 8601."""

    @pytest.mark.parametrize(
        "since", ["10m", "0", "2020-01-01T00:00:00Z", "2020-01-01"]
    )
    def test_events(self, gateway: GatewayThread, since: str) -> None:
        """``events --since`` takes each form."""
        store(gateway, "sb-since", "custom", {"n": 1})
        done = run("events", "sb-since", "--since", since, "--json",
                   env=gateway_environ(gateway, "sb-since"))  # fmt: skip
        assert (0, [{"n": 1}]) == (
            done.returncode,
            [json.loads(line)["data"] for line in done.stdout.splitlines()],
        )

    @pytest.mark.parametrize("command", ["tail", "forward"])
    def test_follow_commands_take_iso(
        self, gateway: GatewayThread, command: str, background: list[Background]
    ) -> None:
        """``tail`` and ``forward`` print the history after an ISO 8601 time."""
        store(gateway, "sb-iso", "custom", {"n": 7})
        args = ["sb-iso", "--json"] if command == "tail" else ["--to", "jsonl"]
        proc = Background(command, *args, "--since", "2020-01-01T00:00:00Z",
                          env=gateway_environ(gateway, "sb-iso"))  # fmt: skip
        background.append(proc)
        proc.wait_for(lambda out: '"n":7' in out.replace(" ", ""))
        assert 0 == proc.stop(signal.SIGTERM)

    def test_refused_everywhere_alike(self) -> None:
        """A bad value gets the same message from each command."""
        expected = (
            "argument --since: expected a duration (10m, 2h, 30s), milliseconds "
            "since the epoch or an ISO 8601 time: 'yesterday'"
        )
        results = [
            run("events", "sb", "--since", "yesterday"),
            run("tail", "sb", "--since", "yesterday"),
            run("forward", "--since", "yesterday"),
        ]
        assert [(2, True)] * 3 == [
            (r.returncode, r.stderr.rstrip("\n").endswith(expected)) for r in results
        ]


class TestSignals:
    """
    One exit-status convention: a follow stopped by SIGINT or SIGTERM exits 0; a
    command that ends by itself exits 130 or 143 when stopped before the end.
    """

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
    @pytest.mark.parametrize("command", ["tail", "forward"])
    def test_follow_exits_zero(
        self,
        gateway: GatewayThread,
        background: list[Background],
        command: str,
        signum: int,
    ) -> None:
        """``tail`` and ``forward`` stop cleanly: 0, no traceback."""
        store(gateway, "sb-sig", "custom", {"n": 1})
        args = ["sb-sig", "--json"] if command == "tail" else ["--to", "jsonl"]
        proc = Background(command, *args, "--since", "0",
                          env=gateway_environ(gateway, "sb-sig"))  # fmt: skip
        background.append(proc)
        proc.wait_for(lambda out: '"n":1' in out.replace(" ", ""))
        assert (0, "") == (proc.stop(signum), proc.err)

    @pytest.mark.parametrize(
        ("signum", "expected"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
    )
    def test_finite_command_reports_the_signal(
        self, background: list[Background], signum: int, expected: int
    ) -> None:
        """``events`` stopped while it waits for an answer exits 128 + the signal."""
        # A gateway that takes the request and never answers: the command is surely
        # still running when the signal comes (a fast one, like the demo, may not be).
        with socket.create_server(("127.0.0.1", 0)) as silent:
            url = f"http://127.0.0.1:{silent.getsockname()[1]}"
            proc = Background(
                "events", "sb-sig", env=environ(**{cfg.ENV_GATEWAY_URL: url,
                                                   cfg.ENV_API_KEY: API_KEY})
            )  # fmt: skip
            background.append(proc)
            silent.settimeout(WAIT)
            connection, _ = silent.accept()
            with connection:
                connection.settimeout(WAIT)
                assert connection.recv(65536).startswith(b"GET /events/sb-sig")
                code = proc.stop(signum)
        assert (expected, "") == (code, proc.err)


class TestHelp:
    """Every subcommand's help shows every option with its default."""

    @staticmethod
    def _subparsers():
        import argparse

        from cse_bridge.cli import build_parser

        parser = build_parser()
        (commands,) = (
            a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
        )
        return commands.choices

    def test_every_option_says_its_default(self) -> None:
        """An option without ``default`` in its help is a flag or required."""
        import argparse

        missing = []
        for name, sub in self._subparsers().items():
            formatter = sub._get_formatter()
            for action in sub._actions:
                if (
                    not action.option_strings
                    or action.required
                    or isinstance(
                        action,
                        argparse._HelpAction | argparse._StoreTrueAction,
                    )
                ):
                    continue
                if "default" not in formatter._expand_help(action):
                    missing.append(f"{name} {action.option_strings[0]}")
        assert [] == missing

    @pytest.mark.parametrize(
        "command", ["gateway", "token", "send", "events", "tail", "forward", "demo"]
    )
    def test_help_lists_every_option(self, command: str) -> None:
        """``cse-bridge COMMAND --help`` exits 0 and names each option and default."""
        sub = self._subparsers()[command]
        done = run(command, "--help", env=environ(COLUMNS="200"))
        options = [a.option_strings[-1] for a in sub._actions if a.option_strings]
        shown = [o for o in options if o in done.stdout]
        assert (0, options) == (done.returncode, shown)
        for action in sub._actions:
            if action.option_strings and action.default not in (
                None,
                False,
                [],
                argparse.SUPPRESS,
            ):
                assert f"default: {action.default}" in " ".join(done.stdout.split())


class TestMintTokens:
    """A running ``memory://`` gateway's secret mints tokens for other sandboxes."""

    def test_token_for_another_sandbox(
        self, tmp_path: Path, background: list[Background]
    ) -> None:
        """Paste the exports, ``token --sandbox other``, and the gateway accepts it."""
        gateway = Background(
            "gateway", "--port", "0", "--pubsub-port", "0", env=environ()
        )
        background.append(gateway)
        out = gateway.wait_for(lambda text: f"export {cfg.ENV_GATEWAY_SECRET}=" in text)
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in out.splitlines()
            if line.startswith("export ")
        )
        env = environ(**exports)
        minted = run("token", "--sandbox", "other-sandbox", env=env)
        env[cfg.ENV_ACCESS_TOKEN] = minted.stdout.strip()
        sent = run("send", "custom", "--data", "{}", env=env)
        assert (0, 0, "other-sandbox") == (
            minted.returncode,
            sent.returncode,
            json.loads(sent.stdout)["sandboxId"],
        )
        assert 0 == gateway.stop(signal.SIGTERM)


class TestForwardOutput:
    """What ``forward`` prints: records on stdout, everything else on stderr."""

    def test_hand_sent_log_gets_stored_time_and_type_level(
        self, gateway: GatewayThread, background: list[Background]
    ) -> None:
        """``log.error`` without ``timeUnixNano`` or ``level``: today, ERROR."""
        env = gateway_environ(gateway, "sb-hand")
        sent = run("send", "log.error", "--data", '{"message": "boom"}', env=env)
        assert 0 == sent.returncode
        proc = Background("forward", "--since", "0", env=env)
        background.append(proc)
        out = proc.wait_for(lambda text: "boom" in text)
        (line,) = [x for x in out.splitlines() if "boom" in x]
        today = datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d")
        assert (True, True) == (line.startswith(today), " ERROR " in line)
        assert 0 == proc.stop(signal.SIGTERM)

    def test_status_line_is_cleared_before_a_record(
        self, gateway: GatewayThread, background: list[Background]
    ) -> None:
        """On one terminal, no record is written onto the end of the status line."""
        env = gateway_environ(gateway, "sb-status")
        proc = Background(
            "forward", "--status", "always", "--status-interval", "0.05",
            env=env, merged=True,
        )  # fmt: skip
        background.append(proc)
        for n in range(5):
            # A status line on screen, then a record: the case that used to mix.
            drawn = proc.out.count("\x1b[2Kin ")
            proc.wait_for(lambda out, d=drawn: out.count("\x1b[2Kin ") > d)
            store(gateway, "sb-status", "log.info", {"message": f"record-{n}"})
            proc.wait_for(lambda out, n=n: f"record-{n}" in out)
        assert 0 == proc.stop(signal.SIGTERM)
        records = [
            line.rpartition("\x1b[2K")[2]
            for line in proc.out.split("\n")
            if "record-" in line
        ]
        assert 5 == len(records)
        assert [] == [r for r in records if "record-" not in r or r.startswith("in ")]

    def test_diagnostics_go_to_stderr(
        self, gateway: GatewayThread, background: list[Background], tmp_path: Path
    ) -> None:
        """A warning of ours is on stderr; stdout holds the forwarded records only."""
        state = tmp_path / "state.json"
        state.write_text("not json")
        env = gateway_environ(gateway, "sb-diag")
        store(gateway, "sb-diag", "log.info", {"message": "hello"})
        proc = Background(
            "forward", "--since", "0", "--state-file", str(state), env=env
        )
        background.append(proc)
        proc.wait_for(lambda out: "hello" in out)
        assert 0 == proc.stop(signal.SIGTERM)
        assert [True] == [
            "sandbox [sb-diag] hello" in line for line in proc.out.splitlines()
        ]
        assert "WARNING cse_bridge.forwarder" in proc.err
        assert "ignoring unreadable state file" in proc.err

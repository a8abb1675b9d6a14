"""``cse-bridge gateway``'s protective options, and what ``token`` refuses to sign."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest
import trustme

from cse_bridge import config as cfg

from ..helpers import SECRET
from .commands import Background, environ, run


class TestRefusedAtStart:
    """A bad limit or key stops the gateway with one line naming the fix."""

    @pytest.mark.parametrize(
        ("args", "env", "expected"),
        [
            (
                ["--api-key", "k=99999999999999999999"],
                {},
                "argument --api-key: workspace out of range 0..9007199254740991: "
                "99999999999999999999",
            ),
            (
                [],
                {cfg.ENV_GATEWAY_API_KEYS: "k=18446744073709551616"},
                f"{cfg.ENV_GATEWAY_API_KEYS}: workspace out of range "
                "0..9007199254740991: 18446744073709551616",
            ),
            (
                ["--idle-timeout", "0"],
                {},
                "argument --idle-timeout: must be a positive number",
            ),
            (
                [],
                {cfg.ENV_GATEWAY_MAX_CONNECTIONS: "many"},
                f"{cfg.ENV_GATEWAY_MAX_CONNECTIONS}: not an integer: 'many'",
            ),
            (
                [],
                {cfg.ENV_GATEWAY_RATE_LIMIT: "-1"},
                f"{cfg.ENV_GATEWAY_RATE_LIMIT}: must be a positive number: -1",
            ),
            (["--tls-cert", "cert.pem"], {}, "TLS needs both --tls-cert and --tls-key"),
            (
                ["--tls-cert", "missing.pem", "--tls-key", "missing.key"],
                {},
                "cannot load the TLS certificate missing.pem and key missing.key: "
                "No such file or directory",
            ),
        ],
    )
    def test_bad_option(
        self, tmp_path: Path, args: list[str], env: dict[str, str], expected: str
    ) -> None:
        """The gateway exits 2 with the reason, and no traceback."""
        done = run("gateway", "--port=0", "--pubsub-port=0", *args,
                   env=environ(**env), cwd=tmp_path)  # fmt: skip
        assert 2 == done.returncode
        assert expected in done.stderr
        assert "Traceback" not in done.stderr
        assert 1 == len(done.stderr.strip().splitlines()[-1:])

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["--workspace", str(2**63)], "workspace out of range 0..9007199254740991"),
            (["--workspace", "-1"], "workspace out of range"),
            (["--sandbox", "x" * 257], "the sandbox id must be 1 to 256 characters"),
        ],
    )
    def test_token_refuses_what_no_gateway_accepts(
        self, args: list[str], expected: str
    ) -> None:
        """``token`` signs nothing a gateway would refuse."""
        done = run("token", "--secret", SECRET, "--sandbox", "sb", *args)
        assert (2, "") == (done.returncode, done.stdout)
        assert expected in done.stderr


class TestOptionsApply:
    """The flags and their variables reach the running gateway."""

    def test_idle_timeout_and_connection_cap(self, tmp_path: Path) -> None:
        """--idle-timeout closes a silent socket; the variable caps connections."""
        ready = tmp_path / "ready.json"
        proc = Background(
            "gateway", "--port=0", "--pubsub-port=0", "--idle-timeout=0.3",
            f"--ready-file={ready}",
            env=environ(**{cfg.ENV_GATEWAY_MAX_CONNECTIONS: "1",
                           cfg.ENV_GATEWAY_SECRET: SECRET}),
        )  # fmt: skip
        try:
            proc.wait_for(lambda out: "serving HTTP" in out)
            address = json.loads(ready.read_text())
            host, _, port = address["pubsub"].rpartition(":")
            with socket.create_connection((host, int(port)), timeout=10) as first:
                started = time.monotonic()
                with socket.create_connection((host, int(port)), timeout=10) as second:
                    assert b"-ERR max number of clients reached\r\n" == second.recv(100)
                assert first.recv(100).startswith(b"-ERR Timed out")
                assert time.monotonic() - started < 10
        finally:
            assert 0 == proc.stop(signal.SIGTERM)


class TestTlsCommands:
    """``gateway --tls-cert`` with ``send`` and ``tail`` given the CA by variable."""

    def test_send_and_tail_over_tls(self, tmp_path: Path) -> None:
        """The printed exports plus SSL_CERT_FILE are all the clients need."""
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1")
        cert, key, ca_file = (tmp_path / n for n in ("c.pem", "k.pem", "ca.pem"))
        for blob in leaf.cert_chain_pems:
            blob.write_to_path(str(cert), append=True)
        leaf.private_key_pem.write_to_path(str(key))
        ca.cert_pem.write_to_path(str(ca_file))
        tls_env = {
            cfg.ENV_GATEWAY_TLS_CERT: str(cert),
            cfg.ENV_GATEWAY_TLS_KEY: str(key),
        }
        gateway = Background(
            "gateway", "--port=0", "--pubsub-port=0", env=environ(**tls_env)
        )
        tail: Background | None = None
        try:
            out = gateway.wait_for(
                lambda out: f"export {cfg.ENV_GATEWAY_SECRET}" in out
            )
            exports = dict(
                line[len("export ") :].split("=", 1)
                for line in out.splitlines()
                if line.startswith("export ")
            )
            exports = {k: v.strip("'") for k, v in exports.items()}
            assert exports[cfg.ENV_GATEWAY_URL].startswith("https://")
            assert "1" == exports[cfg.ENV_PUBSUB_TLS]
            env = environ(**exports, SSL_CERT_FILE=str(ca_file))
            first = run("send", "custom", "--data", '{"n": 1}', env=env)
            assert 0 == first.returncode, first.stderr
            # History over HTTPS first: once it shows, tail is subscribed over TLS.
            tail = Background("tail", "sandbox-1", "--json", "--since", "0", env=env)
            tail.wait_for(lambda out: '"n":1' in out.replace(" ", ""))
            second = run("send", "custom", "--data", '{"n": 2}', env=env)
            assert 0 == second.returncode, second.stderr
            tail.wait_for(lambda out: '"n":2' in out.replace(" ", ""))
            assert 0 == tail.stop(signal.SIGTERM)
        finally:
            if tail is not None:
                tail.kill()
            assert 0 == gateway.stop(signal.SIGTERM)

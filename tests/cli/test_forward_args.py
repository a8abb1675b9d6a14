"""The argument helpers of ``cse-bridge``: ``--to``, ``--since``, ``--token``."""

from __future__ import annotations

import argparse
import time

import pytest

from cse_bridge.cli import build_parser
from cse_bridge.cli._args import parse_since
from cse_bridge.cli._forward import SinkSpec, _token, parse_sink


class TestParseSink:
    """parse_sink."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("logging", SinkSpec("logging")),
            ("otlp", SinkSpec("otlp")),
            ("otlp=http://collector:4318", SinkSpec("otlp", "http://collector:4318")),
            ("jsonl", SinkSpec("jsonl")),
            ("jsonl=-", SinkSpec("jsonl", "-")),
            ("jsonl=out/events.jsonl", SinkSpec("jsonl", "out/events.jsonl")),
            (" JSONL=a=b.jsonl", SinkSpec("jsonl", "a=b.jsonl")),
            ("otlp=", SinkSpec("otlp")),
        ],
    )
    def test_known_kinds(self, text: str, expected: SinkSpec) -> None:
        """A kind, case-insensitive, takes its target after the first ``=``."""
        assert expected == parse_sink(text)

    @pytest.mark.parametrize("text", ["", "kafka", "logging=app.log", "=x", "otlp:x"])
    def test_unknown_or_malformed_is_a_usage_error(self, text: str) -> None:
        """Anything else, or a target for logging, is argparse's type error."""
        with pytest.raises(argparse.ArgumentTypeError, match="expected logging"):
            parse_sink(text)


class TestParseSince:
    """parse_since."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("0", 0),
            ("1700000000000", 1_700_000_000_000),
            ("250ms", 999_750),
            ("30s", 970_000),
            ("10m", 400_000),
            ("0.25h", 100_000),
            (" 1s ", 999_000),
        ],
    )
    def test_milliseconds_or_a_duration_ago(self, text: str, expected: int) -> None:
        """Digits are ms since the epoch; a duration counts back from *now*."""
        assert expected == parse_since(text, now_ms=1_000_000)

    def test_a_day_ago(self) -> None:
        """``1d`` is 86 400 000 ms before now."""
        assert 1_699_913_600_000 == parse_since("1d", now_ms=1_700_000_000_000)

    def test_now_defaults_to_the_clock(self) -> None:
        """Without *now*, ``0s`` is the current time in ms."""
        before = int(time.time() * 1000)
        actual = parse_since("0s")
        after = int(time.time() * 1000)
        assert (True, True) == (before <= actual, actual <= after)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-12-06T00:00:00Z", 1_796_515_200_000),
            ("2026-12-06T01:00:00+01:00", 1_796_515_200_000),
            ("2026-12-06T00:00:00", 1_796_515_200_000),
            ("2026-12-06", 1_796_515_200_000),
        ],
    )
    def test_iso_8601(self, text: str, expected: int) -> None:
        """An ISO 8601 time is read with its zone; without one, as UTC."""
        assert expected == parse_since(text, now_ms=0)

    @pytest.mark.parametrize("text", ["", "-5m", "1.5", "10 m", "10min", "1w", "abc"])
    def test_anything_else_is_refused(self, text: str) -> None:
        """Negative or fractional ms, unknown units and words are rejected."""
        with pytest.raises(ValueError, match="expected a duration"):
            parse_since(text)

    def test_before_the_epoch_is_refused(self) -> None:
        """An ISO time before 1970 names the problem."""
        with pytest.raises(ValueError, match="before the epoch"):
            parse_since("1969-12-31T23:59:59Z")


class TestToken:
    """_token: the ``--token [ID=]TOKEN`` split."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("sb-1=eyJ.abc.def", ("sb-1", "eyJ.abc.def")),
            ("eyJ.abc.def", (None, "eyJ.abc.def")),
            ("=eyJ.abc.def", (None, "=eyJ.abc.def")),
            ("sb-1=", (None, "sb-1=")),
        ],
    )
    def test_sandbox_and_token(self, text: str, expected: tuple) -> None:
        """``ID=TOKEN`` names the sandbox; a bare or half-empty value is a token."""
        assert expected == _token(text)


class TestForwardParser:
    """The ``forward`` subcommand's argparse wiring."""

    @staticmethod
    def _parse(*argv: str) -> argparse.Namespace:
        return build_parser().parse_args(["forward", *argv])

    def test_repeatable_sinks_and_since(self) -> None:
        """``--to`` and ``--sandbox`` repeat; ``--since`` becomes ms."""
        args = self._parse(
            "--sandbox", "a", "--sandbox", "b", "--to", "logging",
            "--to", "jsonl=x.jsonl", "--since", "42",
        )  # fmt: skip
        sinks = [SinkSpec("logging"), SinkSpec("jsonl", "x.jsonl")]
        assert (["a", "b"], sinks, 42) == (args.sandbox, args.to, args.since)

    def test_defaults(self) -> None:
        """No ``--to`` (logging later), no history, status on a terminal only."""
        args = self._parse()
        assert ([], None, None, "sandbox", "auto", 1.0) == (
            args.to,
            args.since,
            args.state_file,
            args.prefix,
            args.status,
            args.checkpoint_interval,
        )

    def test_bad_sink_exits_with_usage(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unknown ``--to`` is argparse's usage error (exit 2) naming the value."""
        with pytest.raises(SystemExit) as exc:
            self._parse("--to", "kafka")
        assert (2, True) == (exc.value.code, "'kafka'" in capsys.readouterr().err)


class TestMetricsPort:
    """``--metrics-port`` and ``CSE_FORWARD_METRICS_PORT``."""

    def test_bad_environment_value_is_a_one_line_usage_error(self) -> None:
        """Exit 2 naming the variable; nothing is started."""
        from cse_bridge import config as cfg

        from .commands import environ, run

        done = run(
            "forward",
            "--sandbox",
            "sb",
            "--token",
            "t",
            env=environ(**{cfg.ENV_FORWARD_METRICS_PORT: "http"}),
        )
        assert 2 == done.returncode
        assert f"{cfg.ENV_FORWARD_METRICS_PORT}: not a port number: 'http'" in (
            done.stderr
        )

    def test_flag_wins_over_the_environment(self, monkeypatch) -> None:
        """Argument > environment: the flag's port is the one used."""
        from cse_bridge import config as cfg
        from cse_bridge.cli._forward import _metrics_port

        monkeypatch.setenv(cfg.ENV_FORWARD_METRICS_PORT, "9000")
        parser = build_parser()
        flagged = parser.parse_args(["forward", "--metrics-port", "9464"])
        unflagged = parser.parse_args(["forward"])
        assert (9464, 9000) == (_metrics_port(flagged), _metrics_port(unflagged))

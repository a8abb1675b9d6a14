"""``cse-bridge forward``'s argument helpers: ``--to``, ``--since``, ``--token``."""

from __future__ import annotations

import argparse
import time

import pytest

from cse_bridge.forwarder._cli import (
    SinkSpec,
    _token,
    add_parsers,
    parse_since,
    parse_sink,
)


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
        assert expected == parse_since(text, now=1000.0)

    def test_a_day_ago(self) -> None:
        """``1d`` is 86 400 000 ms before now."""
        now = 1_700_000_000.0
        assert 1_699_913_600_000 == parse_since("1d", now=now)

    def test_now_defaults_to_the_clock(self) -> None:
        """Without *now*, ``0s`` is the current time in ms."""
        before = int(time.time() * 1000)
        actual = parse_since("0s")
        after = int(time.time() * 1000)
        assert (True, True) == (before <= actual, actual <= after)

    @pytest.mark.parametrize("text", ["", "-5m", "1.5", "10 m", "10min", "1w", "abc"])
    def test_anything_else_is_a_usage_error(self, text: str) -> None:
        """Negative or fractional ms, unknown units and words are rejected."""
        with pytest.raises(argparse.ArgumentTypeError, match="expected a duration"):
            parse_since(text)


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
        parser = argparse.ArgumentParser(prog="cse-bridge")
        add_parsers(parser.add_subparsers(dest="command", required=True))
        return parser.parse_args(["forward", *argv])

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

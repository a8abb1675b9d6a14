"""EngineOptions: one typed, frozen object, resolved once."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from cse_bridge.engine import BatchEngine, EngineOptions, EventItem, InMemorySink
from cse_bridge.integrations.logging import EventsHandler


class TestEngineOptions:
    """Argument > environment > default; explicit mistakes raise at once."""

    def test_argument_beats_environment_beats_default(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An argument wins; else the variable; an unparsable variable is ignored."""
        monkeypatch.setenv("CSE_BRIDGE_MAX_QUEUE_SIZE", "77")
        monkeypatch.setenv("CSE_BRIDGE_PACK", "many")
        monkeypatch.setenv("SSL_CERT_FILE", "/env/ca.pem")
        options = EngineOptions.resolve(max_batch_size=9)
        assert (77, 9, 0, "/env/ca.pem") == (
            options.max_queue_size,
            options.max_batch_size,
            options.pack,
            options.ca_file,
        )
        assert 5 == EngineOptions.resolve(max_queue_size=5).max_queue_size

    def test_pack_spans_from_argument_or_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """pack_spans: off by default, CSE_BRIDGE_PACK_SPANS, an argument wins."""
        assert 0 == EngineOptions.resolve().pack_spans
        monkeypatch.setenv("CSE_BRIDGE_PACK_SPANS", "500")
        assert 500 == EngineOptions.resolve().pack_spans
        assert 7 == EngineOptions.resolve(pack_spans=7).pack_spans
        with pytest.raises(ValueError, match=">= 0"):
            EngineOptions.resolve(pack_spans=-1)

    def test_frozen(self) -> None:
        """Options cannot change once built."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            EngineOptions.resolve().pack = 3  # type: ignore[misc]

    def test_engine_takes_options_or_keywords_not_both(self) -> None:
        """BatchEngine(sink, options) or keywords; both is a TypeError."""
        options = EngineOptions.resolve(pack=4, handle_sigterm=False)
        engine = BatchEngine(InMemorySink(), options)
        try:
            assert (options, 4) == (engine.options, engine.pack)
        finally:
            engine.shutdown(0.1)
        with pytest.raises(TypeError, match="not both"):
            BatchEngine(InMemorySink(), options, pack=2)

    @pytest.mark.parametrize(
        ("options", "error"),
        [({"max_queue_size": 0}, ValueError), ({"no_such_knob": 1}, TypeError)],
    )
    def test_the_handler_validates_when_built(
        self, options: dict[str, object], error: type[Exception]
    ) -> None:
        """A bad engine keyword raises from EventsHandler(), not at the first record."""
        with pytest.raises(error):
            EventsHandler(gateway_url="http://127.0.0.1:9", **options)


class TestSpoolOptions:
    """The spool is off unless a directory is given; its knobs resolve alike."""

    def test_off_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No argument and no variable: no spool, and the engine has no spooler."""
        monkeypatch.delenv("CSE_BRIDGE_SPOOL_DIR", raising=False)
        options = EngineOptions.resolve(handle_sigterm=False)
        engine = BatchEngine(InMemorySink(), options)
        try:
            assert (None, None) == (options.spool_dir, engine.spooler)
        finally:
            engine.shutdown(0.1)

    def test_argument_beats_environment(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """spool_dir= wins over CSE_BRIDGE_SPOOL_DIR; ~ is expanded; the numbers
        come from their variables."""
        monkeypatch.setenv("CSE_BRIDGE_SPOOL_DIR", "~/spool-from-env")
        monkeypatch.setenv("CSE_BRIDGE_SPOOL_MAX_BYTES", "1000000")
        monkeypatch.setenv("CSE_BRIDGE_SPOOL_AFTER", "2.5")
        from_env = EngineOptions.resolve()
        assert (os.path.expanduser("~/spool-from-env"), 1000000, 2.5) == (
            from_env.spool_dir,
            from_env.spool_max_bytes,
            from_env.spool_after,
        )
        assert str(tmp_path) == EngineOptions.resolve(spool_dir=tmp_path).spool_dir

    @pytest.mark.parametrize(
        "options",
        [{"spool_dir": " "}, {"spool_max_bytes": 1000}, {"spool_after": -1.0}],
    )
    def test_mistakes_raise_when_built(self, options: dict[str, object]) -> None:
        """An empty directory, a bound under 64 KiB, a negative delay: ValueError."""
        with pytest.raises(ValueError, match=r"spool_dir|expected"):
            EngineOptions.resolve(**options)  # type: ignore[arg-type]

    def test_nothing_is_written_while_the_gateway_answers(self, tmp_path: Path) -> None:
        """A spool directory alone writes nothing: only what would be lost goes."""
        engine = BatchEngine(
            InMemorySink(), spool_dir=str(tmp_path / "spool"), handle_sigterm=False
        )
        for index in range(50):
            engine.submit(EventItem("log.info", {"i": index}))
        assert engine.flush(5.0)
        assert engine.shutdown(1.0)
        assert (50, 0) == (engine.stats().sent, engine.stats().spooled)
        assert not (tmp_path / "spool").exists()

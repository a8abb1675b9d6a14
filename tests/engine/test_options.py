"""EngineOptions: one typed, frozen object, resolved once."""

from __future__ import annotations

import dataclasses

import pytest

from cse_bridge.engine import BatchEngine, EngineOptions, InMemorySink
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

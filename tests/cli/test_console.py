"""The console of ``forward`` and ``demo``: on for the command, off after it."""

from __future__ import annotations

import logging

import pytest

from cse_bridge.cli._console import console_logging


class TestConsoleLogging:
    """console_logging: the root logger as it was once the command ends."""

    def test_warnings_reach_stderr_during_the_command_only(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A library's warning is shown inside the block; after it, not by us."""
        root = logging.getLogger()
        before = (list(root.handlers), root.level)
        library = logging.getLogger("some.library")
        with console_logging() as handlers:
            assert 2 == len(handlers)
            assert all(handler in root.handlers for handler in handlers)
            library.warning("inside")
        library.warning("outside")
        err = capsys.readouterr().err
        assert "cse-bridge: WARNING some.library: inside" in err
        assert "some.library: outside" not in err
        assert before == (list(root.handlers), root.level)

    def test_a_failing_command_leaves_no_handler(self) -> None:
        """The command raised (a usage error, say): the handlers go all the same."""
        root = logging.getLogger()
        before = (list(root.handlers), root.level)
        with pytest.raises(RuntimeError), console_logging():
            raise RuntimeError("the command failed")
        assert before == (list(root.handlers), root.level)

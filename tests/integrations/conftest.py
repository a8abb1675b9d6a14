"""Isolation for producer tests: logging, hooks, structlog and engines are restored."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from cse_bridge.engine import _lifecycle
from cse_bridge.testing import LocalGateway


@pytest.fixture(autouse=True)
def _isolate() -> Iterator[None]:
    """Restore root handlers/level, logger levels, excepthooks; stop new engines."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {
        name: logger.level
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    hooks = sys.excepthook, threading.excepthook
    engines = set(_lifecycle._engines)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, logger in logging.Logger.manager.loggerDict.items():
            if isinstance(logger, logging.Logger):
                logger.setLevel(levels.get(name, logging.NOTSET))
        sys.excepthook, threading.excepthook = hooks
        for engine in set(_lifecycle._engines) - engines:
            engine.shutdown(2.0)
        if "structlog" in sys.modules:
            sys.modules["structlog"].reset_defaults()


@pytest.fixture
def local_gateway() -> Iterator[LocalGateway]:
    """A running local gateway with a sandbox token and a reading key."""
    with LocalGateway() as gateway:
        yield gateway

"""The public surface: explicit exports, and a core import that stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "cse_bridge",
    "cse_bridge.aio",
    "cse_bridge.client",
    "cse_bridge.client.protocol",
    "cse_bridge.engine",
    "cse_bridge.forwarder",
    "cse_bridge.gateway",
    "cse_bridge.subscriber",
    "cse_bridge.subscriber.protocol",
]


def _public_names(module_name: str) -> set[str]:
    """
    Every public name a package binds, but submodules and ``__future__`` flags.

    Lazy exports (``cse_bridge``, ``cse_bridge.gateway``) are bound on first use: each
    name of ``__all__`` is looked up first.
    """
    module = importlib.import_module(module_name)
    for name in module.__all__:
        getattr(module, name)
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, type(sys))  # submodules are not exports
        and name != "annotations"  # from __future__ import annotations
    }


class TestExports:
    """Each package's ``__all__``."""

    @pytest.mark.parametrize("module_name", PACKAGES)
    def test_all_is_complete(self, module_name: str) -> None:
        """``__all__`` names exactly the public names (ruff's RUF022 sorts it)."""
        module = importlib.import_module(module_name)
        exported = [name for name in module.__all__ if name != "__version__"]
        assert _public_names(module_name) == set(exported)

    @pytest.mark.parametrize("module_name", PACKAGES)
    def test_every_export_exists(self, module_name: str) -> None:
        """Every name in ``__all__`` can be imported."""
        module = importlib.import_module(module_name)
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert [] == missing

    def test_version_is_the_installed_distribution(self) -> None:
        """``__version__`` comes from the installed package metadata."""
        from importlib.metadata import version

        import cse_bridge

        assert version("cse-bridge") == cse_bridge.__version__


class TestCoreImportCost:
    """What ``import cse_bridge`` pulls in."""

    def test_core_imports_no_optional_dependency(self) -> None:
        """The core loads no structlog, OpenTelemetry, Redis, aiohttp or JWT module."""
        code = (
            "import sys, cse_bridge, cse_bridge.client\n"
            "heavy = ('structlog', 'opentelemetry', 'redis', 'aiohttp', 'jwt', "
            "'cse_bridge.gateway')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy "
            "or m.startswith('cse_bridge.gateway')))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert "[]" == out.stdout.strip()

    def test_aio_imports_only_its_extra(self) -> None:
        """``cse_bridge.aio`` loads aiohttp, but no Redis, web server or gateway."""
        code = (
            "import sys, cse_bridge.aio\n"
            "heavy = ('structlog', 'opentelemetry', 'redis', 'jwt', 'httpx', "
            "'starlette', 'uvicorn')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy "
            "or m.startswith('cse_bridge.gateway')), 'aiohttp' in sys.modules)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert "[] True" == out.stdout.strip()


class TestLazyExports:
    """The main entry points, importable from ``cse_bridge`` on first use."""

    def test_same_objects_as_their_modules(self) -> None:
        """Each lazy name is the class its own module defines."""
        from cse_bridge import (
            EventsHandler,
            EventsLogExporter,
            EventsProcessor,
            EventsSpanExporter,
            PubSubClient,
        )
        from cse_bridge.integrations.logging import EventsHandler as Handler
        from cse_bridge.integrations.otel import EventsLogExporter as Logs
        from cse_bridge.integrations.otel import EventsSpanExporter as Spans
        from cse_bridge.integrations.structlog import EventsProcessor as Processor
        from cse_bridge.subscriber import PubSubClient as Client

        expected = [Handler, Logs, Processor, Spans, Client]
        actual = [
            EventsHandler,
            EventsLogExporter,
            EventsProcessor,
            EventsSpanExporter,
            PubSubClient,
        ]
        assert expected == actual

    def test_unknown_name_is_an_attribute_error(self) -> None:
        """A name that is not exported raises AttributeError, as for any module."""
        import cse_bridge

        with pytest.raises(AttributeError, match="NoSuchThing"):
            _ = cse_bridge.NoSuchThing  # type: ignore[attr-defined]

    def test_missing_extra_names_the_install(self) -> None:
        """Without structlog, importing EventsProcessor names the extra to install."""
        code = (
            "import sys\n"
            "sys.modules['structlog'] = None\n"
            "try:\n"
            "    from cse_bridge import EventsProcessor\n"
            "except ModuleNotFoundError as exc:\n"
            "    print(exc)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        expected = (
            "cse_bridge.EventsProcessor needs the structlog extra (structlog is not "
            "installed): pip install 'cse-bridge[structlog]'"
        )
        assert expected == out.stdout.strip()

"""Fixtures: a real gateway on ephemeral ports, with the memory or the sqlite store."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cse_bridge.gateway import GatewayConfig, GatewayThread

from .helpers import API_KEYS, CONFIG_ENV, SECRET


def make_gateway_config(
    store_url: str = "memory://", **overrides: object
) -> GatewayConfig:
    """A config on free ports with the test secret and API keys."""
    options: dict[str, object] = {
        "http_port": 0,
        "pubsub_port": 0,
        "store_url": store_url,
        "secret": SECRET,
        "api_keys": API_KEYS,
    }
    options.update(overrides)
    return GatewayConfig(**options)  # type: ignore[arg-type]


@pytest.fixture
def gateway() -> Iterator[GatewayThread]:
    """A running gateway with the memory store."""
    with GatewayThread(make_gateway_config()) as gw:
        yield gw


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An sqlite store URL in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture
def sqlite_gateway(sqlite_url: str) -> Iterator[GatewayThread]:
    """A running gateway with the sqlite store."""
    with GatewayThread(make_gateway_config(sqlite_url)) as gw:
        yield gw


@pytest.fixture
def clean_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No COMPUTESDK_* or CSE_GATEWAY_* variable of the shell leaks into a test."""
    for name in CONFIG_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _restore_sigterm() -> Iterator[None]:
    """Engines built in a test may install their SIGTERM handler: put pytest's back."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)

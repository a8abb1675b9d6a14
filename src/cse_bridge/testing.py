"""
Helpers for testing your own logging setup against a real, local events gateway.

``LocalGateway`` runs the project's gateway on free ports in a thread and reads back
what arrived; ``capture_events()`` also points the ``COMPUTESDK_*`` environment at it,
so an ``EventsHandler()`` built inside ships there. ``InMemorySink`` and ``FakeClock``
test the engine without any network. The gateway needs the ``gateway`` extra.

As a pytest plugin (not registered automatically), in your ``conftest.py``::

    pytest_plugins = ["cse_bridge.testing"]

    def test_login_is_logged(cse_gateway):
        logging.getLogger("app").warning("login failed", extra={"user": "ann"})
        (event,) = cse_gateway.read_events(type="log.warning")
        assert event.data["attributes"] == {"user": "ann"}
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING

from .client import EventsClient
from .config import ENV_ACCESS_TOKEN, ENV_API_KEY, ENV_GATEWAY_URL
from .engine import FakeClock, InMemorySink, get_shared_engine
from .models import SandboxEvent

if TYPE_CHECKING:
    from .gateway import GatewayThread

__all__ = ["FakeClock", "InMemorySink", "LocalGateway", "capture_events"]


class LocalGateway:
    """
    A gateway on free ports with one sandbox, its access token and a reading API key.

    ``start()`` blocks until it serves (at most 10 s); a context manager. Safe to read
    from any thread.

    Args:
        sandbox_id: The sandbox the access token names.
        store_url: ``memory://`` (default) or ``sqlite:///path``.
    """

    def __init__(
        self, sandbox_id: str = "test-sandbox", *, store_url: str = "memory://"
    ) -> None:
        self.sandbox_id = sandbox_id
        self.store_url = store_url
        self.api_key = "test-" + secrets.token_hex(8)
        self.access_token = ""
        """The sandbox's token, set by ``start()``."""
        self._thread: GatewayThread | None = None

    @property
    def http_url(self) -> str:
        """The gateway's base URL."""
        if self._thread is None:
            raise RuntimeError("the gateway is not running")
        return self._thread.http_url

    @property
    def pubsub_host(self) -> str:
        """The pub/sub host (``PubSubClient(host=...)``)."""
        if self._thread is None:
            raise RuntimeError("the gateway is not running")
        return self._thread.pubsub_host

    @property
    def pubsub_port(self) -> int:
        """The pub/sub port (``PubSubClient(port=...)``)."""
        if self._thread is None:
            raise RuntimeError("the gateway is not running")
        return self._thread.pubsub_port

    @property
    def environ(self) -> dict[str, str]:
        """The ``COMPUTESDK_*`` variables that point producers and readers here."""
        return {
            ENV_GATEWAY_URL: self.http_url,
            ENV_ACCESS_TOKEN: self.access_token,
            ENV_API_KEY: self.api_key,
        }

    def start(self) -> LocalGateway:
        """Start the gateway; return self."""
        from .gateway import GatewayConfig, GatewayThread

        config = GatewayConfig(
            http_port=0,
            pubsub_port=0,
            store_url=self.store_url,
            secret=secrets.token_hex(32),
            api_keys={self.api_key: 1},
        )
        self._thread = GatewayThread(config).start()
        self.access_token = self._thread.issue_token(self.sandbox_id, 1)
        return self

    def stop(self) -> None:
        """Stop the gateway (what arrived is lost with the memory store). Idempotent."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    def token_for(self, sandbox_id: str) -> str:
        """Return an access token of another sandbox of the same workspace."""
        if self._thread is None:
            raise RuntimeError("the gateway is not running")
        return self._thread.issue_token(sandbox_id, 1)

    def flush(self, timeout: float = 5.0) -> bool:
        """
        Wait until the shared engine of this gateway and token has sent what it has.

        Blocks at most *timeout* seconds. Returns True if everything was sent in time.
        """
        engine = get_shared_engine(
            gateway_url=self.http_url, access_token=self.access_token
        )
        return engine.flush(timeout)

    def read_events(
        self,
        sandbox_id: str | None = None,
        *,
        type: str | None = None,
        flush: bool = True,
    ) -> list[SandboxEvent]:
        """
        Return every event stored for the sandbox so far, oldest first.

        Args:
            sandbox_id: Another sandbox of the workspace; default: ours.
            type: Only events of exactly this type.
            flush: First wait (up to 5 s) for the shared engine of this gateway.
        """
        if flush:
            self.flush()
        with EventsClient(gateway_url=self.http_url, api_key=self.api_key) as client:
            return list(client.iter_events(sandbox_id or self.sandbox_id, type=type))

    def __enter__(self) -> LocalGateway:
        return self.start() if self._thread is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def capture_events(sandbox_id: str = "test-sandbox") -> Iterator[LocalGateway]:
    """
    Run a ``LocalGateway`` and point ``COMPUTESDK_*`` at it while the block runs.

    Handlers and processors built inside the block (without explicit credentials)
    ship to it; ``read_events()`` returns what arrived. The environment is restored
    and the gateway stopped on exit.
    """
    with LocalGateway(sandbox_id) as gateway:
        saved = {name: os.environ.get(name) for name in gateway.environ}
        os.environ.update(gateway.environ)
        try:
            yield gateway
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


try:
    import pytest
except ImportError:  # pragma: no cover - the helpers work without pytest
    pass
else:

    @pytest.fixture
    def cse_gateway() -> Iterator[LocalGateway]:
        """A ``capture_events()`` gateway for one test."""
        with capture_events() as gateway:
            yield gateway

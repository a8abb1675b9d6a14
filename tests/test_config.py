"""Configuration resolvers (cse_bridge.config): argument > environment > default."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest

from cse_bridge import config as cfg

pytestmark = pytest.mark.usefixtures("clean_config_env")


class Setting(NamedTuple):
    """One string setting: its resolver, variable, sample values and default."""

    resolve: Callable[[str | None], str | None]
    env: str
    arg: str
    env_value: str
    default: str | None


STRING_SETTINGS = [
    Setting(
        cfg.resolve_gateway_url,
        cfg.ENV_GATEWAY_URL,
        "http://arg:1",
        "http://env:2",
        cfg.DEFAULT_GATEWAY_URL,
    ),
    Setting(cfg.resolve_api_key, cfg.ENV_API_KEY, "arg-key", "env-key", None),
    Setting(
        cfg.resolve_access_token, cfg.ENV_ACCESS_TOKEN, "arg-token", "env-token", None
    ),
    Setting(
        cfg.resolve_pubsub_host,
        cfg.ENV_PUBSUB_HOST,
        "arg-host",
        "env-host",
        cfg.DEFAULT_PUBSUB_HOST,
    ),
]
by_env = pytest.mark.parametrize(
    "setting", STRING_SETTINGS, ids=[s.env for s in STRING_SETTINGS]
)


class TestStringSettings:
    """The URL, key, token and host resolvers."""

    @by_env
    def test_default(self, setting: Setting) -> None:
        """Without argument or environment the default applies."""
        assert setting.default == setting.resolve(None)

    @by_env
    def test_environment_beats_default(
        self, monkeypatch: pytest.MonkeyPatch, setting: Setting
    ) -> None:
        """The environment variable beats the default."""
        monkeypatch.setenv(setting.env, setting.env_value)
        assert setting.env_value == setting.resolve(None)

    @by_env
    def test_argument_beats_environment(
        self, monkeypatch: pytest.MonkeyPatch, setting: Setting
    ) -> None:
        """An explicit argument beats the environment variable."""
        monkeypatch.setenv(setting.env, setting.env_value)
        assert setting.arg == setting.resolve(setting.arg)

    @by_env
    def test_empty_environment_is_unset(
        self, monkeypatch: pytest.MonkeyPatch, setting: Setting
    ) -> None:
        """An empty environment variable counts as unset."""
        monkeypatch.setenv(setting.env, "")
        assert setting.default == setting.resolve(None)

    def test_gateway_url_loses_trailing_slashes(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The gateway URL never ends with a slash, whatever its source."""
        monkeypatch.setenv(cfg.ENV_GATEWAY_URL, "http://env:2//")
        expected = ("http://arg:1", "http://env:2")
        assert expected == (
            cfg.resolve_gateway_url("http://arg:1/"),
            cfg.resolve_gateway_url(),
        )


class TestPubSubPort:
    """The pub/sub port: invalid environment values fall back to the default."""

    def test_default(self) -> None:
        """Without argument or environment the port is 6380."""
        expected = 6380
        assert expected == cfg.resolve_pubsub_port()

    def test_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A valid environment value is used."""
        monkeypatch.setenv(cfg.ENV_PUBSUB_PORT, "7000")
        expected = 7000
        assert expected == cfg.resolve_pubsub_port()

    def test_argument_beats_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An explicit port beats the environment."""
        monkeypatch.setenv(cfg.ENV_PUBSUB_PORT, "7000")
        expected = 7001
        assert expected == cfg.resolve_pubsub_port(7001)

    @pytest.mark.parametrize(
        "value", ["", "abc", "0", "-1", "65536", "70000", "6380.5"]
    )
    def test_invalid_environment_means_default(
        self, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        """An invalid environment value falls back to the default, like the SDK."""
        monkeypatch.setenv(cfg.ENV_PUBSUB_PORT, value)
        expected = cfg.DEFAULT_PUBSUB_PORT
        assert expected == cfg.resolve_pubsub_port()

    @pytest.mark.parametrize("port", [0, -1, 65536, True])
    def test_invalid_argument_raises(self, port: int) -> None:
        """An invalid explicit port is a programming error: ValueError."""
        with pytest.raises(ValueError, match="port"):
            cfg.resolve_pubsub_port(port)

    def test_boundaries(self) -> None:
        """1 and 65535 are valid ports."""
        expected = (1, 65535)
        assert expected == (cfg.resolve_pubsub_port(1), cfg.resolve_pubsub_port(65535))


class TestDefaults:
    """The SDK's documented defaults."""

    def test_values(self) -> None:
        """Defaults are those of docs/protocol.md#protocol-configuration, in seconds."""
        expected = (
            "https://events.computesdk.com",
            "events.computesdk.com",
            6380,
            30.0,
            1.0,
        )
        assert expected == (
            cfg.DEFAULT_GATEWAY_URL,
            cfg.DEFAULT_PUBSUB_HOST,
            cfg.DEFAULT_PUBSUB_PORT,
            cfg.DEFAULT_TIMEOUT,
            cfg.DEFAULT_RECONNECT_DELAY,
        )

    def test_environment_names(self) -> None:
        """The environment variable names are the SDK's (and the gateway's own)."""
        expected = [
            "COMPUTESDK_API_KEY",
            "COMPUTESDK_ACCESS_TOKEN",
            "COMPUTESDK_GATEWAY_URL",
            "COMPUTESDK_PUBSUB_HOST",
            "COMPUTESDK_PUBSUB_PORT",
            "CSE_GATEWAY_SECRET",
            "CSE_GATEWAY_API_KEYS",
        ]
        assert expected == [
            cfg.ENV_API_KEY,
            cfg.ENV_ACCESS_TOKEN,
            cfg.ENV_GATEWAY_URL,
            cfg.ENV_PUBSUB_HOST,
            cfg.ENV_PUBSUB_PORT,
            cfg.ENV_GATEWAY_SECRET,
            cfg.ENV_GATEWAY_API_KEYS,
        ]


class TestTlsSettings:
    """Pub/sub TLS and the CA bundle: argument > variable > default."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [("", False), ("0", False), ("false", False), ("1", True), ("TRUE", True)],
    )
    def test_pubsub_tls_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
    ) -> None:
        """Yes and no in the usual spellings; the argument wins."""
        monkeypatch.setenv(cfg.ENV_PUBSUB_TLS, value)
        assert expected == cfg.resolve_pubsub_tls()
        assert cfg.resolve_pubsub_tls(not expected) is (not expected)

    def test_pubsub_tls_refuses_a_typo(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A value that is neither yes nor no is an error, not a silent no."""
        monkeypatch.setenv(cfg.ENV_PUBSUB_TLS, "ture")
        with pytest.raises(ValueError, match="COMPUTESDK_PUBSUB_TLS must be 1 or 0"):
            cfg.resolve_pubsub_tls()

    def test_ca_file_order(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The argument, else SSL_CERT_FILE, else REQUESTS_CA_BUNDLE, else None."""
        for name in cfg.ENV_CA_FILES:
            monkeypatch.delenv(name, raising=False)
        assert cfg.resolve_ca_file() is None
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/b.pem")
        assert "/b.pem" == cfg.resolve_ca_file()
        monkeypatch.setenv("SSL_CERT_FILE", "/a.pem")
        assert "/a.pem" == cfg.resolve_ca_file()
        assert "/c.pem" == cfg.resolve_ca_file("/c.pem")

"""The TLS context every client of ours verifies a gateway's certificate with."""

from __future__ import annotations

import ssl

__all__ = ["client_tls_context"]


def client_tls_context(ca_file: str | None) -> ssl.SSLContext:
    """
    Return a context that verifies the server's certificate and host name.

    *ca_file* (a PEM bundle) replaces the system's trusted CAs; None keeps them.

    Raises:
        ValueError: *ca_file* cannot be read or holds no certificate.
    """
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ValueError(f"cannot load the CA bundle {ca_file}: {reason}") from None

"""The gateway's TLS: one server context for both ports, from a PEM cert and key."""

from __future__ import annotations

import ssl

__all__ = ["server_tls_context"]


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """
    Return a server context with *cert_file* (the chain, PEM) and *key_file*.

    TLS 1.2 at least; the rest are Python's defaults for servers.

    Raises:
        ValueError: A file is missing or unreadable, or they do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ValueError(
            f"cannot load the TLS certificate {cert_file} and key {key_file}: {reason}"
        ) from None
    return context

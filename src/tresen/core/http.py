"""HTTP helpers shared by the relay and the gateway."""

from __future__ import annotations

import functools
import ssl

__all__ = [
    "WRITE_FRAMES_EXTENSION",
    "WS_BEARER_PREFIX",
    "WS_SUBPROTOCOL",
    "bearer_token",
    "subprotocol_token",
    "tls_context",
]

# Browsers cannot set headers on a WebSocket upgrade, so a browser device offers its token as
# a subprotocol, `tresen.bearer.<token>`, beside `tresen.v1`, which the relay selects.
WS_SUBPROTOCOL = "tresen.v1"
WS_BEARER_PREFIX = "tresen.bearer."

WRITE_FRAMES_EXTENSION = "tresen.write_frames"
"""The ASGI scope extension of a WebSocket served by ``tresen.cli.ws_flow.FramesProtocol``: a
callable that writes a list of binary messages to the socket at once (one system call) and
returns True, or writes nothing and returns False when they must go through ASGI's ``send``
(the socket's buffer is full, or the connection is closing)."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme in any case);
    ``None`` for no header or another scheme."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def subprotocol_token(subprotocols: list[str]) -> str | None:
    """The token a browser offers as the subprotocol ``tresen.bearer.<token>``; ``None`` if
    it offers none."""
    for protocol in subprotocols:
        if protocol.startswith(WS_BEARER_PREFIX):
            return protocol.removeprefix(WS_BEARER_PREFIX) or None
    return None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings of every outgoing HTTP client, made once per process.

    httpx otherwise builds a context for each client and loads the certificate authorities
    into it (about 25 ms of CPU each time), which a gateway or a test run pays for every
    client it opens. One context serves any number of connections and threads.
    """
    import httpx

    return httpx.create_ssl_context()

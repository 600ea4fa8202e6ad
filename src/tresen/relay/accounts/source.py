"""Where a request comes from: the socket peer, or the client a trusted proxy names.

``X-Forwarded-For`` and ``Forwarded`` are set by whoever sends the request, so they are read
only when the peer is one of the operator's ``trusted_proxies``, and then from the right: each
trusted hop vouches for the one before it, and the first untrusted address is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import Headers

__all__ = ["Source", "client_source", "request_source"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"


@lru_cache(maxsize=16)
def _networks(entries: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _address(raw: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(value: str) -> str:
    """The address of one ``for=`` value of RFC 7239: quoted, IPv6 in brackets, maybe a port."""
    value = value.strip().strip('"')
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _hops(headers: Headers) -> list[str]:
    """The client chain the proxies reported, oldest first (X-Forwarded-For, else Forwarded).

    X-Forwarded-For wins because the common proxies (nginx, HAProxy, cloud load balancers)
    append to it and pass a client's own ``Forwarded`` through untouched.
    """
    xff = headers.getlist("x-forwarded-for")
    if xff:
        return [hop.strip() for line in xff for hop in line.split(",")]
    hops = []
    for line in headers.getlist("forwarded"):
        for element in line.split(","):
            found = ""
            for pair in element.split(";"):
                name, _, value = pair.partition("=")
                if name.strip().lower() == "for":
                    found = _forwarded_for(value)
            hops.append(found)
    return hops


def client_source(peer: str | None, headers: Headers, trusted_proxies: Sequence[str]) -> str:
    """The address registration limits are counted against."""
    current = _address(peer or "")
    if current is None:
        return (peer or UNKNOWN)[:64]
    trusted = _networks(tuple(trusted_proxies))
    if not any(current in net for net in trusted):
        return str(current)
    for raw in reversed(_hops(headers)):
        hop = _address(raw)
        if hop is None:
            break  # a proxy we trust wrote something unreadable: count against that proxy
        current = hop
        if not any(hop in net for net in trusted):
            break
    return str(current)


def request_source(request: Request) -> str:
    """FastAPI dependency: :func:`client_source` of this request under the relay's settings."""
    trusted: list[str] = request.app.state.relay.settings.trusted_proxies
    peer = request.client.host if request.client else None
    return client_source(peer, request.headers, trusted)


Source = Annotated[str, Depends(request_source)]

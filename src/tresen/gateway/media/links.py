"""Fetching a media ``link`` without server-side request forgery.

A link is the integration's input, but the request leaves from the gateway's network, which
can reach what the integration cannot (the loopback interface, the office network, a cloud's
metadata service at 169.254.169.254). So the host is resolved first and every address it
resolves to is checked (loopback, private, link-local, multicast, unspecified, reserved, also
the IPv4 address inside an IPv6 one: mapped, NAT64, 6to4, Teredo); the connection then goes
to the checked address, never to the name again, so a second DNS answer cannot swap it.
Redirects are followed by hand, each hop checked the same way. Size and total time are
bounded; nothing is read past the limit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from tresen.core.http import tls_context

__all__ = ["Fetched", "LinkFetcher", "LinkRefused", "Resolver", "address_allowed"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Host and port to the addresses the host resolves to (as text)."""

MAX_URL_CHARS = 2048
_READ_BYTES = 64 * 1024


class LinkRefused(Exception):
    """The link cannot be fetched; the message says why, for the integration to read."""


@dataclass(frozen=True, slots=True)
class Fetched:
    mime_type: str | None
    """The response's ``Content-Type`` without parameters (``None`` when it gave none)."""
    size: int
    filename: str | None
    """The last segment of the final URL's path, if any."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and leads to: mapped, NAT64, 6to4, Teredo."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _forbidden(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded(address)
        if embedded is not None and _forbidden(embedded):
            return True
        if address.ipv4_mapped is not None:
            return False  # a public IPv4 address, written as IPv6
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or not address.is_global
    )


def address_allowed(address: Address, allowed: Sequence[Network] = ()) -> bool:
    """Whether a link may lead to ``address``: a public address, or one in ``allowed``."""
    mapped = _embedded(address) if isinstance(address, ipaddress.IPv6Address) else None
    for candidate in (address, mapped):
        if candidate is not None and any(candidate in network for network in allowed):
            return True
    return not _forbidden(address)


class LinkFetcher:
    """Fetches links into files, within ``timeout_s`` and ``redirects`` hops."""

    def __init__(
        self,
        *,
        timeout_s: float,
        redirects: int,
        allowed_networks: Sequence[str] = (),
        resolver: Resolver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.redirects = redirects
        self.allowed: list[Network] = [
            ipaddress.ip_network(n, strict=False) for n in allowed_networks
        ]
        self.resolve = resolver or system_resolver
        self._transport = transport

    async def fetch(self, url: str, sink: BinaryIO, *, limit: int) -> Fetched:
        """Write the body of ``url`` to ``sink``: at most ``limit`` bytes, else
        :class:`LinkRefused` (also for addresses not allowed, errors and timeouts)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._fetch(url, sink, limit)
        except TimeoutError:
            raise LinkRefused(f"fetching the link took longer than {self.timeout_s:g} s") from None

    async def _fetch(self, url: str, sink: BinaryIO, limit: int) -> Fetched:
        async with httpx.AsyncClient(
            transport=self._transport,
            verify=tls_context(),
            follow_redirects=False,
            trust_env=False,
            timeout=self.timeout_s,
        ) as http:
            for _ in range(self.redirects + 1):
                target, host_header, host = await self._checked(url)
                request = http.build_request(
                    "GET",
                    target,
                    headers={"Host": host_header, "Accept": "*/*"},
                    extensions={"sni_hostname": host} if url.startswith("https:") else {},
                )
                try:
                    response = await http.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise LinkRefused(
                        f"the link could not be fetched ({type(exc).__name__})"
                    ) from None
                try:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise LinkRefused(f"the link answered HTTP {response.status_code}")
                    return await self._body(url, response, sink, limit)
                finally:
                    await response.aclose()
            raise LinkRefused(f"the link redirects more than {self.redirects} times")

    async def _checked(self, url: str) -> tuple[str, str, str]:
        """The URL to connect to (the host replaced by its checked address), the ``Host``
        header and the host name."""
        if len(url) > MAX_URL_CHARS:
            raise LinkRefused(f"the link is longer than {MAX_URL_CHARS} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise LinkRefused("the link is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LinkRefused("the link must be an http or https URL")
        if parts.username is not None or parts.password is not None:
            raise LinkRefused("the link must not carry a user name or password")
        host = parts.hostname
        port = port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                found = await self.resolve(host, port)
            except OSError:
                raise LinkRefused(f"the host {host[:80]} of the link does not resolve") from None
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
        if not addresses:
            raise LinkRefused(f"the host {host[:80]} of the link does not resolve")
        for address in addresses:
            if not address_allowed(address, self.allowed):
                raise LinkRefused(
                    f"the link leads to {address}, a loopback, private, link-local or "
                    "reserved address, which this gateway does not fetch"
                )
        chosen = addresses[0]
        literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
        default_port = port == (443 if parts.scheme == "https" else 80)
        host_header = host if default_port else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if default_port else f"[{host}]:{port}"
        target = parts._replace(netloc=f"{literal}:{port}", fragment="").geturl()
        return target, host_header, host

    async def _body(
        self, url: str, response: httpx.Response, sink: BinaryIO, limit: int
    ) -> Fetched:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise LinkRefused(f"the linked file is larger than {limit} bytes")
        size = 0
        try:
            async for block in response.aiter_bytes(_READ_BYTES):
                size += len(block)
                if size > limit:
                    raise LinkRefused(f"the linked file is larger than {limit} bytes")
                sink.write(block)
        except httpx.HTTPError as exc:
            raise LinkRefused(f"the link broke off ({type(exc).__name__})") from None
        content_type = response.headers.get("content-type")
        mime = content_type.split(";", 1)[0].strip().lower() if content_type else None
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or None
        return Fetched(mime_type=mime or None, size=size, filename=name)

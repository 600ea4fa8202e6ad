"""Prometheus metrics: what the relay and the gateway share (``prometheus_client``).

Each app instance has a registry of its own (never the library's global one: several relays
run in one test process), exposed at ``/metrics`` (:func:`metrics_response`) or on a port of
its own (:func:`serve_metrics_port`). Labels name kinds, routes, codes and outcomes, never an
account, a device, a phone number or anything else about a person.

Counting on the hot path is an increment of a counter child resolved in advance; gauges that
need a database query are sampled by a task (:class:`Sampler`), never computed per scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import start_http_server
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tresen.core.http import bearer_token
from tresen.core.logging import get_logger
from tresen.core.settings import MetricsSettings, is_loopback

__all__ = [
    "HttpMetrics",
    "Sampler",
    "metrics_response",
    "route_of",
    "serve_metrics_port",
]

log = get_logger("tresen.metrics")

ROUTE_KEY = "tresen.route"
"""Scope key for a route answered in front of the router (the gateway's messages fast path)."""

_PROXY_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-real-ip")


def route_of(scope: Scope) -> str:
    """The route template a request matched (``/v1/keys/{account_id}``), never its path: a
    path can name an account, and every distinct path would be a series of its own."""
    fixed = scope.get(ROUTE_KEY)
    if fixed is not None:
        return str(fixed)
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if "endpoint" in scope:
        # A mounted app (static files): its mount point.
        return f"{scope.get('root_path', '')}/*"
    return "unmatched"


class HttpMetrics:
    """ASGI middleware: counts HTTP requests by route template and status class."""

    def __init__(self, app: ASGIApp, requests: Counter) -> None:
        self.app = app
        self._requests = requests
        self._children: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException:
            status = status or 500
            raise
        finally:
            key = (route_of(scope), f"{status // 100}xx" if status else "none")
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._requests.labels(*key)
            child.inc()


def _allowed(request: Request, settings: MetricsSettings, server_host: str) -> tuple[int, str]:
    """(0, "") when ``request`` may read the metrics, else the status and why not."""
    if settings.token is not None:
        given = bearer_token(request.headers.get("authorization")) or ""
        if hmac.compare_digest(given.encode(), settings.token.get_secret_value().encode()):
            return 0, ""
        return 401, "send the token of metrics.token as Authorization: Bearer"
    proxied = any(name in _PROXY_HEADERS for name, _ in request.scope.get("headers") or ())
    if is_loopback(server_host) and not proxied:
        return 0, ""
    return 403, "metrics need metrics.token (or metrics.port) on a server that others reach"


def metrics_response(
    request: Request, registry: CollectorRegistry, settings: MetricsSettings, server_host: str
) -> Response:
    """The answer to ``GET /metrics``: the exposition, or why not."""
    if not settings.enabled or settings.port is not None:
        return PlainTextResponse("not found", status_code=404)
    status, why = _allowed(request, settings, server_host)
    if status:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return PlainTextResponse(why, status_code=status, headers=headers)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@contextlib.contextmanager
def serve_metrics_port(registry: CollectorRegistry, settings: MetricsSettings) -> Iterator[None]:
    """Serve ``registry`` on ``metrics.host:metrics.port`` (a thread) while the block runs;
    nothing when no port is set or metrics are off."""
    if not settings.enabled or settings.port is None:
        yield
        return
    server, thread = start_http_server(settings.port, settings.host, registry)
    log.info("metrics served", host=settings.host, port=settings.port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Sampler:
    """Runs ``sample()`` every ``interval_s`` (first at once) until closed; a failing sample
    is logged and tried again next time."""

    def __init__(self, name: str, interval_s: float, sample: Callable[[], Awaitable[None]]):
        self.name = name
        self.interval_s = interval_s
        self._sample = sample
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sample-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._sample()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("metrics sample failed", sample=self.name, error=type(exc).__name__)
            await asyncio.sleep(self.interval_s)

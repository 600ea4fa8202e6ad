"""Helpers of the webhook tests: a receiver that records what it gets and answers as it is
told, the receiving side of the handshake, and uvicorn serving an app on a free port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import support

from tresen.core.clock import ManualClock
from tresen.gateway.webhooks import verify

APP_SECRET = "app-secret-of-the-shop"
VERIFY_TOKEN = "verify-me"
WABA_ID = "102290129340398"


@dataclass
class Received:
    event_id: str
    attempt: int
    body: bytes
    signature: str
    headers: dict[str, str]
    at_ms: int
    status: int

    @property
    def value(self) -> Any:
        return json.loads(self.body)["entry"][0]["changes"][0]["value"]


@dataclass
class Receiver:
    """A webhook receiver behind an ``httpx.MockTransport``.

    ``status`` is its answer; ``down`` makes it unreachable (connection refused, nothing
    recorded); ``lose_answers`` makes it record an event and then fail to answer (a timeout).
    ``hold`` keeps POSTs waiting until it is set.
    """

    clock: ManualClock
    secret: bytes = APP_SECRET.encode()
    status: int = 200
    down: bool = False
    lose_answers: bool = False
    hold: asyncio.Event | None = None
    requests: list[Received] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        body = await request.aread()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.arrived.set()
        try:
            if self.hold is not None:
                await self.hold.wait()
        finally:
            self.in_flight -= 1
        status = 0 if self.lose_answers else self.status
        self.requests.append(
            Received(
                event_id=request.headers["x-tresen-event-id"],
                attempt=int(request.headers["x-tresen-attempt"]),
                body=body,
                signature=request.headers["x-hub-signature-256"],
                headers=dict(request.headers),
                at_ms=self.clock.now_ms(),
                status=status,
            )
        )
        assert verify(self.secret, body, request.headers["x-hub-signature-256"])
        if self.lose_answers:
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return httpx.Response(self.status, text="ok")

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]


def echo_handshake(request: httpx.Request) -> httpx.Response:
    """The GET side of a receiver whose verify token is ``VERIFY_TOKEN``."""
    if request.url.params.get("hub.verify_token") != VERIFY_TOKEN:
        return httpx.Response(403, text="Forbidden")
    return httpx.Response(200, text=request.url.params["hub.challenge"])


@asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """``app`` (no lifespan) served by uvicorn on a free port of 127.0.0.1; yields its base URL."""
    async with support.serve_asgi(app, lifespan="off") as url:
        yield url

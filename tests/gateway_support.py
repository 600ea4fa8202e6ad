"""Test support for the gateway: a gateway served next to a test relay, and its customers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from support import (
    ORDER_SHIPPED,
    SCHEMAS,
    SQLITE_TEMPLATES,
    Backend,
    RunningRelay,
    free_port,
    registered_client,
    serve_asgi,
)

from tresen.client import Client
from tresen.client.events import Event
from tresen.core.clock import Clock
from tresen.core.http import tls_context
from tresen.gateway.app import build_gateway_app
from tresen.gateway.relay_link import CodeSource
from tresen.gateway.service import Gateway
from tresen.gateway.settings import GatewaySettings
from tresen.gateway.webhooks.signature import verify
from tresen.relay.accounts.sms import read_last_code
from tresen.relay.operator.service import OperatorPrincipal

API_VERSION = "v23.0"


@dataclass
class RunningGateway:
    url: str
    gateway: Gateway
    settings: GatewaySettings
    token: str
    http: httpx.AsyncClient
    """Authorized with ``token``, based at ``{url}/{API_VERSION}``."""
    app: Any = None
    """The gateway's ASGI app (its ``state`` holds the inbox's and automation's parts)."""

    @property
    def phone_number_id(self) -> str:
        return self.gateway.phone_number_id

    @property
    def waba_id(self) -> str:
        return self.gateway.waba_id

    @property
    def api_base(self) -> str:
        return f"{self.url}/{API_VERSION}"

    async def send(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(
            f"/{self.phone_number_id}/messages", json={"messaging_product": "whatsapp", **body}
        )


def gateway_database(backend: Backend, tmp_path: Path) -> tuple[dict[str, Any], str | None]:
    """Settings for the gateway's own database on ``backend``, migrated and empty (a schema
    of its own on PostgreSQL: the relay's tables live in the test's other schema)."""
    if backend.name == "sqlite":
        SQLITE_TEMPLATES.copy_to("gateway", tmp_path / "gateway.db")
        return {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"}, None
    schema = SCHEMAS.take("gateway")
    return {"database_url": backend.url, "database_schema": schema}, schema


@asynccontextmanager
async def serve_gateway(
    relay: RunningRelay,
    backend: Backend,
    tmp_path: Path,
    *,
    display_name: str = "Gateway Test Shop",
    verify: bool = True,
    clock: Clock | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
    **overrides: Any,
) -> AsyncIterator[RunningGateway]:
    """A business whose only device is a gateway, served on a free port with an API token."""
    phone = overrides.pop("phone", None) or relay.next_phone()
    database, schema = gateway_database(backend, tmp_path)
    settings = GatewaySettings(
        data_dir=tmp_path / "gateway",
        relay_url=relay.url,
        phone=phone,
        **database,
        **overrides,
    )

    try:
        async with run_gateway(
            settings, codes=relay_codes(relay), clock=clock, webhook_transport=webhook_transport
        ) as running:
            await running.gateway.client.save_business_profile(
                display_name=display_name, category="RETAIL"
            )
            if verify:
                await relay.ctx.operator.verify(
                    OperatorPrincipal("tests"), running.gateway.account_id
                )
            yield running
    finally:
        if schema is not None:
            await SCHEMAS.give_back("gateway", schema)


async def customer(relay: RunningRelay, folder: Path, phone: str | None = None) -> Client:
    """A registered, started customer client."""
    client: Client = await registered_client(
        relay.url, relay.sms_file, folder, phone or relay.next_phone()
    )
    client.start()
    return client


async def next_of(client: Client, kind: type[Any], within_s: float = 15) -> Any:
    """The next event of ``kind`` (others are skipped)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        left = deadline - asyncio.get_running_loop().time()
        event: Event = await client.next_event(max(0.01, left))
        if isinstance(event, kind):
            return event


async def approved_template(
    relay: RunningRelay, running: RunningGateway, template: dict[str, Any] | None = None
) -> str:
    """Submit ``template`` (the order_shipped sample) through the gateway; approve it."""
    r = await running.http.post(
        f"/{running.waba_id}/message_templates", json=template or ORDER_SHIPPED
    )
    assert r.status_code == 200, r.text
    template_id = r.json()["id"]
    await relay.ctx.templates.approve(OperatorPrincipal("tests"), int(template_id))
    return str(template_id)


# --- webhooks, received as an integrator's endpoint receives them ------------------------------

WEBHOOK_VERIFY_TOKEN = "gateway-tests-verify"


@dataclass(frozen=True)
class WebhookPost:
    """One POST to a webhook endpoint: the raw body as signed, and its headers."""

    raw: bytes
    headers: dict[str, str]

    @property
    def body(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.raw)
        return decoded

    @property
    def change(self) -> dict[str, Any]:
        change: dict[str, Any] = self.body["entry"][0]["changes"][0]
        return change

    @property
    def field(self) -> str:
        return str(self.change["field"])

    @property
    def value(self) -> dict[str, Any]:
        value: dict[str, Any] = self.change["value"]
        return value


@dataclass
class WebhookInbox:
    """A webhook endpoint on a free port that answers the verification handshake for
    ``verify_token`` and keeps every POST; :meth:`next` checks each one it hands out."""

    url: str
    app_secret: str
    verify_token: str
    posts: asyncio.Queue[WebhookPost] = field(default_factory=asyncio.Queue)
    handshakes: list[str] = field(default_factory=list)
    """The verify tokens of the handshakes received, right or wrong."""
    status: int = 200
    """The answer to POSTs (which are kept whatever it is)."""

    async def next(
        self, where: Callable[[WebhookPost], bool] | None = None, within_s: float = 20
    ) -> WebhookPost:
        """The next POST ``where`` holds for (others are skipped). Every POST taken must be
        signed with the app secret and carry exactly one entry with one change."""
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            left = deadline - asyncio.get_running_loop().time()
            post = await asyncio.wait_for(self.posts.get(), max(0.01, left))
            signature = post.headers.get("x-hub-signature-256")
            assert verify(self.app_secret.encode(), post.raw, signature), signature
            assert post.headers.get("content-type", "").startswith("application/json")
            body = post.body
            assert body["object"] == "whatsapp_business_account"
            assert len(body["entry"]) == 1, body
            assert len(body["entry"][0]["changes"]) == 1, body
            if post.field == "messages":
                items = post.value.get("messages", []) + post.value.get("statuses", [])
                assert len(items) == 1, body
            if where is None or where(post):
                return post

    async def next_message(self, kind: str | None = None, within_s: float = 20) -> dict[str, Any]:
        """The ``value`` of the next inbound message webhook (of type ``kind``)."""

        def wanted(post: WebhookPost) -> bool:
            messages = post.value.get("messages") if post.field == "messages" else None
            return bool(messages) and (kind is None or messages[0]["type"] == kind)

        return (await self.next(wanted, within_s)).value

    async def next_status(
        self, wamid: str, status: str | None = None, within_s: float = 20
    ) -> dict[str, Any]:
        """The ``value`` of the next status webhook about ``wamid`` (of ``status``)."""

        def wanted(post: WebhookPost) -> bool:
            statuses = post.value.get("statuses") if post.field == "messages" else None
            return (
                bool(statuses)
                and statuses[0]["id"] == wamid
                and (status is None or statuses[0]["status"] == status)
            )

        return (await self.next(wanted, within_s)).value


@asynccontextmanager
async def webhook_inbox(
    app_secret: str, verify_token: str = WEBHOOK_VERIFY_TOKEN
) -> AsyncIterator[WebhookInbox]:
    """A :class:`WebhookInbox` served until the block ends."""
    inbox = WebhookInbox("", app_secret, verify_token)

    async def endpoint(request: Request) -> Response:
        if request.method == "GET":
            given = request.query_params.get("hub.verify_token", "")
            inbox.handshakes.append(given)
            if given != inbox.verify_token:
                return PlainTextResponse("forbidden", status_code=403)
            return PlainTextResponse(request.query_params.get("hub.challenge", ""))
        raw = await request.body()
        await inbox.posts.put(WebhookPost(raw, dict(request.headers)))
        return PlainTextResponse("OK", status_code=inbox.status)

    app = Starlette(routes=[Route("/hook", endpoint, methods=["GET", "POST"])])
    async with serve_asgi(app) as url:
        inbox.url = f"{url}/hook"
        yield inbox


async def subscribe(running: RunningGateway, inbox: WebhookInbox) -> None:
    """Point the gateway's webhooks at ``inbox`` (``POST /{waba_id}/subscribed_apps``)."""
    r = await running.http.post(
        f"/{running.waba_id}/subscribed_apps",
        json={"override_callback_uri": inbox.url, "verify_token": inbox.verify_token},
    )
    assert r.status_code == 200, r.text


@asynccontextmanager
async def subscribed_inbox(running: RunningGateway) -> AsyncIterator[WebhookInbox]:
    """A :class:`WebhookInbox` the gateway's webhooks go to."""
    async with webhook_inbox(running.gateway.app_secret) as inbox:
        await subscribe(running, inbox)
        yield inbox


# --- a gateway that stops and starts again on the same data -----------------------------------


def gateway_settings(
    relay: RunningRelay, backend: Backend, tmp_path: Path, **overrides: Any
) -> tuple[GatewaySettings, str | None]:
    """Settings of a new gateway (data folder ``tmp_path/gateway``) and the PostgreSQL
    schema of its database (``None`` on SQLite), for :func:`run_gateway`; the caller drops
    the schema when done."""
    phone = overrides.pop("phone", None) or relay.next_phone()
    database, schema = gateway_database(backend, tmp_path)
    settings = GatewaySettings(
        data_dir=tmp_path / "gateway", relay_url=relay.url, phone=phone, **database, **overrides
    )
    return settings, schema


def relay_codes(relay: RunningRelay) -> CodeSource:
    """Registration codes as the test relay's SMS file has them."""

    async def code(number: str) -> str:
        found = read_last_code(relay.sms_file, number)
        assert found is not None
        return found

    return code


@asynccontextmanager
async def run_gateway(
    settings: GatewaySettings,
    *,
    codes: CodeSource | None = None,
    token: str | None = None,
    clock: Clock | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[RunningGateway]:
    """The gateway of ``settings`` served on a free port, as it finds its data folder and
    database: ``codes`` only when it may register a device; ``token`` an API token it has
    (else a new one is made). Nothing is set up on the relay and nothing is dropped after."""
    app = build_gateway_app(settings, codes=codes, clock=clock, webhook_transport=webhook_transport)
    async with serve_asgi(app) as url:
        gateway: Gateway = app.state.gateway
        if token is None:
            _, token = await gateway.store.create_token("tests")
        async with httpx.AsyncClient(
            verify=tls_context(),
            base_url=f"{url}/{API_VERSION}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ) as http:
            yield RunningGateway(url, gateway, settings, token, http, app)


async def become_business(
    relay: RunningRelay, running: RunningGateway, display_name: str = "Gateway Test Shop"
) -> None:
    """Give the gateway's account a business profile, verified by the operator."""
    await running.gateway.client.save_business_profile(display_name=display_name, category="RETAIL")
    await relay.ctx.operator.verify(OperatorPrincipal("tests"), running.gateway.account_id)


class GatewayProcess:
    """``python -m tresen gateway serve`` in a child process, on the data folder and database
    of ``settings`` (a gateway already registered there: no code is given); ``env`` adds
    settings (``TRESEN_GATEWAY_CAMPAIGNS__MAX_WAIT_S``, …)."""

    def __init__(self, settings: GatewaySettings, log_file: Path, **env: str) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("TRESEN_GATEWAY_")
        } | env
        if settings.database_schema is not None:
            self.env["TRESEN_GATEWAY_DATABASE_SCHEMA"] = settings.database_schema
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        """Start it and wait until it answers HTTP (its campaign runner then runs)."""
        assert self.settings.phone is not None
        command = [
            sys.executable, "-m", "tresen", "gateway", "serve",
            "--data-dir", str(self.settings.data_dir),
            "--relay", self.settings.relay_url,
            "--phone", self.settings.phone,
            "--database-url", self.settings.resolved_database_url,
            "--port", str(self.port),
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        async with httpx.AsyncClient(verify=tls_context(), base_url=self.url) as http:
            for _ in range(600):
                if self.process.poll() is not None:
                    raise RuntimeError("gateway exited:\n" + self.log_file.read_text())
                with contextlib.suppress(httpx.TransportError):
                    await http.get("/docs")
                    return
                await asyncio.sleep(0.05)
        raise RuntimeError("gateway did not start:\n" + self.log_file.read_text())

    def kill(self) -> None:
        """``kill -9``: no shutdown of any kind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    async def stop(self) -> None:
        """SIGTERM, waited for without blocking: its shutdown may need a relay served by
        this event loop."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        for _ in range(400):
            if self.process.poll() is not None:
                return
            await asyncio.sleep(0.05)
        self.kill()
        raise RuntimeError("gateway did not stop on SIGTERM:\n" + self.log_file.read_text())

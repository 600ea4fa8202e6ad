"""Test support for the gateway: a gateway served next to a test relay, and its customers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from support import (
    ORDER_SHIPPED,
    Backend,
    RunningRelay,
    drop_schema,
    free_port,
    new_schema_name,
    registered_client,
)

from tresen.client import Client
from tresen.client.events import Event
from tresen.core.clock import Clock
from tresen.gateway.app import build_gateway_app
from tresen.gateway.service import Gateway
from tresen.gateway.settings import GatewaySettings
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
    """Settings for the gateway's own database on ``backend`` (a schema of its own on
    PostgreSQL: the relay's tables live in the test's other schema)."""
    if backend.name == "sqlite":
        return {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"}, None
    schema = new_schema_name()
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

    async def code(number: str) -> str:
        found = read_last_code(relay.sms_file, number)
        assert found is not None
        return found

    app = build_gateway_app(settings, codes=code, clock=clock, webhook_transport=webhook_transport)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        gateway: Gateway = app.state.gateway
        await gateway.client.save_business_profile(display_name=display_name, category="RETAIL")
        if verify:
            await relay.ctx.operator.verify(OperatorPrincipal("tests"), gateway.account_id)
        _, token = await gateway.store.create_token("tests")
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(
            base_url=f"{url}/{API_VERSION}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ) as http:
            yield RunningGateway(url, gateway, settings, token, http)
    finally:
        server.should_exit = True
        await task
        if schema is not None:
            await drop_schema(schema)


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

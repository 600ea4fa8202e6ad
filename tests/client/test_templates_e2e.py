"""Template integrity end to end: a business's client sends template messages through a
running relay, and the customer's client shows only the operator-signed template filled in.
Anything else labelled as a template — free-form text, parameters that do not fit, another
business's template, a template whose signature does not verify — is rejected and reported,
and the relay never holds the text."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import MetaData, insert, select
from support import ORDER_SHIPPED, RunningRelay, read_last_code

from tresen.client import Client
from tresen.client.api import RelayError
from tresen.client.events import DecryptionFailed, MessageEvent
from tresen.client.store import MessageStatus
from tresen.core.errors import ErrorCode
from tresen.crypto.certificates import OperatorKey
from tresen.relay.schema import consents, quality_events
from tresen.wire import relay as wire
from tresen.wire.e2e import Template, Text
from tresen.wire.templates import TEMPLATE_PREFIX, SignedTemplate, decode_signed_body

GOOD = {"header": ["#4711"], "body": ["Anna", "Monday"], "button:0": ["4711"]}


class Network(httpx.AsyncBaseTransport):
    """The customer's network: records what the client asks of the relay, and can serve a
    different signed template than the relay's (a compromised relay, a man in the middle)."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.requests: list[tuple[str, str, Any]] = []
        self.templates: dict[str, dict[str, str]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        parts = request.url.path.strip("/").split("/")
        if parts[:2] == ["v1", "templates"] and parts[-1] in self.templates:
            response = httpx.Response(200, json=self.templates[parts[-1]])
        else:
            response = await self._inner.handle_async_request(request)
        self.requests.append((request.method, request.url.path, body))
        return response

    def reports(self) -> list[Any]:
        return [b for m, p, b in self.requests if (m, p) == ("POST", "/v1/reports")]

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class World:
    relay: RunningRelay
    tmp_path: Path
    operator: dict[str, str]
    network: Network
    clients: list[Client] = field(default_factory=list)

    async def client(self, name: str, network: httpx.AsyncBaseTransport | None = None) -> Client:
        phone = self.relay.next_phone()
        client = Client.open(self.tmp_path / name, self.relay.url, transport=network)
        self.clients.append(client)
        await client.request_code(phone)
        code = read_last_code(self.relay.sms_file, phone)
        assert code is not None
        await client.register(phone, code, device_name=name)
        return client

    async def business(self, name: str) -> Client:
        business = await self.client(name)
        await business.save_business_profile(display_name=name)
        return business

    async def approved(self, business: Client, template: dict[str, Any] = ORDER_SHIPPED) -> str:
        created = await business.api.submit_template(template)
        r = await self.relay.http.post(
            f"/v1/admin/templates/{created['id']}/approve", headers=self.operator
        )
        assert r.status_code == 200, r.text
        return str(created["id"])

    async def customer(self, *businesses: Client) -> Client:
        """A customer whose client is running, and who agreed to the businesses' messages
        (written as a consent on record, so the relay's send checks let them through)."""
        customer = await self.client(f"customer-{secrets.token_hex(2)}", self.network)
        now = self.relay.ctx.clock.now_ms()
        async with self.relay.ctx.db.write() as conn:
            for business in businesses:
                await conn.execute(
                    insert(consents).values(
                        business_account=business.account_id,
                        customer_account=customer.account_id,
                        scope="utility",
                        state="opted_in",
                        source="business",
                        evidence="order form, checkbox",
                        evidence_ms=now,
                        updated_ms=now,
                    )
                )
        customer.start()
        await customer.wait_drained()
        return customer


@pytest.fixture
async def world(relay: RunningRelay, tmp_path: Path) -> AsyncIterator[World]:
    token = await relay.ctx.operator.create_token("ops", by="test")
    network = Network()
    world = World(relay, tmp_path, {"Authorization": f"Bearer {token}"}, network)
    yield world
    for client in world.clients:
        await client.close()
    await network.aclose()


async def next_event(client: Client, kind: type[Any], within_s: float = 20) -> Any:
    async def wait() -> Any:
        while True:
            event = await client.next_event()
            if isinstance(event, kind):
                return event

    return await asyncio.wait_for(wait(), within_s)


async def relay_bytes(relay: RunningRelay) -> bytes:
    """Everything the relay's database holds (the SQLite files, or every PostgreSQL row)."""
    db = relay.ctx.db
    if db.is_sqlite:
        path = Path(db.url.split("///", 1)[1])
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    dump: list[bytes] = []
    async with db.read() as conn:
        tables = MetaData(schema=relay.ctx.settings.database_schema)
        await conn.run_sync(lambda sync: tables.reflect(sync))
        for table in tables.sorted_tables:
            for row in await conn.execute(select(table)):
                dump.extend(v if isinstance(v, bytes) else str(v).encode() for v in row)
    return b"\n".join(dump)


async def test_a_template_message_shows_the_signed_template_filled_in(world: World) -> None:
    shop = await world.business("Bäckerei Müller")
    template_id = await world.approved(shop)
    customer = await world.customer(shop)
    assert customer.phone is not None

    sent = await shop.send_template(customer.phone, template_id, "en_US", GOOD)

    event = await next_event(customer, MessageEvent)
    assert event.message_id == sent.message_id
    assert event.template is not None
    assert event.template.text().splitlines() == [
        "Order #4711",
        "Hi Anna, your order ships on Monday.",
        "Reply STOP to opt out",
        "[Track] https://shop.example/o/4711",
    ]
    assert isinstance(event.payload, Template)
    stored = customer.store.message(sent.message_id)
    assert stored is not None
    assert stored.status is MessageStatus.RECEIVED
    assert world.network.reports() == []
    # Cloud API send components work the same way.
    components = [
        {"type": "header", "parameters": [{"type": "text", "text": "#4712"}]},
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Ben"}, {"type": "text", "text": "Friday"}],
        },
        {
            "type": "button",
            "sub_type": "url",
            "index": "0",
            "parameters": [{"type": "text", "text": "4712"}],
        },
    ]
    await shop.send_template(customer.phone, template_id, "en_US", components=components)
    event = await next_event(customer, MessageEvent)
    assert event.template.body == "Hi Ben, your order ships on Friday."


async def test_the_sender_learns_of_a_mismatch_before_anything_is_sent(world: World) -> None:
    shop = await world.business("Bäckerei Müller")
    template_id = await world.approved(shop)
    customer = await world.customer(shop)
    assert customer.phone is not None

    with pytest.raises(RelayError) as caught:
        await shop.send_template(customer.phone, template_id, "en_US", {"body": ["Anna"]})
    assert caught.value.code == ErrorCode.TEMPLATE_PARAMS_MISMATCH
    assert {"field": "body", "problem": "expects 2 parameter(s), got 1"} in caught.value.details[
        "problems"
    ]
    with pytest.raises(RelayError) as wrong_language:
        await shop.send_template(customer.phone, template_id, "de", GOOD)
    assert wrong_language.value.code == ErrorCode.TEMPLATE_NOT_FOUND


async def test_free_form_text_labelled_as_a_template_is_rejected_and_reported(
    world: World,
) -> None:
    """The integrity test of the issue: a cheap utility template claimed towards the relay,
    advertising inside the ciphertext."""
    shop = await world.business("Bäckerei Müller")
    template_id = await world.approved(shop)
    customer = await world.customer(shop)
    assert customer.phone is not None
    marker = f"mk{secrets.token_hex(10)}"

    sent = await shop.send(
        customer.phone,
        Text(text=f"WIN a cruise today only! {marker}"),
        klass=wire.MessageClass.TEMPLATE,
        template_ref=template_id,
    )

    rejected = await next_event(customer, DecryptionFailed)
    assert rejected.message_id == sent.message_id
    assert rejected.reason.startswith("template_mismatch: ")
    assert "text payload" in rejected.reason
    stored = customer.store.message(sent.message_id)
    assert stored is not None
    assert stored.status is MessageStatus.FAILED
    assert stored.payload is None  # the text is not kept, let alone shown
    [report] = world.network.reports()
    assert report["account_id"] == shop.account_id
    assert report["reason"] == "template_mismatch"
    assert report["message_id"] == sent.message_id
    assert marker not in json.dumps(report)
    # The relay took the report (the policy routes count it against the business).
    async with world.relay.ctx.db.read() as conn:
        rows = (
            await conn.execute(
                select(quality_events.c.reason, quality_events.c.message_id).where(
                    quality_events.c.business_account == shop.account_id
                )
            )
        ).all()
    assert [(r.reason, r.message_id) for r in rows] == [("template_mismatch", sent.message_id)]
    # And it never saw the text.
    assert marker.encode() not in await relay_bytes(world.relay)


async def test_parameters_that_do_not_fit_are_rejected_and_reported(world: World) -> None:
    shop = await world.business("Bäckerei Müller")
    template_id = await world.approved(shop)
    customer = await world.customer(shop)
    assert customer.phone is not None
    forged = Template(
        template_id=template_id,
        name="order_shipped",
        language="en_US",
        parameters={**GOOD, "body": ["Anna\n\nBUY CHEAP WATCHES", "Monday"]},
    )

    sent = await shop.send(
        customer.phone, forged, klass=wire.MessageClass.TEMPLATE, template_ref=template_id
    )

    rejected = await next_event(customer, DecryptionFailed)
    assert rejected.message_id == sent.message_id
    assert "(132000)" in rejected.reason
    assert "new lines" in rejected.reason
    assert "WATCHES" not in rejected.reason
    assert [r["message_id"] for r in world.network.reports()] == [sent.message_id]


async def test_another_business_template_is_refused(world: World) -> None:
    bakery = await world.business("Bäckerei Müller")
    florist = await world.business("Blumen Schulz")
    bakery_template = await world.approved(bakery)
    florist_template = await world.approved(florist, {**ORDER_SHIPPED, "name": "bouquet_ready"})
    customer = await world.customer(bakery, florist)
    assert customer.phone is not None

    # The florist claims its own template towards the relay and sends the bakery's inside.
    sent = await florist.send(
        customer.phone,
        Template(
            template_id=bakery_template, name="order_shipped", language="en_US", parameters=GOOD
        ),
        klass=wire.MessageClass.TEMPLATE,
        template_ref=florist_template,
    )

    rejected = await next_event(customer, DecryptionFailed)
    assert rejected.message_id == sent.message_id
    assert "another business" in rejected.reason
    assert [r["account_id"] for r in world.network.reports()] == [florist.account_id]


async def test_a_template_whose_signature_does_not_verify_is_refused(world: World) -> None:
    shop = await world.business("Bäckerei Müller")
    template_id = await world.approved(shop)
    customer = await world.customer(shop)
    assert customer.phone is not None
    r = await world.relay.http.get(
        f"/v1/templates/{template_id}", headers={"Authorization": f"Bearer {shop.api.token}"}
    )
    genuine = SignedTemplate.from_json(r.json())
    body = decode_signed_body(genuine.body)
    # Someone between the relay and the customer rewrites the template and signs it with a
    # key of their own, under the operator's key id.
    rewritten = msgspec.structs.replace(
        body, components=[msgspec.structs.replace(body.components[1], text="WIN {{1}} {{2}} now")]
    )
    raw = msgspec.msgpack.encode(rewritten)
    world.network.templates[template_id] = SignedTemplate(
        int(template_id), raw, OperatorKey.generate().sign(TEMPLATE_PREFIX + raw)
    ).to_json()

    sent = await shop.send_template(customer.phone, template_id, "en_US", GOOD)

    rejected = await next_event(customer, DecryptionFailed)
    assert rejected.message_id == sent.message_id
    assert "signature" in rejected.reason
    assert [r["message_id"] for r in world.network.reports()] == [sent.message_id]


async def test_a_message_naming_another_template_than_it_claimed_is_refused(
    world: World,
) -> None:
    shop = await world.business("Bäckerei Müller")
    cheap = await world.approved(shop)
    promo = await world.approved(
        shop, {**ORDER_SHIPPED, "name": "summer_sale", "category": "MARKETING"}
    )
    customer = await world.customer(shop)
    assert customer.phone is not None

    sent = await shop.send(
        customer.phone,
        Template(template_id=promo, name="summer_sale", language="en_US", parameters=GOOD),
        klass=wire.MessageClass.TEMPLATE,
        template_ref=cheap,
    )

    rejected = await next_event(customer, DecryptionFailed)
    assert rejected.message_id == sent.message_id
    assert f"the relay was told {cheap}" in rejected.reason

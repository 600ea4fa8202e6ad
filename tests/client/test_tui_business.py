"""Business chats in the terminal app, against a relay with a controllable clock: the label,
the tick (only ever from the device's own certificate check), ``/profile``, ``/find`` and
``/operator``.

``ChatModel`` is exercised directly; one test drives ``ChatApp`` headlessly through Pilot.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import RunningRelay, read_last_code
from textual.pilot import Pilot
from textual.widgets import Static

from tresen.client import Client
from tresen.client.app import ChatModel, LineKind
from tresen.client.events import MessageEvent
from tresen.client.tui import ChatApp, ChatItem, LineView
from tresen.core.clock import ManualClock

# Thursday 2026-01-01, 10:00 in Berlin.
TEN_AM_BERLIN = 1_767_225_600_000 + 9 * 3_600_000
WEEKDAYS_9_TO_5 = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
AIRLINE = {
    "display_name": "Tresen Air",
    "about": "Flights across Europe",
    "description": "Tickets, rebooking and lost luggage",
    "address": "Flughafenstraße 1, 12529 Schönefeld",
    "email": "service@tresen-air.de",
    "websites": ["https://tresen-air.de"],
    "category": "TRAVEL",
    "timezone": "Europe/Berlin",
    "hours": WEEKDAYS_9_TO_5,
}


class Replay(httpx.AsyncBaseTransport):
    """The network between client and relay, able to keep serving a certificate the operator
    revoked, as a compromised relay could."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.certificates: dict[str, dict[str, str]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        parts = request.url.path.strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["v1", "businesses"] and parts[2] in self.certificates:
            body = json.loads(await response.aread())
            body["certificate"] = self.certificates[parts[2]]
            return httpx.Response(response.status_code, json=body)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Town:
    """A relay, its operator and the people and businesses who use it."""

    relay: RunningRelay
    clock: ManualClock
    tmp_path: Path
    network: Replay
    ops: dict[str, str]
    clients: list[Client] = field(default_factory=list)

    async def person(self, name: str) -> Client:
        phone = self.relay.next_phone()
        client = Client.open(
            self.tmp_path / name, self.relay.url, clock=self.clock, transport=self.network
        )
        self.clients.append(client)
        await client.request_code(phone)
        code = read_last_code(self.relay.sms_file, phone)
        assert code is not None
        await client.register(phone, code, device_name=name)
        return client

    async def business(self, name: str, *, verified: bool = True, **profile: Any) -> Client:
        business = await self.person(name)
        await business.save_business_profile(**(AIRLINE | profile))
        await business.request_verification("we are who we say")
        if verified:
            await self.admin("verify", business.account_id or "")
        return business

    async def admin(self, action: str, account_id: str, **body: Any) -> dict[str, Any]:
        r = await self.relay.http.post(
            f"/v1/admin/businesses/{account_id}/{action}", json=body or None, headers=self.ops
        )
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result


@pytest.fixture
async def town(make_relay: Any, tmp_path: Path) -> AsyncIterator[Town]:
    clock = ManualClock(TEN_AM_BERLIN)
    async with make_relay(clock=clock) as relay:
        token = await relay.ctx.operator.create_token("ops", by="test")
        network = Replay()
        made = Town(relay, clock, tmp_path, network, {"Authorization": f"Bearer {token}"})
        yield made
        for client in made.clients:
            await client.close()
        await network.aclose()


async def take_messages(client: Client, model: ChatModel, count: int) -> None:
    """Feed the model the client's events until ``count`` messages arrived."""
    client.start()
    received = 0
    while received < count:
        event = await client.next_event(30)
        await model.handle(event)
        received += isinstance(event, MessageEvent)


def row_of(model: ChatModel, account_id: str | None) -> tuple[str, str | None]:
    [row] = [r for r in model.chat_rows() if r.account_id == account_id]
    return row.title, row.label


def notices(model: ChatModel, account_id: str | None) -> list[str]:
    return [line.text for line in model.lines(account_id or "") if line.kind is LineKind.NOTICE]


# --- the model, without a terminal -----------------------------------------------------------


async def test_business_chats_are_labelled_and_the_tick_is_checked_here(town: Town) -> None:
    airline = await town.business("airline")
    bakery = await town.business("bakery", verified=False, display_name="Bäckerei Brot")
    friend = await town.person("friend")
    customer = await town.person("customer")
    assert customer.phone is not None
    model = ChatModel(customer)
    # The customer writes first (a business may answer within 24 hours).
    for shop, question in ((airline, "When do I board?"), (bakery, "Open on Sunday?")):
        await customer.send_text(shop.phone or "", question)
    assert row_of(model, bakery.account_id) == (bakery.phone, "Business")
    await airline.send_text(customer.phone, "Your flight boards at 09:40")
    await bakery.send_text(customer.phone, "Yes, until noon")
    await friend.send_text(customer.phone, "see you at the airport")
    await take_messages(customer, model, 3)

    # Once they answer, the name and tick come from the device's own check.
    assert row_of(model, airline.account_id) == ("Tresen Air", "Business ✓ verified")
    assert row_of(model, bakery.account_id) == ("Bäckerei Brot", "Business")
    assert row_of(model, friend.account_id) == (friend.phone, None)

    await model.submit(f"/new {airline.phone}")
    assert model.open_chat == airline.account_id
    assert (
        model.heading(airline.account_id) == f"Tresen Air · Business ✓ verified · {airline.phone}"
    )
    assert model.heading(friend.account_id or "") == friend.phone

    await model.submit("/operator")
    assert customer.operator_fingerprint is not None
    assert customer.operator_fingerprint in model.feedback
    assert "Compare it with the one your operator publishes" in model.feedback


async def test_profile_shows_contact_details_and_opening_hours(town: Town) -> None:
    airline = await town.business("airline")
    friend = await town.person("friend")
    customer = await town.person("customer")
    model = ChatModel(customer)

    await model.submit("/profile")
    assert "Open a chat first" in model.feedback
    await model.submit(f"/new {airline.phone}")
    await model.submit("/info")
    assert notices(model, airline.account_id) == [
        "Tresen Air ✓ verified by the operator",
        "Flights across Europe",
        "Tickets, rebooking and lost luggage",
        "Category: Travel and transportation",
        "Address: Flughafenstraße 1, 12529 Schönefeld",
        "E-mail: service@tresen-air.de",
        "Websites: https://tresen-air.de",
        f"Phone: {airline.phone}",
        "Open now · closes at 17:00 CET",
        "Opening hours (Europe/Berlin):",
        "Mon  09:00-17:00",
        "Tue  09:00-17:00",
        "Wed  09:00-17:00",
        "Thu  09:00-17:00",
        "Fri  09:00-17:00",
        "Sat  closed",
        "Sun  closed",
    ]

    town.clock.advance(hours=8)
    await model.submit("/profile")
    assert notices(model, airline.account_id)[-9] == "Closed · opens Fri 09:00 CET"

    await model.submit(f"/new {friend.phone}")
    await model.submit("/profile")
    [personal] = notices(model, friend.account_id)
    assert f"{friend.phone} is a personal chat" in personal


async def test_a_revoked_certificate_leaves_the_label_without_the_tick(town: Town) -> None:
    airline = await town.business("airline")
    customer = await town.person("customer")
    assert airline.account_id is not None
    model = ChatModel(customer)
    await model.submit(f"/new {airline.phone}")
    assert row_of(model, airline.account_id) == ("Tresen Air", "Business ✓ verified")
    certificate = (await town.relay.http.get(f"/v1/certificates/{airline.account_id}")).json()

    # Revoked, yet still served (a relay replaying it): opening the chat checks again.
    await town.admin("revoke", airline.account_id, reason="impersonation complaint")
    town.network.certificates[airline.account_id] = certificate
    await model.submit(f"/open {airline.account_id}")
    assert row_of(model, airline.account_id) == ("Tresen Air", "Business")
    await model.submit("/profile")
    first = notices(model, airline.account_id)[0]
    assert first.startswith("Tresen Air · Business, no tick: the operator revoked the certificate")
    assert "✓" not in first

    # Suspended: no longer listed, still labelled as a business, and the app says why.
    del town.network.certificates[airline.account_id]
    await town.admin("suspend", airline.account_id, reason="spam")
    await model.submit(f"/open {airline.account_id}")
    assert "Tresen Air is not (or no longer) a listed business" in model.feedback
    assert row_of(model, airline.account_id) == ("Tresen Air", "Business")
    await model.submit("/profile")
    assert "not (or no longer) a listed business" in model.feedback


async def test_find_lists_the_directory_and_opens_a_hit(town: Town) -> None:
    airline = await town.business("airline")
    cargo = await town.business(
        "cargo", verified=False, display_name="Tresen Cargo", about="Freight", category="OTHER"
    )
    customer = await town.person("customer")
    model = ChatModel(customer)

    await model.submit("/find tresen")
    assert model.feedback.splitlines() == [
        f"1. Tresen Air ✓ · Travel and transportation · Flights across Europe  "
        f"({airline.account_id})",
        f"2. Tresen Cargo · Other · Freight  ({cargo.account_id})",
        "Open a chat with /new 1 … /new 2. ✓: verified by your operator, checked here.",
    ]
    await model.submit("/new 2")
    assert model.open_chat == cargo.account_id
    assert row_of(model, cargo.account_id) == ("Tresen Cargo", "Business")

    await model.submit("/find pizza")
    assert model.feedback == "No business matches “pizza”."
    await model.submit(f"/new {airline.account_id}")
    assert model.open_chat == airline.account_id


# --- the app, headless ------------------------------------------------------------------------


async def until(pilot: Pilot[None], condition: Callable[[], object], timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the app never got there"
        await pilot.pause(0.05)


def text_of(widget: Static) -> str:
    return str(widget.visual)


def listed(app: ChatApp) -> str:
    """What the chat list shows, one chat a line."""
    return "\n".join(text_of(item.query_one(Static)) for item in app.query(ChatItem))


async def test_the_chat_list_shows_the_business_label_and_tick(town: Town) -> None:
    airline = await town.business("airline")
    customer = await town.person("customer")
    assert customer.phone is not None
    await customer.send_text(airline.phone or "", "When do I board?")
    app = ChatApp(customer)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.model.connected)
        await airline.send_text(customer.phone, "Your flight boards at 09:40")
        await until(pilot, lambda: app.query(ChatItem) and app.query_one(ChatItem).row.unread)
        assert "Tresen Air  Business ✓ verified  1" in listed(app)

        await pilot.press("ctrl+l", "enter")
        title = app.query_one("#chat-title", Static)
        await until(pilot, lambda: "Tresen Air · Business ✓ verified" in text_of(title))
        await pilot.press(*"/profile", "enter")
        # The chat shows two messages already: wait for the profile's lines themselves.
        await until(
            pilot,
            lambda: any("Open now · closes at 17:00" in text_of(v) for v in app.query(LineView)),
        )

"""Businesses as a customer's client sees them, against a running relay: the label, the
profile with its hours, and a tick that only a valid certificate earns, whatever the relay
says."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import RunningRelay, read_last_code

from tresen.client import Client
from tresen.client.api import RelayError
from tresen.client.business import TickState
from tresen.client.sdk import OperatorKeyMismatch
from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode
from tresen.crypto.certificates import OperatorKey

# Thursday 2026-01-01, 10:00 in Berlin.
TEN_AM_BERLIN = 1_767_225_600_000 + 9 * 3_600_000
DAY_MS = 86_400_000
HOURS = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


class Substitute(httpx.AsyncBaseTransport):
    """The network between client and relay, able to serve an old certificate in a business
    profile: what a compromised relay or a man in the middle could do."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.certificates: dict[str, dict[str, str]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        parts = request.url.path.strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["v1", "businesses"] and parts[2] in self.certificates:
            await response.aread()
            body = json.loads(response.content)
            body["certificate"] = self.certificates[parts[2]]
            return httpx.Response(response.status_code, json=body)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class World:
    relay: RunningRelay
    clock: ManualClock
    tmp_path: Path
    ops: dict[str, str]
    network: Substitute

    async def client(self, name: str, phone: str | None = None, **options: Any) -> Client:
        phone = phone or self.relay.next_phone()
        client = Client.open(
            self.tmp_path / name,
            self.relay.url,
            clock=self.clock,
            transport=self.network,
            **options,
        )
        await client.request_code(phone)
        code = read_last_code(self.relay.sms_file, phone)
        assert code is not None
        await client.register(phone, code, device_name=name)
        return client

    async def airline(self, name: str = "Tresen Air") -> Client:
        business = await self.client("airline")
        await business.save_business_profile(
            display_name=name,
            about="Flights across Europe",
            category="TRAVEL",
            timezone="Europe/Berlin",
            hours=HOURS,
            closed_dates=["2026-12-25"],
            websites=["https://air.example"],
        )
        await business.request_verification("we are the airline")
        return business

    async def admin(self, action: str, account_id: str, **body: Any) -> dict[str, Any]:
        r = await self.relay.http.post(
            f"/v1/admin/businesses/{account_id}/{action}", json=body or None, headers=self.ops
        )
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result


@pytest.fixture
async def world(make_relay: Any, tmp_path: Path) -> AsyncIterator[World]:
    clock = ManualClock(TEN_AM_BERLIN)
    async with make_relay(clock=clock) as relay:
        token = await relay.ctx.operator.create_token("ops", by="test")
        network = Substitute()
        yield World(relay, clock, tmp_path, {"Authorization": f"Bearer {token}"}, network)
        await network.aclose()


async def test_verified_business_earns_the_tick_and_shows_its_hours(world: World) -> None:
    airline = await world.airline()
    customer = await world.client("customer")
    published = (await world.relay.http.get("/v1/operator/keys")).json()
    # Learned at registration, shown to compare with what the operator publishes elsewhere.
    assert customer.operator_fingerprint == published["fingerprint"]

    assert airline.phone is not None
    before = await customer.business(airline.phone)
    assert customer.is_business(before.account_id)
    assert before.tick.state is TickState.NOT_VERIFIED
    assert before.profile.opening_status(world.clock.now_ms()) == "Open now · closes at 17:00 CET"

    await world.admin("verify", before.account_id)
    after = await customer.business(before.account_id)
    assert after.verified, after.tick.reason
    assert after.display_name == "Tresen Air"
    assert after.profile.open_now(world.clock.now_ms()) is True
    world.clock.advance(hours=8)
    assert after.profile.opening_status(world.clock.now_ms()) == "Closed · opens Fri 09:00 CET"
    known = customer.known_business(before.account_id)
    assert known is not None
    assert known.verified
    assert known.display_name == "Tresen Air"

    found = await customer.find_businesses("tresen")
    assert [(b.display_name, b.verified) for b in found] == [("Tresen Air", True)]
    await airline.close()
    await customer.close()


async def test_rename_and_revocation_take_the_tick_even_if_the_old_certificate_is_served(
    world: World,
) -> None:
    airline = await world.airline()
    customer = await world.client("customer")
    assert airline.account_id is not None
    verified = await world.admin("verify", airline.account_id)
    old_certificate = verified["signed"]
    assert (await customer.business(airline.account_id)).verified

    # Rename: the relay revokes and stops serving the certificate; a relay that still
    # serves it cannot bring the tick back, because it names the old display name.
    await airline.save_business_profile(display_name="Tresen Air Cargo")
    assert (await customer.business(airline.account_id)).tick.state is TickState.NOT_VERIFIED
    world.network.certificates[airline.account_id] = old_certificate
    assert (await customer.business(airline.account_id)).tick.state is TickState.REVOKED

    # Renamed back, the old certificate binds again but is on the signed revocation list.
    await airline.save_business_profile(display_name="Tresen Air")
    assert (await customer.business(airline.account_id)).tick.state is TickState.REVOKED

    # Re-verified: a new certificate, a new serial, the tick is back.
    del world.network.certificates[airline.account_id]
    await world.admin("verify", airline.account_id)
    assert (await customer.business(airline.account_id)).verified

    # The operator revokes: gone from the directory and, if replayed, refused.
    renewed = (await world.relay.http.get(f"/v1/certificates/{airline.account_id}")).json()
    await world.admin("revoke", airline.account_id, reason="impersonation complaint")
    assert (await customer.business(airline.account_id)).tick.state is TickState.NOT_VERIFIED
    world.network.certificates[airline.account_id] = renewed
    assert (await customer.business(airline.account_id)).tick.state is TickState.REVOKED
    await airline.close()
    await customer.close()


async def test_a_new_business_device_needs_re_verification(world: World) -> None:
    airline = await world.airline()
    customer = await world.client("customer")
    assert airline.account_id is not None
    assert airline.phone is not None
    certificate = (await world.admin("verify", airline.account_id))["signed"]
    assert (await customer.business(airline.account_id)).verified

    office = await world.client("office", airline.phone)
    # The certificate names one device key; the customer now sees two.
    world.network.certificates[airline.account_id] = certificate
    tick = (await customer.business(airline.account_id)).tick
    assert tick.state is TickState.REVOKED
    del world.network.certificates[airline.account_id]
    assert (await customer.business(airline.account_id)).tick.state is TickState.NOT_VERIFIED

    await world.admin("verify", airline.account_id)
    assert (await customer.business(airline.account_id)).verified
    await office.close()
    await airline.close()
    await customer.close()


async def test_expired_certificates_lose_the_tick(world: World) -> None:
    airline = await world.airline()
    customer = await world.client("customer")
    assert airline.account_id is not None
    verified = await world.admin("verify", airline.account_id)
    expires_ms = verified["certificate"]["expires_ms"]
    world.network.certificates[airline.account_id] = verified["signed"]
    world.clock.set(expires_ms - 1)
    assert (await customer.business(airline.account_id)).verified
    world.clock.set(expires_ms)
    business = await customer.business(airline.account_id)
    assert business.tick.state is TickState.EXPIRED
    assert "expired" in business.tick.reason
    await airline.close()
    await customer.close()


async def test_operator_key_rotation_is_followed_through_the_endorsement(world: World) -> None:
    airline = await world.airline()
    customer = await world.client("customer")
    assert airline.account_id is not None
    old = (await world.admin("verify", airline.account_id))["signed"]
    r = await world.relay.http.post(
        "/v1/admin/operator-keys/rotate", json={"overlap_days": 7}, headers=world.ops
    )
    assert r.status_code == 200, r.text
    rotation = r.json()

    # The re-issued certificate names the new key; the client learns it from the old one.
    business = await customer.business(airline.account_id)
    assert business.verified, business.tick.reason
    ring = customer.operator_keys
    assert ring is not None
    assert rotation["key_id"] in ring
    assert customer.operator_fingerprint != rotation["fingerprint"]  # still the pinned one

    # The old key's certificates count for the overlap only.
    world.network.certificates[airline.account_id] = old
    assert (await customer.business(airline.account_id)).verified
    world.clock.set(rotation["previous_retires_ms"])
    assert (await customer.business(airline.account_id)).tick.state is TickState.EXPIRED
    del world.network.certificates[airline.account_id]
    assert (await customer.business(airline.account_id)).verified
    await airline.close()
    await customer.close()


async def test_a_client_pinned_to_another_operator_key_never_shows_the_tick(
    world: World,
) -> None:
    airline = await world.airline()
    assert airline.account_id is not None
    await world.admin("verify", airline.account_id)
    stranger = OperatorKey.generate()
    customer = await world.client("customer", operator_key=stranger.public_key)
    assert customer.operator_fingerprint == stranger.fingerprint()
    business = await customer.business(airline.account_id)
    assert business.tick.state is TickState.UNKNOWN_OPERATOR_KEY
    # The relay's keys are not endorsed by the pinned one, so refreshing changes nothing.
    update = await customer.refresh_operator_keys()
    assert update.added == []
    assert update.ignored
    assert not (await customer.business(airline.account_id)).verified
    await customer.close()
    # Reopening with another configured key is refused rather than silently re-pinned.
    with pytest.raises(OperatorKeyMismatch):
        Client.open(
            world.tmp_path / "customer",
            operator_key=OperatorKey.generate().public_key,
            clock=world.clock,
        )
    await airline.close()


async def test_a_chat_with_a_business_is_labelled_from_its_first_message(world: World) -> None:
    airline = await world.airline()
    phone = world.relay.next_phone()
    laptop = await world.client("laptop", phone)
    # A second device of the customer that has never looked the airline up.
    tablet = await world.client("tablet", phone)
    friend = await world.client("friend")
    assert airline.account_id is not None
    assert airline.phone is not None
    await laptop.send_text(airline.phone, "When does my flight board?")
    await airline.send_text(phone, "Your flight TA 100 boards at 09:40")
    await friend.send_text(phone, "see you at the airport")
    tablet.start()
    await tablet.wait_drained()
    chats = {c.account_id: c for c in tablet.store.chats()}
    assert chats[airline.account_id].business
    assert not chats[airline.account_id].verified
    assert not chats[friend.account_id or ""].business
    # The name and tick join the label once checked.
    await world.admin("verify", airline.account_id)
    await tablet.business(airline.account_id)
    chat = {c.account_id: c for c in tablet.store.chats()}[airline.account_id]
    assert (chat.business, chat.display_name, chat.verified) == (True, "Tresen Air", True)
    for client in (airline, laptop, tablet, friend):
        await client.close()


async def test_suspended_business_stays_labelled_but_loses_the_tick(world: World) -> None:
    airline = await world.airline()
    customer = await world.client("customer")
    assert airline.account_id is not None
    await world.admin("verify", airline.account_id)
    assert (await customer.business(airline.account_id)).verified
    await world.admin("suspend", airline.account_id, reason="spam")
    with pytest.raises(RelayError) as raised:
        await customer.business(airline.account_id)
    assert raised.value.code == ErrorCode.UNDELIVERABLE
    known = customer.known_business(airline.account_id)
    assert known is not None
    assert not known.verified
    await airline.close()
    await customer.close()

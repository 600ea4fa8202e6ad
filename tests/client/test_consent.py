"""Consent as a customer gives it in the app, against a running relay: opt-in and opt-out per
scope, STOP and START typed to a business, the dashboard, and records either side can verify
offline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import RunningRelay, read_last_code

from tresen.client import Client
from tresen.client.api import RelayError
from tresen.client.consent import ConsentRecord
from tresen.client.events import ConsentChanged, MessageEvent
from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode
from tresen.crypto.consent import ForgedConsent, SignedConsent
from tresen.wire.e2e import Text

NOW = 1_767_225_600_000
STOPPED = (
    "You will no longer receive marketing messages from Tresen Air. "
    "Send START to receive them again."
)


@dataclass
class World:
    relay: RunningRelay
    clock: ManualClock
    tmp_path: Path
    clients: list[Client] = field(default_factory=list)

    async def client(self, name: str, phone: str | None = None, **options: Any) -> Client:
        phone = phone or self.relay.next_phone()
        options.setdefault("clock", self.clock)
        client = Client.open(self.tmp_path / name, self.relay.url, **options)
        self.clients.append(client)
        await client.request_code(phone)
        code = read_last_code(self.relay.sms_file, phone)
        assert code is not None
        await client.register(phone, code, device_name=name)
        return client

    async def business(self, name: str = "Tresen Air") -> Client:
        business = await self.client(name.replace(" ", "-").lower())
        await business.save_business_profile(display_name=name, category="TRAVEL")
        return business


@pytest.fixture
async def world(make_relay: Any, tmp_path: Path) -> AsyncIterator[World]:
    clock = ManualClock(NOW)
    async with make_relay(clock=clock) as relay:
        world = World(relay, clock, tmp_path)
        try:
            yield world
        finally:
            for client in world.clients:
                await client.close()


def states(client_view: Any) -> dict[str, str | None]:
    return {scope: client_view.state(scope) for scope in ("utility", "marketing")}


async def next_consent_event(client: Client) -> ConsentChanged:
    while True:
        event = await client.next_event(within_s=10)
        if isinstance(event, ConsentChanged):
            return event


async def next_text(client: Client) -> str:
    while True:
        event = await client.next_event(within_s=20)
        if isinstance(event, MessageEvent) and isinstance(event.payload, Text):
            return event.payload.text


async def test_opt_in_and_out_per_scope_show_on_the_dashboard(world: World) -> None:
    airline = await world.business()
    anna = await world.client("anna")
    assert airline.phone is not None

    stored = await anna.opt_in(airline.phone)

    assert sorted((r.scope, r.state) for r in stored) == [
        ("marketing", "opted_in"),
        ("utility", "opted_in"),
    ]
    [line] = await anna.consents()
    assert (line.account_id, line.display_name) == (airline.account_id, "Tresen Air")
    assert states(line) == {"utility": "opted_in", "marketing": "opted_in"}

    world.clock.advance(minutes=1)
    await anna.opt_out(airline.phone, scopes=["marketing"])

    [line] = await anna.consents()
    assert states(line) == {"utility": "opted_in", "marketing": "opted_out"}
    assert line.opted_in_scopes == ("utility",)


async def test_stop_typed_to_a_business_revokes_marketing_and_confirms(world: World) -> None:
    airline = await world.business()
    anna = await world.client("anna")
    assert airline.account_id is not None
    await anna.opt_in(airline.account_id)
    airline.start()

    sent = await anna.send_text(airline.account_id, "  Stop ")

    assert sent.consent is not None
    assert sent.consent.confirmation == STOPPED
    assert sent.consent.failed is None
    event = await next_consent_event(anna)
    assert event == sent.consent
    assert (event.business, event.scopes, event.state) == (
        airline.account_id,
        ("marketing",),
        "opted_out",
    )
    # The business still reads what the customer typed.
    assert await next_text(airline) == "  Stop "
    # STOP ends marketing only; order updates and codes keep coming.
    [line] = await anna.consents()
    assert states(line) == {"utility": "opted_in", "marketing": "opted_out"}

    world.clock.advance(minutes=1)
    sent = await anna.send_text(airline.account_id, "start")
    assert sent.consent is not None
    assert sent.consent.confirmation == (
        "You will now receive marketing messages from Tresen Air. Send STOP to stop them."
    )
    [line] = await anna.consents()
    assert states(line) == {"utility": "opted_in", "marketing": "opted_in"}


async def test_german_keywords_are_confirmed_in_german(world: World) -> None:
    airline = await world.business()
    anna = await world.client("anna")
    assert airline.account_id is not None

    sent = await anna.send_text(airline.account_id, "ANMELDEN")
    assert sent.consent is not None
    assert sent.consent.confirmation == (
        "Sie erhalten jetzt Werbenachrichten von Tresen Air. "
        "Senden Sie ABMELDEN, um sie abzubestellen."
    )
    for word in ("abmelden", "STOPP"):
        world.clock.advance(seconds=5)
        sent = await anna.send_text(airline.account_id, word)
        assert sent.consent is not None
        assert sent.consent.confirmation == (
            "Sie erhalten keine Werbenachrichten mehr von Tresen Air. "
            "Senden Sie ANMELDEN, um sie wieder zu erhalten."
        )
    [line] = await anna.consents()
    assert states(line) == {"utility": None, "marketing": "opted_out"}


async def test_keywords_in_a_sentence_or_to_a_person_change_nothing(world: World) -> None:
    airline = await world.business()
    anna = await world.client("anna")
    bert = await world.client("bert")
    assert airline.account_id is not None
    assert bert.phone is not None

    for to, text in ((airline.account_id, "please stop"), (airline.account_id, "STOP!")):
        assert (await anna.send_text(to, text)).consent is None
    # A person is not a business: STOP to Bert is just a word.
    assert (await anna.send_text(bert.phone, "STOP")).consent is None

    assert await anna.consents() == []


async def test_revoke_all_withdraws_every_scope_in_one_action(world: World) -> None:
    airline = await world.business()
    anna = await world.client("anna")
    assert airline.account_id is not None
    assert anna.account_id is not None
    await anna.opt_in(airline.account_id)
    world.clock.advance(minutes=1)

    revoked = await anna.revoke_all(airline.account_id)

    assert sorted((r.scope, r.state) for r in revoked) == [
        ("marketing", "opted_out"),
        ("utility", "opted_out"),
    ]
    # Both stored together, by one request: the same relay time on both.
    assert len({r.updated_ms for r in revoked}) == 1
    [line] = await anna.consents()
    assert states(line) == {"utility": "opted_out", "marketing": "opted_out"}
    records = await anna.consent_records(airline.account_id)
    assert [h.state for h in records.history] == ["opted_out"] * 2 + ["opted_in"] * 2


async def test_the_business_verifies_consent_with_the_key_it_pinned(world: World) -> None:
    airline = await world.business()
    anna = await world.client("anna")
    assert airline.account_id is not None
    assert anna.account_id is not None
    await anna.opt_in(airline.account_id, scopes=["marketing"])
    # The business answers Anna and pins her device key on the way.
    await anna.send_text(airline.account_id, "Hallo")
    await airline.send_text(anna.account_id, "Willkommen an Bord")
    [pinned] = airline.store.peer_devices(anna.account_id).values()

    records = await airline.consent_records(airline.account_id, anna.account_id)

    record = records.consents["marketing"]
    statement = record.verify(pinned.ed25519)
    assert (statement.customer_account, statement.business_account) == (
        anna.account_id,
        airline.account_id,
    )
    # A record that claims more than was signed does not verify.
    claims_utility = ConsentRecord(**{**_fields(record), "scope": "utility"})
    with pytest.raises(ForgedConsent):
        claims_utility.verify(pinned.ed25519)
    assert record.signed is not None
    tampered = ConsentRecord(
        **{**_fields(record), "signed": SignedConsent(record.signed.body + b"\x00", "x")}
    )
    with pytest.raises(ForgedConsent):
        tampered.verify(pinned.ed25519)


def _fields(record: ConsentRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in ConsentRecord.__slots__}


async def test_a_stop_the_relay_refuses_is_still_sent_and_reported(world: World) -> None:
    airline = await world.business()
    # A phone whose clock is an hour behind: the relay refuses what it signs.
    anna = await world.client("anna", clock=ManualClock(NOW - 3_600_000))
    assert airline.account_id is not None
    airline.start()

    sent = await anna.send_text(airline.account_id, "STOP")

    assert sent.consent is not None
    assert sent.consent.failed is not None
    assert sent.consent.confirmation == (
        "Your STOP was sent to Tresen Air, but the setting could not be saved. Please try again."
    )
    assert await next_text(airline) == "STOP"


async def test_a_second_device_behind_in_time_still_records_its_change(world: World) -> None:
    airline = await world.business()
    first = await world.client("anna-phone")
    assert airline.account_id is not None
    assert first.phone is not None
    # The tablet's clock runs 30 s behind the phone's; the relay checks both against its own.
    second = await world.client("anna-tablet", first.phone, clock=ManualClock(NOW - 30_000))
    await first.opt_in(airline.account_id, scopes=["marketing"])

    [record] = await second.opt_out(airline.account_id, scopes=["marketing"])

    assert (record.state, record.device_id) == ("opted_out", 2)
    [line] = await first.consents()
    assert states(line)["marketing"] == "opted_out"


async def test_a_business_attests_utility_and_the_customer_revokes_it(world: World) -> None:
    airline = await world.business()
    anna = await world.client("anna")
    assert anna.phone is not None
    assert airline.account_id is not None

    attested = await airline.attest_consent(
        anna.phone, "Booked flight TA 123 and ticked 'updates on Tresen'", NOW - 60_000
    )

    assert (attested.source, attested.state, attested.scope) == ("business", "opted_in", "utility")
    [line] = await anna.consents()
    assert line.consents["utility"].evidence == (
        "Booked flight TA 123 and ticked 'updates on Tresen'"
    )
    with pytest.raises(ForgedConsent):
        line.consents["utility"].verify()  # the business's word, not the customer's signature
    await anna.revoke_all(airline.account_id)
    [line] = await anna.consents()
    assert states(line) == {"utility": "opted_out", "marketing": "opted_out"}
    # The business cannot put it back.
    with pytest.raises(RelayError) as refused:
        await airline.attest_consent(anna.phone, "again", NOW)
    assert refused.value.code == ErrorCode.ATTESTED_CONSENT_REFUSED

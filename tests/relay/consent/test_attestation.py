"""Business-attested opt-ins: utility only, with evidence, if the operator accepts them, and
never over what the customer signed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relay.consent.factories import MINUTE, NOW, World, error_of
from support import MakeRelay

from tresen.core.clock import ManualClock

ATTESTED_CONSENT_REFUSED = 150062
NOT_A_BUSINESS = 150050
INVALID_PARAMETER = 100
UNDELIVERABLE = 131026
EVIDENCE = "Ticked 'booking updates on Tresen' at checkout, order 4711"


async def attest(world: World, business: Any, customer: str, **fields: Any) -> Any:
    body: dict[str, Any] = {
        "customer": customer,
        "evidence": EVIDENCE,
        "evidence_ms": world.now - MINUTE,
    }
    body.update(fields)
    return await world.http.post("/v1/consents/attestations", json=body, headers=business.auth)


async def test_a_business_attests_a_utility_opt_in_the_customer_can_see(world: World) -> None:
    shop = await world.business("Tresen Air")
    anna = await world.customer()

    r = await attest(world, shop, anna.account_id)

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] is True
    consent = body["consent"]
    assert (consent["scope"], consent["state"], consent["source"]) == (
        "utility",
        "opted_in",
        "business",
    )
    assert (consent["evidence"], consent["evidence_ms"]) == (EVIDENCE, world.now - MINUTE)
    assert consent["statement"] is None
    # The customer sees who claims her consent, and on what evidence.
    [line] = await world.dashboard(anna)
    assert line["display_name"] == "Tresen Air"
    assert [(c["scope"], c["source"], c["evidence"]) for c in line["consents"]] == [
        ("utility", "business", EVIDENCE)
    ]


async def test_marketing_consent_cannot_be_attested(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()

    status, code, details = error_of(await attest(world, shop, anna.account_id, scope="marketing"))

    assert (status, code, details["reason"]) == (403, ATTESTED_CONSENT_REFUSED, "marketing")
    assert await world.dashboard(anna) == []


async def test_the_operator_can_refuse_attested_consent(
    make_relay: MakeRelay, tmp_path: Path
) -> None:
    clock = ManualClock(NOW)
    async with make_relay(clock=clock, policy={"accept_attested_consent": False}) as relay:
        world = World(relay, clock)
        shop = await world.business()
        anna = await world.customer()

        status, code, details = error_of(await attest(world, shop, anna.account_id))

        assert (status, code, details["reason"]) == (403, ATTESTED_CONSENT_REFUSED, "not_accepted")
        assert await world.dashboard(anna) == []
        # The customer's own opt-in is still taken.
        await world.opt(anna, shop, "utility")


async def test_a_customer_cannot_attest(world: World) -> None:
    anna = await world.customer()
    bert = await world.customer()
    status, code, _ = error_of(await attest(world, anna.device, bert.account_id))
    assert (status, code) == (404, NOT_A_BUSINESS)
    assert await world.dashboard(bert) == []


async def test_attestation_never_overrules_the_customer(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()
    bert = await world.customer()
    await world.opt(anna, shop, "utility", "opted_out")
    await world.opt(bert, shop, "utility", "opted_in")
    world.clock.advance(minutes=5)

    status, code, details = error_of(await attest(world, shop, anna.account_id))
    assert (status, code, details["reason"]) == (
        403,
        ATTESTED_CONSENT_REFUSED,
        "customer_opted_out",
    )
    r = await attest(world, shop, bert.account_id)
    assert r.status_code == 200, r.text
    assert r.json()["changed"] is False
    # Bert's signed opt-in stays on record, not the business's word.
    assert r.json()["consent"]["source"] == "customer"
    [line] = await world.dashboard(bert)
    assert [(c["source"], c["state"]) for c in line["consents"]] == [("customer", "opted_in")]


async def test_the_customer_revokes_an_attested_opt_in(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()
    assert (await attest(world, shop, anna.account_id)).status_code == 200

    # Signed a little before the attestation was recorded: the customer's word still wins.
    r = await world.submit(anna, anna.sign(shop, "utility", "opted_out", at_ms=world.now - MINUTE))

    assert r.status_code == 200, r.text
    [line] = await world.dashboard(anna)
    assert [(c["source"], c["state"]) for c in line["consents"]] == [("customer", "opted_out")]
    history = (await world.pair(shop, anna, shop.auth)).json()["history"]
    assert [(h["source"], h["state"]) for h in history] == [
        ("customer", "opted_out"),
        ("business", "opted_in"),
    ]


async def test_a_new_attestation_replaces_the_business_earlier_one(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()
    assert (await attest(world, shop, anna.account_id)).status_code == 200
    world.clock.advance(minutes=1)
    r = await attest(world, shop, anna.account_id, evidence="Confirmed by phone, call 17")
    assert r.json()["changed"] is True
    [line] = await world.dashboard(anna)
    assert line["consents"][0]["evidence"] == "Confirmed by phone, call 17"


async def test_attestation_input_is_checked(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()

    cases = [
        ({"evidence": "x" * 1025}, INVALID_PARAMETER),
        ({"evidence": "   "}, INVALID_PARAMETER),
        ({"evidence_ms": world.now + 11 * MINUTE}, INVALID_PARAMETER),
        ({"scope": "everything"}, INVALID_PARAMETER),
        ({"customer": shop.account_id}, INVALID_PARAMETER),
        ({"customer": "f" * 32}, UNDELIVERABLE),
    ]
    for fields, expected in cases:
        r = await attest(world, shop, **{"customer": anna.account_id, **fields})
        assert error_of(r)[1] == expected, (fields, r.text)
    assert await world.dashboard(anna) == []

"""A customer's signed opt-ins and revocations: what the relay accepts, stores and keeps."""

from __future__ import annotations

import base64

from relay.consent.factories import MINUTE, Customer, World, error_of
from sqlalchemy import func, select

from tresen.crypto.consent import SignedConsent
from tresen.crypto.olm import DeviceIdentity
from tresen.relay.schema import consent_log, consents

INVALID_CONSENT = 150061
NOT_A_BUSINESS = 150050
INVALID_PARAMETER = 100


async def stored_rows(world: World) -> tuple[int, int]:
    async with world.relay.ctx.db.read() as conn:
        current = (await conn.execute(select(func.count()).select_from(consents))).scalar_one()
        logged = (await conn.execute(select(func.count()).select_from(consent_log))).scalar_one()
    return int(current), int(logged)


async def test_an_opt_in_is_stored_and_shows_on_the_dashboard(world: World) -> None:
    shop = await world.business("Bäckerei Müller")
    anna = await world.customer()

    signed = anna.sign(shop, "marketing", at_ms=world.now)
    r = await world.submit(anna, signed)

    assert r.status_code == 200, r.text
    [consent] = r.json()["consents"]
    assert consent["business_name"] == "Bäckerei Müller"
    assert (consent["scope"], consent["state"], consent["source"]) == (
        "marketing",
        "opted_in",
        "customer",
    )
    assert consent["decided_ms"] == world.now
    assert base64.b64decode(consent["statement"]) == signed.body
    assert consent["signature"] == signed.signature
    assert consent["device_ed25519"] == anna.identity.ed25519
    [line] = await world.dashboard(anna)
    assert line["business_account"] == shop.account_id
    assert line["display_name"] == "Bäckerei Müller"
    assert [(c["scope"], c["state"]) for c in line["consents"]] == [("marketing", "opted_in")]


async def test_both_scopes_in_one_request_are_stored_together(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()

    r = await world.submit(
        anna,
        anna.sign(shop, "utility", at_ms=world.now),
        anna.sign(shop, "marketing", at_ms=world.now),
    )

    assert r.status_code == 200, r.text
    [line] = await world.dashboard(anna)
    assert sorted((c["scope"], c["state"]) for c in line["consents"]) == [
        ("marketing", "opted_in"),
        ("utility", "opted_in"),
    ]


async def test_a_revocation_replaces_the_opt_in_and_history_keeps_both(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()
    await world.opt(anna, shop, "marketing", "opted_in")
    world.clock.advance(minutes=30)
    await world.opt(anna, shop, "marketing", "opted_out")

    [line] = await world.dashboard(anna)
    assert [(c["scope"], c["state"]) for c in line["consents"]] == [("marketing", "opted_out")]
    r = await world.pair(shop, anna, anna.auth)
    assert r.status_code == 200, r.text
    history = r.json()["history"]
    assert [(h["state"], h["updated_ms"]) for h in history] == [
        ("opted_out", world.now),
        ("opted_in", world.now - 30 * MINUTE),
    ]
    assert await stored_rows(world) == (1, 2)


async def test_an_old_opt_in_cannot_be_replayed_over_a_revocation(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()
    old_opt_in = anna.sign(shop, "marketing", "opted_in", at_ms=world.now)
    assert (await world.submit(anna, old_opt_in)).status_code == 200
    world.clock.advance(minutes=1)
    await world.opt(anna, shop, "marketing", "opted_out")

    # Still within the clock window, but older than the revocation on record.
    status, code, details = error_of(await world.submit(anna, old_opt_in))

    assert (status, code, details["reason"]) == (400, INVALID_CONSENT, "stale")
    assert details["stored_at_ms"] == world.now
    [line] = await world.dashboard(anna)
    assert line["consents"][0]["state"] == "opted_out"


async def test_a_statement_dated_too_far_from_the_relay_clock_is_refused(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()

    for offset in (-11 * MINUTE, 11 * MINUTE):
        status, code, details = error_of(
            await world.submit(anna, anna.sign(shop, at_ms=world.now + offset))
        )
        assert (status, code, details["reason"]) == (400, INVALID_CONSENT, "clock_skew")
    r = await world.submit(anna, anna.sign(shop, at_ms=world.now - 9 * MINUTE))
    assert r.status_code == 200, r.text


async def test_only_the_device_that_signed_may_submit(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()
    bert = await world.customer()

    # Bert's device submits a statement Anna's device signed for her account.
    status, code, details = error_of(await world.submit(bert, anna.sign(shop, at_ms=world.now)))
    assert (status, code, details["reason"]) == (400, INVALID_CONSENT, "not_the_signer")
    # Anna's second device cannot hand in what her first device signed either.
    second = await world.relay.register(anna.device.phone)

    anna2 = Customer(second, DeviceIdentity.create())
    await world.publish(second, anna2.identity)
    status, code, details = error_of(await world.submit(anna2, anna.sign(shop, at_ms=world.now)))
    assert (status, code, details["reason"]) == (400, INVALID_CONSENT, "not_the_signer")
    assert await stored_rows(world) == (0, 0)


async def test_a_statement_must_be_signed_with_the_device_current_key(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()
    signed_before = anna.sign(shop, at_ms=world.now)
    # The device replaces its identity keys; what the old key signs no longer counts.
    old = anna.identity
    anna.identity = DeviceIdentity.create()
    await world.publish(anna.device, anna.identity)

    status, code, details = error_of(await world.submit(anna, signed_before))
    assert (status, code, details["reason"]) == (400, INVALID_CONSENT, "not_current_key")
    # A statement naming the current key but signed by the old one.
    forged = anna.sign(shop, at_ms=world.now)
    forged = SignedConsent(forged.body, old.sign(b"tresen-consent-v1\x00" + forged.body))
    status, code, details = error_of(await world.submit(anna, forged))
    assert (status, code, details["reason"]) == (400, INVALID_CONSENT, "bad_signature")


async def test_a_device_without_identity_keys_cannot_submit(world: World) -> None:
    shop = await world.business()
    device = await world.relay.register()

    keyless = Customer(device, DeviceIdentity.create())
    status, code, details = error_of(
        await world.submit(keyless, keyless.sign(shop, at_ms=world.now))
    )
    assert (status, code, details["reason"]) == (400, INVALID_CONSENT, "no_identity_keys")


async def test_the_statement_must_name_the_account_phone_number(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()
    signed = anna.sign(shop, at_ms=world.now, customer_phone="+4915199999999")
    status, code, details = error_of(await world.submit(anna, signed))
    assert (status, code, details["reason"]) == (400, INVALID_CONSENT, "wrong_phone")


async def test_consent_goes_to_businesses_only(world: World) -> None:
    anna = await world.customer()
    bert = await world.customer()
    status, code, _ = error_of(await world.submit(anna, anna.sign(bert.device, at_ms=world.now)))
    assert (status, code) == (404, NOT_A_BUSINESS)
    status, code, _ = error_of(await world.submit(anna, anna.sign("f" * 32, at_ms=world.now)))
    assert (status, code) == (404, NOT_A_BUSINESS)


async def test_a_business_cannot_consent_to_itself(world: World) -> None:
    shop = await world.business()
    identity = DeviceIdentity.create()
    await world.publish(shop, identity)

    owner = Customer(shop, identity)
    status, code, _ = error_of(await world.submit(owner, owner.sign(shop, at_ms=world.now)))
    assert (status, code) == (400, INVALID_PARAMETER)


async def test_garbage_is_refused_and_nothing_is_stored(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()
    good = anna.sign(shop, "utility", at_ms=world.now)

    not_base64 = {"statement": "%%%", "signature": good.signature}
    r = await world.http.post(
        "/v1/consents", json={"statements": [good.to_json(), not_base64]}, headers=anna.auth
    )
    status, code, details = error_of(r)
    assert (status, code, details["reason"], details["index"]) == (
        400,
        INVALID_CONSENT,
        "malformed",
        1,
    )

    junk = SignedConsent(b"\x93\x01\x02\x03", anna.identity.sign(b"tresen-consent-v1\x00\x93"))
    status, code, details = error_of(await world.submit(anna, good, junk))
    assert (status, code, details["reason"], details["index"]) == (
        400,
        INVALID_CONSENT,
        "malformed",
        1,
    )

    twice = await world.submit(anna, good, anna.sign(shop, "utility", at_ms=world.now))
    assert error_of(twice)[1] == INVALID_PARAMETER
    r = await world.http.post("/v1/consents", json={"statements": []}, headers=anna.auth)
    assert error_of(r)[1] == INVALID_PARAMETER
    # One bad statement spoils the request: the good one beside it was not stored.
    assert await stored_rows(world) == (0, 0)


async def test_submitting_needs_a_device_token(world: World) -> None:
    r = await world.http.post("/v1/consents", json={"statements": []})
    assert error_of(r)[:2] == (401, 190)

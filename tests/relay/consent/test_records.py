"""Who reads a pair's signed records, and that whoever reads them can verify them offline."""

from __future__ import annotations

import base64

from relay.consent.factories import World, error_of

from tresen.crypto.consent import ConsentState, SignedConsent, verify_statement
from tresen.crypto.olm import DeviceIdentity

INVALID_PARAMETER = 100
INVALID_TOKEN = 190


async def test_the_business_verifies_the_records_offline_with_the_directory_key(
    world: World,
) -> None:
    shop = await world.business()
    anna = await world.customer()
    await world.opt(anna, shop, "utility")
    await world.opt(anna, shop, "marketing")

    r = await world.pair(shop, anna, shop.auth)
    assert r.status_code == 200, r.text
    body = r.json()
    directory = (await world.http.get(f"/v1/keys/{anna.account_id}", headers=shop.auth)).json()
    [device] = directory["devices"]
    key = device["identity_keys"]["ed25519"]

    scopes = []
    for record in body["consents"]:
        assert record["device_ed25519"] == key
        assert record["device_id"] == device["device_id"]
        signed = SignedConsent(base64.b64decode(record["statement"]), record["signature"])
        statement = verify_statement(signed, key)
        assert statement.business_account == shop.account_id
        assert statement.customer_account == anna.account_id
        assert statement.customer_phone == anna.device.phone
        assert statement.state is ConsentState.OPTED_IN
        scopes.append(str(statement.scope))
    assert scopes == ["marketing", "utility"]


async def test_records_stay_verifiable_after_the_device_replaces_its_keys(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()
    await world.opt(anna, shop, "marketing")
    old_key = anna.identity.ed25519
    anna.identity = DeviceIdentity.create()
    await world.publish(anna.device, anna.identity)

    [record] = (await world.pair(shop, anna, shop.auth)).json()["consents"]

    # The record names the key that signed it, not the device's current one.
    assert record["device_ed25519"] == old_key
    signed = SignedConsent(base64.b64decode(record["statement"]), record["signature"])
    assert verify_statement(signed, old_key).state is ConsentState.OPTED_IN


async def test_only_the_business_and_the_customer_read_their_records(world: World) -> None:
    shop = await world.business()
    rival = await world.business()
    anna = await world.customer()
    bert = await world.customer()
    await world.opt(anna, shop, "marketing")
    await world.opt(anna, rival, "marketing")

    for reader in (shop.auth, anna.auth):
        r = await world.pair(shop, anna, reader)
        assert r.status_code == 200, r.text
        assert len(r.json()["consents"]) == 1
    for outsider in (rival.auth, bert.auth):
        status, code, details = error_of(await world.pair(shop, anna, outsider))
        assert (status, code, details["reason"]) == (400, INVALID_PARAMETER, "not_a_party")
    # The rival reads its own pair with Anna, and sees nothing of the shop's.
    r = await world.pair(rival, anna, rival.auth)
    assert [c["business_account"] for c in r.json()["consents"]] == [rival.account_id]
    assert {h["business_account"] for h in r.json()["history"]} == {rival.account_id}


async def test_a_dashboard_shows_only_the_caller_consents(world: World) -> None:
    shop = await world.business("Shop")
    anna = await world.customer()
    bert = await world.customer()
    await world.opt(anna, shop, "marketing")

    assert await world.dashboard(bert) == []
    # A business sees no customer list through the dashboard either.
    r = await world.http.get("/v1/consents", headers=shop.auth)
    assert r.json() == {"businesses": []}


async def test_the_dashboard_lists_businesses_by_name(world: World) -> None:
    anna = await world.customer()
    for name in ("Zeitungsladen", "apotheke", "Bäckerei"):
        await world.opt(anna, await world.business(name), "utility")

    names = [line["display_name"] for line in await world.dashboard(anna)]

    assert names == ["apotheke", "Bäckerei", "Zeitungsladen"]


async def test_the_operator_reads_records_on_the_admin_route_only(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()
    await world.opt(anna, shop, "marketing")
    token = await world.relay.ctx.operator.create_token("ops", by="test")
    ops = {"Authorization": f"Bearer {token}"}
    query = {"business": shop.account_id, "customer": anna.account_id}

    r = await world.http.get("/v1/admin/consents", params=query, headers=ops)
    assert r.status_code == 200, r.text
    [record] = r.json()["consents"]
    signed = SignedConsent(base64.b64decode(record["statement"]), record["signature"])
    verify_statement(signed, record["device_ed25519"])

    # Device tokens do not open the admin route; operator tokens open no account route.
    for headers in (shop.auth, anna.auth, {}):
        r = await world.http.get("/v1/admin/consents", params=query, headers=headers)
        assert error_of(r)[:2] == (401, INVALID_TOKEN)
    r = await world.pair(shop, anna, ops)
    assert error_of(r)[:2] == (401, INVALID_TOKEN)


async def test_history_can_be_limited(world: World) -> None:
    shop = await world.business()
    anna = await world.customer()
    for state in ("opted_in", "opted_out", "opted_in"):
        await world.opt(anna, shop, "marketing", state)
        world.clock.advance(seconds=1)

    r = await world.http.get(
        f"/v1/consents/{shop.account_id}/{anna.account_id}",
        params={"history": 2},
        headers=anna.auth,
    )

    assert [h["state"] for h in r.json()["history"]] == ["opted_in", "opted_out"]

"""A customer's copy of what the relay holds about them, and the deletion of their account."""

from __future__ import annotations

from support import MakeRelay, RunningRelay

from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode


async def test_the_export_holds_the_account_its_devices_and_its_blocks(relay: RunningRelay) -> None:
    anna = await relay.register(device_name="Anna's phone")
    laptop = await relay.register(anna.phone, device_name="laptop")
    shop = await relay.register()
    r = await relay.http.post("/v1/blocks", json={"account_id": shop.account_id}, headers=anna.auth)
    assert r.status_code in (200, 201), r.text

    r = await relay.http.get("/v1/me/export", headers=laptop.auth)
    assert r.status_code == 200, r.text
    export = r.json()
    assert export["format"] == "tresen.relay.export/1"
    assert export["account"]["id"] == anna.account_id
    assert export["account"]["phone"] == anna.phone
    assert [(d["device_id"], d["name"]) for d in export["devices"]] == [
        (1, "Anna's phone"),
        (2, "laptop"),
    ]
    assert "token_hash" not in export["devices"][0]
    assert [b["blocked_account"] for b in export["blocks"]] == [shop.account_id]
    assert export["truncated"] == []
    r = await relay.http.get("/v1/me/export")
    assert r.status_code == 401


async def test_exports_are_limited_per_account(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, limits={"exports_per_hour": 2}) as relay:
        anna = await relay.register()
        laptop = await relay.register(anna.phone)
        for device in (anna, laptop):
            assert (await relay.http.get("/v1/me/export", headers=device.auth)).status_code == 200
        r = await relay.http.get("/v1/me/export", headers=anna.auth)
        assert r.status_code == 429
        assert r.json()["error"]["code"] == ErrorCode.REQUEST_RATE_LIMITED
        clock.advance(hours=1)
        assert (await relay.http.get("/v1/me/export", headers=laptop.auth)).status_code == 200


async def test_a_deleted_account_is_gone_and_its_number_starts_afresh(relay: RunningRelay) -> None:
    anna = await relay.register()
    laptop = await relay.register(anna.phone)
    shop = await relay.register()
    r = await relay.http.post("/v1/blocks", json={"account_id": shop.account_id}, headers=anna.auth)
    assert r.status_code in (200, 201), r.text

    r = await relay.http.delete("/v1/me", headers=anna.auth)
    assert r.status_code == 204, r.text
    for device in (anna, laptop):
        r = await relay.http.get("/v1/me", headers=device.auth)
        assert r.status_code == 401
    r = await relay.http.get("/v1/accounts", params={"phone": anna.phone}, headers=shop.auth)
    assert r.status_code == 404

    again = await relay.register(anna.phone)
    assert again.account_id != anna.account_id
    assert again.device_id == 1
    # The blocks made before the deletion protect the number's holder again.
    r = await relay.http.get("/v1/blocks", headers=again.auth)
    assert shop.account_id in str(r.json())


async def test_a_business_account_is_not_deleted_by_its_device(relay: RunningRelay) -> None:
    shop = await relay.register()
    r = await relay.http.put(
        "/v1/business/profile", json={"display_name": "Corner Shop"}, headers=shop.auth
    )
    assert r.status_code == 201, r.text
    r = await relay.http.delete("/v1/me", headers=shop.auth)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == ErrorCode.BUSINESS_ACCOUNT_NOT_DELETABLE
    assert (await relay.http.get("/v1/me", headers=shop.auth)).status_code == 200

"""Finding an account by phone number, and a sender's number by account id."""

from __future__ import annotations

from support import MakeRelay, RunningRelay

from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode


async def test_lookup_by_phone_and_by_account(relay: RunningRelay) -> None:
    alice = await relay.register()
    bob = await relay.register("+4915112345678")
    r = await relay.http.get(
        "/v1/accounts", params={"phone": "+49 151 1234 5678"}, headers=alice.auth
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"account_id": bob.account_id, "phone": "+4915112345678", "kind": "customer"}
    r = await relay.http.get(f"/v1/accounts/{alice.account_id}", headers=bob.auth)
    assert r.json() == {"account_id": alice.account_id, "phone": alice.phone, "kind": "customer"}


async def test_lookups_tell_businesses_apart(relay: RunningRelay) -> None:
    customer = await relay.register()
    shop = await relay.register()
    r = await relay.http.put(
        "/v1/business/profile", json={"display_name": "Corner Shop"}, headers=shop.auth
    )
    assert r.status_code == 201, r.text
    r = await relay.http.get("/v1/accounts", params={"phone": shop.phone}, headers=customer.auth)
    assert r.json()["kind"] == "business"
    r = await relay.http.get(f"/v1/accounts/{shop.account_id}", headers=customer.auth)
    assert r.json()["kind"] == "business"


async def test_unknown_numbers_and_accounts(relay: RunningRelay) -> None:
    alice = await relay.register()
    r = await relay.http.get("/v1/accounts", params={"phone": "+4915199999999"}, headers=alice.auth)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == ErrorCode.UNDELIVERABLE
    r = await relay.http.get("/v1/accounts", params={"phone": "nonsense"}, headers=alice.auth)
    assert r.json()["error"]["code"] == ErrorCode.INVALID_PHONE_NUMBER
    r = await relay.http.get(f"/v1/accounts/{'0' * 32}", headers=alice.auth)
    assert r.status_code == 404
    r = await relay.http.get("/v1/accounts", params={"phone": alice.phone})
    assert r.status_code == 401


async def test_lookups_are_rate_limited_per_account(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, limits={"lookups_per_hour": 1, "lookup_burst": 3}) as relay:
        alice = await relay.register()
        laptop = await relay.register(alice.phone)
        bob = await relay.register()
        for device in (alice, laptop, alice):
            r = await relay.http.get(f"/v1/accounts/{bob.account_id}", headers=device.auth)
            assert r.status_code == 200

        # The account's budget is spent, whichever of its devices asks.
        for device in (alice, laptop):
            r = await relay.http.get(
                "/v1/accounts", params={"phone": bob.phone}, headers=device.auth
            )
            assert r.status_code == 429
            assert r.json()["error"]["code"] == ErrorCode.REQUEST_RATE_LIMITED
            assert r.headers["Retry-After"] == "3600"
        # Other accounts keep theirs.
        r = await relay.http.get(f"/v1/accounts/{alice.account_id}", headers=bob.auth)
        assert r.status_code == 200

        clock.advance(hours=1)
        r = await relay.http.get(f"/v1/accounts/{bob.account_id}", headers=laptop.auth)
        assert r.status_code == 200
        r = await relay.http.get(f"/v1/accounts/{bob.account_id}", headers=alice.auth)
        assert r.status_code == 429


async def test_the_lookup_budget_survives_a_restart(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    limits = {"lookups_per_hour": 1, "lookup_burst": 2}
    async with make_relay(clock=clock, limits=limits) as relay:
        alice = await relay.register()
        for _ in range(2):
            r = await relay.http.get(f"/v1/accounts/{alice.account_id}", headers=alice.auth)
            assert r.status_code == 200

    # A new relay process on the same database.
    async with make_relay(clock=clock, limits=limits) as restarted:
        r = await restarted.http.get(f"/v1/accounts/{alice.account_id}", headers=alice.auth)
        assert r.status_code == 429, r.text
        assert r.headers["Retry-After"] == "3600"
        clock.advance(hours=1)
        r = await restarted.http.get(f"/v1/accounts/{alice.account_id}", headers=alice.auth)
        assert r.status_code == 200

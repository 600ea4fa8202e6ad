"""The business directory and the public profile of a business."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from support import Device, MakeRelay, RunningRelay

from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode
from tresen.core.ids import AccountId

MakeBusiness = Callable[..., Awaitable[Device]]
SetProfile = Callable[..., Awaitable[None]]

BERLIN = ZoneInfo("Europe/Berlin")


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


def berlin_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=BERLIN).timestamp() * 1000)  # type: ignore[misc]


async def names(relay: RunningRelay, device: Device, **params: Any) -> list[str]:
    r = await relay.http.get("/v1/businesses", params=params, headers=device.auth)
    assert r.status_code == 200, r.text
    return [b["display_name"] for b in r.json()["businesses"]]


async def test_verified_businesses_come_first_then_by_name(
    relay: RunningRelay, make_business: MakeBusiness, set_profile: SetProfile
) -> None:
    customer = await relay.register()
    assert await names(relay, customer) == []
    created = {}
    for name in ("delta Bikes", "Alpha Bikes", "Charlie Bikes", "bravo Bikes", "Echo Bikes"):
        created[name] = await make_business(relay, name, category="RETAIL")
    for name in ("Echo Bikes", "Charlie Bikes"):
        await set_profile(relay, created[name], verification="verified")
    await set_profile(relay, created["Alpha Bikes"], verification="pending")

    assert await names(relay, customer) == [
        "Charlie Bikes",
        "Echo Bikes",
        "Alpha Bikes",
        "bravo Bikes",
        "delta Bikes",
    ]
    assert await names(relay, customer, limit=2) == ["Charlie Bikes", "Echo Bikes"]
    r = await relay.http.get("/v1/businesses", headers=customer.auth)
    [first, *_] = r.json()["businesses"]
    assert first == {
        "account_id": created["Charlie Bikes"].account_id,
        "display_name": "Charlie Bikes",
        "about": "",
        "category": "RETAIL",
        "verification": "verified",
        "has_picture": False,
    }


async def test_search_ignores_case_accents_spacing_and_lookalikes(
    relay: RunningRelay, make_business: MakeBusiness
) -> None:
    customer = await relay.register()
    await make_business(relay, "Café Müller")
    await make_business(relay, "Müllerei Schmidt")
    await make_business(relay, "AT&T Shop")
    await make_business(relay, "Bäckerei Morgenrot")

    assert await names(relay, customer, q="muller") == ["Café Müller", "Müllerei Schmidt"]
    assert await names(relay, customer, q="CAFE") == ["Café Müller"]
    assert await names(relay, customer, q="cafe mu") == ["Café Müller"]
    assert await names(relay, customer, q="\u0441af\u00e9") == ["Café Müller"]  # Cyrillic es
    assert await names(relay, customer, q="morgen rot") == ["Bäckerei Morgenrot"]
    assert await names(relay, customer, q="&") == ["AT&T Shop"]
    assert await names(relay, customer, q="nothing like it") == []


async def test_a_category_narrows_the_list(
    relay: RunningRelay, make_business: MakeBusiness
) -> None:
    customer = await relay.register()
    await make_business(relay, "Hotel Adlon", category="HOTEL")
    await make_business(relay, "Hotel Bar", category="RESTAURANT")
    await make_business(relay, "Zugspitze", category="HOTEL")
    assert await names(relay, customer, category="HOTEL") == ["Hotel Adlon", "Zugspitze"]
    assert await names(relay, customer, category="HOTEL", q="hotel") == ["Hotel Adlon"]
    r = await relay.http.get("/v1/businesses", params={"category": "BAKERY"}, headers=customer.auth)
    assert r.status_code == 400
    assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER


async def test_the_limit_is_at_most_50(relay: RunningRelay) -> None:
    customer = await relay.register()
    for limit in (0, 51):
        r = await relay.http.get("/v1/businesses", params={"limit": limit}, headers=customer.auth)
        assert r.status_code == 400
        assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER
    r = await relay.http.get("/v1/businesses", params={"limit": 50}, headers=customer.auth)
    assert r.status_code == 200


async def test_suspended_businesses_and_customers_are_not_listed(
    relay: RunningRelay, make_business: MakeBusiness, set_profile: SetProfile
) -> None:
    customer = await relay.register()
    listed = await make_business(relay, "Shop Listed")
    suspended = await make_business(relay, "Shop Suspended")
    await set_profile(relay, suspended, verification="verified", suspended_ms=1)
    assert await names(relay, customer, q="shop") == ["Shop Listed"]

    for device in (suspended, customer):
        r = await relay.http.get(f"/v1/businesses/{device.account_id}", headers=listed.auth)
        assert r.status_code == 404
        assert error_of(r)["code"] == ErrorCode.UNDELIVERABLE
    r = await relay.http.get(f"/v1/businesses/{'0' * 32}", headers=listed.auth)
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.UNDELIVERABLE


async def test_the_public_profile_says_whether_the_business_is_open(
    make_relay: MakeRelay, make_business: MakeBusiness
) -> None:
    clock = ManualClock(berlin_ms(2026, 3, 27, 10, 0))  # a Friday
    async with make_relay(clock=clock) as relay:
        customer = await relay.register()
        weekdays = [["09:00", "17:30"]]
        business = await make_business(
            relay,
            "Morgenrot",
            about="Brot",
            email="laden@morgenrot.example.org",
            category="GROCERY",
            timezone="Europe/Berlin",
            hours={d: weekdays for d in ("mon", "tue", "wed", "thu", "fri")},
            closed_dates=["2026-03-30"],
        )
        r = await relay.http.get(f"/v1/businesses/{business.account_id}", headers=customer.auth)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body == {
            "account_id": business.account_id,
            "display_name": "Morgenrot",
            "about": "Brot",
            "description": "",
            "address": "",
            "email": "laden@morgenrot.example.org",
            "websites": [],
            "category": "GROCERY",
            "timezone": "Europe/Berlin",
            "hours": {d: weekdays for d in ("mon", "tue", "wed", "thu", "fri")},
            "closed_dates": ["2026-03-30"],
            "has_picture": False,
            "verification": "unverified",
            "open_now": True,
            "next_change_ms": berlin_ms(2026, 3, 27, 17, 30),
            "certificate": None,
        }

        # Friday evening: closed over the weekend (and the clocks change on Sunday), and
        # Monday is a holiday, so it opens on Tuesday at 09:00 summer time.
        clock.set(berlin_ms(2026, 3, 27, 18, 0))
        r = await relay.http.get(f"/v1/businesses/{business.account_id}", headers=customer.auth)
        assert r.json()["open_now"] is False
        assert r.json()["next_change_ms"] == berlin_ms(2026, 3, 31, 9, 0)

        # Without published hours, nobody can say.
        other = await make_business(relay, "Ohne Zeiten")
        r = await relay.http.get(f"/v1/businesses/{other.account_id}", headers=customer.auth)
        assert (r.json()["open_now"], r.json()["next_change_ms"]) == (None, None)


async def test_the_certificate_comes_from_the_operator_hook(
    relay: RunningRelay, make_business: MakeBusiness
) -> None:
    customer = await relay.register()
    business = await make_business(relay, "Morgenrot")
    asked: list[AccountId] = []

    async def certificate_for(account_id: AccountId) -> dict[str, Any] | None:
        asked.append(account_id)
        return {"body": "Ym9keQ", "signature": "c2ln", "key_id": "k1"}

    relay.ctx.businesses.certificate_for = certificate_for
    r = await relay.http.get(f"/v1/businesses/{business.account_id}", headers=customer.auth)
    assert r.json()["certificate"] == {"body": "Ym9keQ", "signature": "c2ln", "key_id": "k1"}
    assert asked == [business.account_id]

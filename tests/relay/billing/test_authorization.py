"""Rate cards and statements are the business's and the operator's only: no route shows one
business's prices or charges to another, to a customer, or to a device token on the admin API.
(``tests/relay/test_authorization.py`` checks every route without credentials as well.)"""

from __future__ import annotations

from typing import Any

import httpx
from relay.billing.factories import Billing
from support import Device

from tresen.core.errors import ErrorCode

# Prices no default card has: wherever they show up, they came from that business's override.
SHOP_PRICE = 123_457
KIOSK_PRICE = 765_431


async def two_businesses_with_charges(b: Billing) -> tuple[Device, Device, Device, set[str]]:
    """Two businesses with overrides and one charge each to the same customer; the kiosk's
    message ids."""
    shop, kiosk, ana = await b.business(), await b.business("Kiosk"), await b.customer("DE")
    await b.override(shop, ("marketing", "DE", SHOP_PRICE))
    await b.override(kiosk, ("marketing", "DE", KIOSK_PRICE), ("utility", "FR", KIOSK_PRICE))
    for business in (shop, kiosk):
        await b.consent(business, ana, "marketing")
        sent = await b.send(business, ana, "template", await b.template(business, "MARKETING"))
        assert sent["pricing"]["billable"], sent
    delivered = await b.deliver(ana)
    charged = await b.ledger()
    theirs = {m for m in delivered if charged[m][0] == kiosk.account_id}
    assert len(theirs) == 1
    return shop, kiosk, ana, theirs


def billing_routes(kiosk: Device) -> list[tuple[str, str, dict[str, Any]]]:
    """Every billing route, naming the kiosk wherever a route takes an account."""
    other = kiosk.account_id
    rates = {"rates": [{"category": "marketing", "country": "DE", "price_micros": 1}]}
    return [
        ("GET", "/v1/business/rate-card", {}),
        ("GET", "/v1/business/statements/2026-01", {}),
        ("GET", "/v1/business/statements/2026-01", {"params": {"format": "csv"}}),
        ("GET", "/v1/admin/rate-card", {}),
        ("PUT", "/v1/admin/rate-card", {"json": rates}),
        ("GET", f"/v1/admin/businesses/{other}/rate-card", {}),
        ("PUT", f"/v1/admin/businesses/{other}/rate-card", {"json": rates}),
        ("DELETE", f"/v1/admin/businesses/{other}/rate-card", {}),
        ("GET", f"/v1/admin/businesses/{other}/statements/2026-01", {}),
        ("GET", f"/v1/admin/businesses/{other}/statements/2026-01", {"params": {"format": "csv"}}),
    ]


def assert_refused(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == ErrorCode.INVALID_TOKEN


def leaks(r: httpx.Response, kiosk: Device, kiosk_messages: set[str]) -> list[str]:
    text = r.text
    found = [kiosk.account_id, *kiosk_messages, str(KIOSK_PRICE)]
    return [s for s in found if s in text]


async def test_one_business_never_reads_anothers_rate_card_or_statement(billing: Billing) -> None:
    b = billing
    shop, kiosk, _, kiosk_messages = await two_businesses_with_charges(b)
    kiosk_card_before = (
        await b.admin("GET", f"/v1/admin/businesses/{kiosk.account_id}/rate-card")
    ).json()

    for method, path, extra in billing_routes(kiosk):
        # Naming the other business anywhere in the request changes nothing.
        params = {
            **extra.get("params", {}),
            "account_id": kiosk.account_id,
            "business": kiosk.account_id,
        }
        r = await b.http.request(
            method, path, headers=shop.auth, json=extra.get("json"), params=params
        )
        if path.startswith("/v1/admin/"):
            assert_refused(r)
            continue
        assert r.status_code == 200, (path, r.text)
        assert leaks(r, kiosk, kiosk_messages) == [], (path, r.text)

    own = (await b.http.get("/v1/business/rate-card", headers=shop.auth)).json()["rates"]
    assert {
        "category": "marketing",
        "country": "DE",
        "price_micros": SHOP_PRICE,
        "currency": "EUR",
    } in own
    statement = (await b.http.get("/v1/business/statements/2026-01", headers=shop.auth)).json()
    assert statement["account_id"] == shop.account_id
    assert [i["price_micros"] for i in statement["items"]] == [SHOP_PRICE]

    # The shop's tries did not touch the kiosk's card, and left no audit entry.
    after = (await b.admin("GET", f"/v1/admin/businesses/{kiosk.account_id}/rate-card")).json()
    assert after == kiosk_card_before
    audit = (
        await b.admin("GET", "/v1/admin/audit", params={"account_id": kiosk.account_id})
    ).json()
    assert [e["operator"] for e in audit["entries"] if e["action"].startswith("rate_card")] == [
        "billing"
    ]


async def test_customers_read_no_statement_and_no_rate_card(billing: Billing) -> None:
    b = billing
    _, kiosk, ana, kiosk_messages = await two_businesses_with_charges(b)

    for method, path, extra in billing_routes(kiosk):
        r = await b.http.request(method, path, headers=ana.auth, **extra)
        if path.startswith("/v1/admin/"):
            assert_refused(r)
        else:
            # A customer has no business account: the same answer as for any non-business.
            assert r.status_code == 404, (path, r.text)
            assert r.json()["error"]["code"] == ErrorCode.NOT_A_BUSINESS
        assert leaks(r, kiosk, kiosk_messages) == [], (path, r.text)


async def test_operator_routes_take_operator_tokens_only(billing: Billing) -> None:
    b = billing
    shop, kiosk, ana, kiosk_messages = await two_businesses_with_charges(b)
    default_before = (await b.admin("GET", "/v1/admin/rate-card")).json()

    for method, path, extra in billing_routes(kiosk):
        if path.startswith("/v1/admin/"):
            # The kiosk's own device token opens nothing about the kiosk either.
            for device in (shop, kiosk, ana):
                r = await b.http.request(method, path, headers=device.auth, **extra)
                assert_refused(r)
                assert leaks(r, kiosk, kiosk_messages) == [], (path, r.text)
        else:
            # ... and an operator token opens no business route.
            assert_refused(await b.http.request(method, path, headers=b.operator, **extra))

    assert (await b.admin("GET", "/v1/admin/rate-card")).json() == default_before
    # The operator reads any business's card and statement.
    card = (await b.admin("GET", f"/v1/admin/businesses/{kiosk.account_id}/rate-card")).json()
    assert {o["price_micros"] for o in card["overrides"]} == {KIOSK_PRICE}
    statement = (
        await b.admin("GET", f"/v1/admin/businesses/{kiosk.account_id}/statements/2026-01")
    ).json()
    assert {i["message_id"] for i in statement["items"]} == kiosk_messages
    assert statement["grand_totals"][0]["amount_micros"] == KIOSK_PRICE

"""Rate cards as the operator edits them and as a business sees them."""

from __future__ import annotations

from typing import Any

import pytest
from relay.billing.factories import Billing

from tresen.core.errors import ErrorCode


def price(card: list[dict[str, Any]], category: str, country: str) -> tuple[int, str]:
    [entry] = [e for e in card if (e["category"], e["country"]) == (category, country)]
    return entry["price_micros"], entry["currency"]


async def audit(b: Billing, **params: str) -> list[dict[str, Any]]:
    """The operators' rate card actions, newest first."""
    r = await b.admin("GET", "/v1/admin/audit", params=params)
    assert r.status_code == 200, r.text
    return [e for e in r.json()["entries"] if e["action"].startswith("rate_card")]


async def test_the_operator_reads_and_edits_the_default_card(billing: Billing) -> None:
    b = billing
    card = (await b.admin("GET", "/v1/admin/rate-card")).json()
    assert card["currency"] == "EUR"
    assert card["rows"] == []
    assert price(card["effective"], "marketing", "DE") == (131_000, "EUR")
    assert {e["source"] for e in card["effective"]} == {"settings"}

    r = await b.admin(
        "PUT",
        "/v1/admin/rate-card",
        json={
            "rates": [
                {"category": "marketing", "country": "de", "price_micros": 120_000},
                {"category": "utility", "country": "*", "price_micros": 9_000, "currency": "usd"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    card = r.json()
    assert [
        (x["category"], x["country"], x["price_micros"], x["currency"]) for x in card["rows"]
    ] == [
        ("marketing", "DE", 120_000, "EUR"),
        ("utility", "*", 9_000, "USD"),
    ]
    effective = {(e["category"], e["country"]): e for e in card["effective"]}
    assert effective["marketing", "DE"]["price_micros"] == 120_000
    assert effective["marketing", "DE"]["source"] == "operator"
    assert effective["marketing", "FR"]["source"] == "settings"
    # The operator's "*" comes before the settings' country prices.
    assert (effective["utility", "DE"]["price_micros"], effective["utility", "DE"]["source"]) == (
        9_000,
        "operator",
    )
    [entry] = await audit(b)
    assert (entry["operator"], entry["action"], entry["account_id"]) == (
        "billing",
        "rate_card",
        None,
    )
    assert entry["details"]["changes"][0] == {
        "category": "marketing",
        "country": "DE",
        "from": None,
        "to": 120_000,
        "currency": "EUR",
    }

    # Replacing keeps only what is named.
    r = await b.admin(
        "PUT",
        "/v1/admin/rate-card",
        json={
            "rates": [{"category": "marketing", "country": "DE", "price_micros": 110_000}],
            "replace": True,
        },
    )
    card = r.json()
    assert [(x["category"], x["country"], x["price_micros"]) for x in card["rows"]] == [
        ("marketing", "DE", 110_000)
    ]
    assert price(card["effective"], "utility", "DE") == (55_000, "EUR")
    latest = (await audit(b))[0]
    assert latest["details"]["removed"] == ["utility/*"]
    assert latest["details"]["changes"][0]["from"] == 120_000


async def test_prices_apply_to_sends_accepted_after_the_change(billing: Billing) -> None:
    b = billing
    shop, kiosk = await b.business(), await b.business("Kiosk")
    ana = await b.customer("DE")
    marketing = {s.account_id: await b.template(s, "MARKETING") for s in (shop, kiosk)}
    for s in (shop, kiosk):
        await b.consent(s, ana, "marketing")

    first = await b.send(shop, ana, "template", marketing[shop.account_id])
    r = await b.admin(
        "PUT",
        "/v1/admin/rate-card",
        json={"rates": [{"category": "marketing", "country": "DE", "price_micros": 100_000}]},
    )
    assert r.status_code == 200, r.text
    second = await b.send(shop, ana, "template", marketing[shop.account_id])
    await b.override(shop, ("marketing", "DE", 90_000))
    third = await b.send(shop, ana, "template", marketing[shop.account_id])
    theirs = await b.send(kiosk, ana, "template", marketing[kiosk.account_id])
    await b.deliver(ana)

    charged = {m: p for m, (_, p, _, _) in (await b.ledger()).items()}
    # A price is fixed when the send is accepted, and charged when it is delivered.
    assert charged == {
        first["message_id"]: 131_000,
        second["message_id"]: 100_000,
        third["message_id"]: 90_000,
        theirs["message_id"]: 100_000,
    }


async def test_a_business_sees_the_prices_that_apply_to_it_and_nothing_else(
    billing: Billing,
) -> None:
    b = billing
    shop, kiosk, ana = await b.business(), await b.business("Kiosk"), await b.customer()
    await b.override(shop, ("marketing", "DE", 90_000), ("marketing", "*", 70_000))
    await b.override(kiosk, ("utility", "US", 1_000))

    r = await b.http.get("/v1/business/rate-card", headers=shop.auth)
    assert r.status_code == 200, r.text
    rates = r.json()["rates"]
    assert set(rates[0]) == {"category", "country", "price_micros", "currency"}
    assert price(rates, "marketing", "DE") == (90_000, "EUR")
    # The business's own "*" stands for every other country, before the default card.
    assert price(rates, "marketing", "FR") == (70_000, "EUR")
    assert price(rates, "marketing", "*") == (70_000, "EUR")
    assert price(rates, "utility", "US") == (4_000, "EUR")  # kiosk's override is not shop's
    assert price(rates, "authentication_international", "GB") == (36_000, "EUR")
    assert {r["category"] for r in rates} == {
        "marketing",
        "utility",
        "authentication",
        "authentication_international",
    }

    theirs = (await b.http.get("/v1/business/rate-card", headers=kiosk.auth)).json()["rates"]
    assert price(theirs, "marketing", "DE") == (131_000, "EUR")
    assert price(theirs, "utility", "US") == (1_000, "EUR")

    # The operator sees where each price comes from.
    r = await b.admin("GET", f"/v1/admin/businesses/{shop.account_id}/rate-card")
    card = r.json()
    assert [(o["category"], o["country"]) for o in card["overrides"]] == [
        ("marketing", "*"),
        ("marketing", "DE"),
    ]
    sources = {(e["category"], e["country"]): e["source"] for e in card["effective"]}
    assert sources["marketing", "FR"] == "override"
    assert sources["utility", "DE"] == "settings"
    assert card["effective"] == [
        {**rate, "source": sources[rate["category"], rate["country"]]} for rate in rates
    ]

    refused = await b.http.get("/v1/business/rate-card", headers=ana.auth)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == ErrorCode.NOT_A_BUSINESS


BAD_RATES: list[tuple[dict[str, Any], str, str]] = [
    ({"category": "promo", "country": "DE", "price_micros": 1}, "rates.0.category", "promo"),
    ({"category": "service", "country": "DE", "price_micros": 1}, "rates.0.category", "marketing"),
    ({"category": "marketing", "country": "XX", "price_micros": 1}, "rates.0.country", "ISO"),
    ({"category": "marketing", "country": "Germany", "price_micros": 1}, "rates.0.country", "'*'"),
    ({"category": "marketing", "country": "DE", "price_micros": -1}, "rates.0.price_micros", "0"),
    ({"category": "marketing", "country": "DE", "price_micros": 1.5}, "rates.0.price_micros", ""),
    ({"category": "marketing", "country": "DE", "price_micros": "9"}, "rates.0.price_micros", ""),
    ({"category": "marketing", "country": "DE", "price_micros": True}, "rates.0.price_micros", ""),
    (
        {"category": "marketing", "country": "DE", "price_micros": 10**13},
        "rates.0.price_micros",
        "micro",
    ),
    (
        {"category": "marketing", "country": "DE", "price_micros": 1, "currency": "EURO"},
        "rates.0.currency",
        "three letters",
    ),
    (
        {"category": "marketing", "country": "DE", "price_micros": 1, "currency": "E1R"},
        "rates.0.currency",
        "three letters",
    ),
    ({"category": "marketing", "country": "DE"}, "rates.0.price_micros", ""),
]


@pytest.mark.parametrize(("rate", "where", "says"), BAD_RATES)
async def test_invalid_rates_are_refused_with_clear_errors(
    billing: Billing, rate: dict[str, Any], where: str, says: str
) -> None:
    b = billing
    shop = await b.business()
    for path in ("/v1/admin/rate-card", f"/v1/admin/businesses/{shop.account_id}/rate-card"):
        r = await b.admin("PUT", path, json={"rates": [rate]})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == ErrorCode.INVALID_PARAMETER
        [problem] = error["details"]["problems"]
        assert problem["field"].removeprefix("body.") == where
        assert says in problem["problem"]
    assert (await b.admin("GET", "/v1/admin/rate-card")).json()["rows"] == []
    assert (await audit(b)) == []


async def test_a_rate_named_twice_or_for_a_customer_is_refused(billing: Billing) -> None:
    b = billing
    ana = await b.customer()
    twice = {
        "rates": [
            {"category": "marketing", "country": "DE", "price_micros": 1},
            {"category": "Marketing", "country": "de", "price_micros": 2},
        ]
    }
    r = await b.admin("PUT", "/v1/admin/rate-card", json=twice)
    assert r.json()["error"]["details"]["problems"] == [
        {"field": "rates.1", "problem": "marketing / DE is given more than once"}
    ]
    for method in ("GET", "PUT", "DELETE"):
        r = await b.admin(
            method,
            f"/v1/admin/businesses/{ana.account_id}/rate-card",
            json={"rates": []} if method == "PUT" else None,
        )
        assert r.json()["error"]["code"] == ErrorCode.NOT_A_BUSINESS, (method, r.text)


async def test_overrides_are_removed_one_at_a_time_or_all(billing: Billing) -> None:
    b = billing
    shop = await b.business()
    path = f"/v1/admin/businesses/{shop.account_id}/rate-card"
    await b.override(shop, ("marketing", "DE", 1), ("utility", "DE", 2), ("utility", "*", 3))

    half = await b.admin("DELETE", path, params={"category": "marketing"})
    assert half.json()["error"]["code"] == ErrorCode.INVALID_PARAMETER
    bad = await b.admin("DELETE", path, params={"category": "utility", "country": "ZZ"})
    assert bad.json()["error"]["details"]["problems"][0]["field"] == "country"

    one = await b.admin("DELETE", path, params={"category": "marketing", "country": "de"})
    assert one.json() == {"account_id": shop.account_id, "removed": 1}
    mine = (await b.http.get("/v1/business/rate-card", headers=shop.auth)).json()["rates"]
    assert price(mine, "marketing", "DE") == (131_000, "EUR")
    assert price(mine, "utility", "DE") == (2, "EUR")

    rest = await b.admin("DELETE", path)
    assert rest.json() == {"account_id": shop.account_id, "removed": 2}
    assert (await b.admin("GET", path)).json()["overrides"] == []
    actions = [e["action"] for e in await audit(b, account_id=shop.account_id)]
    assert actions == [
        "rate_card_override_removed",
        "rate_card_override_removed",
        "rate_card_override",
    ]

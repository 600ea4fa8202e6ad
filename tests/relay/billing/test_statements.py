"""Monthly statements: what a business was charged in a calendar month (UTC), as JSON and CSV,
from its own route and the operator's."""

from __future__ import annotations

import csv
import io
from typing import Any

from relay.billing.conftest import BillingFactory
from relay.billing.factories import FEB_2026, HOUR_MS, Billing
from support import Device

from tresen.core.errors import ErrorCode

HEADER = (
    "record,category,country,currency,count,amount_micros,amount,"
    "charged_at,message_id,recipient_account,template_id"
)


async def statement(b: Billing, business: Device, month: str, **params: Any) -> dict[str, Any]:
    r = await b.http.get(f"/v1/business/statements/{month}", params=params, headers=business.auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def a_month_of_sends(b: Billing) -> tuple[Device, dict[str, str], dict[str, Device]]:
    """A German shop's templates to customers in four countries on 31 January 2026, 22:00 UTC;
    delivered in January (DE, FR) and in February (BR, US). Message ids by name."""
    shop = await b.business("Bäckerei Müller", "DE")
    people = {c: await b.customer(c) for c in ("DE", "FR", "BR", "US")}
    ids = {c: await b.template(shop, c) for c in ("MARKETING", "UTILITY", "AUTHENTICATION")}
    for person in people.values():
        await b.consent(shop, person, "marketing")
        await b.consent(shop, person, "utility")
    r = await b.admin(
        "PUT",
        f"/v1/admin/businesses/{shop.account_id}/rate-card",
        json={
            "rates": [
                {
                    "category": "marketing",
                    "country": "US",
                    "price_micros": 20_000,
                    "currency": "USD",
                }
            ]
        },
    )
    assert r.status_code == 200, r.text
    sent = {}
    for name, (country, template) in {
        "marketing DE": ("DE", "MARKETING"),
        "marketing FR": ("FR", "MARKETING"),
        "authentication FR": ("FR", "AUTHENTICATION"),
        "utility BR": ("BR", "UTILITY"),
        "authentication DE": ("DE", "AUTHENTICATION"),
        "marketing US": ("US", "MARKETING"),
    }.items():
        answer = await b.send(shop, people[country], "template", ids[template])
        sent[name] = answer["message_id"]
    # Free: a reply and a utility template inside the window the customer opened.
    assert "message_id" in await b.send(people["DE"], shop)
    assert not (await b.send(shop, people["DE"]))["pricing"]["billable"]
    assert not (await b.send(shop, people["DE"], "template", ids["UTILITY"]))["pricing"]["billable"]

    await b.deliver(people["DE"])
    b.clock.set(FEB_2026 - 1)
    await b.deliver(people["FR"])
    b.clock.set(FEB_2026)
    await b.deliver(people["BR"])
    await b.deliver(people["US"])
    return shop, sent, people


async def test_a_statement_sums_what_was_delivered_in_its_month(
    make_billing: BillingFactory,
) -> None:
    async with make_billing(start_ms=FEB_2026 - 2 * HOUR_MS) as b:
        shop, sent, people = await a_month_of_sends(b)

        january = await statement(b, shop, "2026-01")
        assert (january["account_id"], january["month"], january["final"]) == (
            shop.account_id,
            "2026-01",
            True,
        )
        assert (january["period_start_ms"], january["period_end_ms"]) == (
            1_767_225_600_000,
            FEB_2026,
        )
        assert [
            (t["category"], t["country"], t["currency"], t["count"], t["amount_micros"])
            for t in january["totals"]
        ] == [
            ("marketing", "DE", "EUR", 1, 131_000),
            ("marketing", "FR", "EUR", 1, 143_000),
            ("authentication", "DE", "EUR", 1, 55_000),
            # The shop is German: an authentication template to France is international.
            ("authentication_international", "FR", "EUR", 1, 48_000),
        ]
        assert january["grand_totals"] == [
            {"currency": "EUR", "count": 4, "amount_micros": 377_000}
        ]
        items = january["items"]
        assert {i["message_id"] for i in items[:2]} == {
            sent["marketing DE"],
            sent["authentication DE"],
        }
        assert [i["message_id"] for i in items[2:]] in (
            [sent["marketing FR"], sent["authentication FR"]],
            [sent["authentication FR"], sent["marketing FR"]],
        )
        assert {i["charged_ms"] for i in items[2:]} == {FEB_2026 - 1}
        assert items[0]["recipient_account"] == people["DE"].account_id
        assert (january["items_total"], january["truncated"], january["next_after"]) == (
            4,
            False,
            None,
        )

        february = await statement(b, shop, "2026-02")
        assert february["final"] is False  # the month is not over
        assert [(t["category"], t["country"], t["currency"]) for t in february["totals"]] == [
            ("marketing", "US", "USD"),
            ("utility", "BR", "EUR"),
        ]
        assert february["grand_totals"] == [
            {"currency": "EUR", "count": 1, "amount_micros": 10_000},
            {"currency": "USD", "count": 1, "amount_micros": 20_000},
        ]
        assert (await statement(b, shop, "2025-12"))["items"] == []

        # The operator reads the same statement.
        r = await b.admin("GET", f"/v1/admin/businesses/{shop.account_id}/statements/2026-01")
        assert r.json() == january


async def test_a_statement_as_csv(make_billing: BillingFactory) -> None:
    async with make_billing(start_ms=FEB_2026 - 2 * HOUR_MS) as b:
        shop, sent, people = await a_month_of_sends(b)
        path = "/v1/business/statements/2026-01"

        by_param = await b.http.get(path, params={"format": "csv"}, headers=shop.auth)
        by_accept = await b.http.get(path, headers={**shop.auth, "Accept": "text/csv"})
        admin = await b.admin(
            "GET", f"/v1/admin/businesses/{shop.account_id}/statements/2026-01?format=csv"
        )
        assert by_param.status_code == 200, by_param.text
        assert by_param.headers["content-type"] == "text/csv; charset=utf-8"
        assert f"statement-{shop.account_id}-2026-01.csv" in by_param.headers["content-disposition"]
        assert by_param.text == by_accept.text == admin.text
        assert by_param.text.split("\r\n")[0] == HEADER

        table = rows(by_param.text)
        assert [r["record"] for r in table] == ["total"] * 4 + ["grand_total"] + ["item"] * 4
        assert table[0] == {
            "record": "total",
            "category": "marketing",
            "country": "DE",
            "currency": "EUR",
            "count": "1",
            "amount_micros": "131000",
            "amount": "0.131000",
            "charged_at": "",
            "message_id": "",
            "recipient_account": "",
            "template_id": "",
        }
        assert table[4]["amount"] == "0.377000"
        [late] = [r for r in table if r["message_id"] == sent["marketing FR"]]
        assert late["charged_at"] == "2026-01-31T23:59:59.999Z"
        assert late["recipient_account"] == people["FR"].account_id
        assert late["template_id"].isdigit()

        json_first = await b.http.get(path, headers={**shop.auth, "Accept": "application/json"})
        assert json_first.headers["content-type"] == "application/json"


async def test_line_items_are_paged_and_a_truncated_page_says_so(billing: Billing) -> None:
    b = billing
    shop, ana = await b.business(), await b.customer("FR")
    marketing = await b.template(shop, "MARKETING")
    await b.consent(shop, ana, "marketing")
    sent = []
    for _ in range(5):
        sent.append((await b.send(shop, ana, "template", marketing))["message_id"])
    for envelope in await b.pending(ana):
        b.clock.advance(minutes=1)
        await b.ack(ana, [envelope["id"]])

    seen: list[str] = []
    page = await statement(b, shop, "2026-01", limit=2)
    while True:
        assert page["items_total"] == 5
        assert page["grand_totals"][0]["count"] == 5  # every page has the totals
        seen += [i["message_id"] for i in page["items"]]
        assert page["items_left"] == 5 - len(seen)
        if not page["truncated"]:
            break
        assert len(page["items"]) == 2
        page = await statement(b, shop, "2026-01", limit=2, after=page["next_after"])
    assert seen == sent

    first = await b.http.get(
        "/v1/business/statements/2026-01",
        params={"format": "csv", "limit": 2},
        headers=shop.auth,
    )
    table = rows(first.text)
    assert [r["record"] for r in table] == ["total", "grand_total", "item", "item", "truncated"]
    assert table[-1]["count"] == "3"
    assert first.headers["x-tresen-items-left"] == "3"
    second = await b.http.get(
        "/v1/business/statements/2026-01",
        params={"format": "csv", "limit": 2, "after": first.headers["x-tresen-next-after"]},
        headers=shop.auth,
    )
    # Later pages carry line items only.
    assert [r["record"] for r in rows(second.text)] == ["item", "item", "truncated"]
    assert [r["message_id"] for r in rows(second.text)][:2] == sent[2:4]


async def test_bad_months_cursors_and_accounts_are_refused(billing: Billing) -> None:
    b = billing
    shop, ana = await b.business(), await b.customer()
    for month in ("2026-13", "2026-00", "26-01", "2026-1", "january", "1969-12"):
        r = await b.http.get(f"/v1/business/statements/{month}", headers=shop.auth)
        assert r.status_code == 400, (month, r.text)
        assert "YYYY-MM" in r.json()["error"]["message"]
    for params in ({"after": "x"}, {"limit": 0}, {"limit": 10_001}, {"format": "xml"}):
        r = await b.http.get("/v1/business/statements/2026-01", params=params, headers=shop.auth)
        assert r.json()["error"]["code"] == ErrorCode.INVALID_PARAMETER, (params, r.text)
    refused = await b.http.get("/v1/business/statements/2026-01", headers=ana.auth)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == ErrorCode.NOT_A_BUSINESS
    for account in (ana.account_id, "0" * 32):
        r = await b.admin("GET", f"/v1/admin/businesses/{account}/statements/2026-01")
        assert r.json()["error"]["code"] == ErrorCode.NOT_A_BUSINESS

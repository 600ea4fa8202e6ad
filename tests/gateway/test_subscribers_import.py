"""A CSV of existing subscribers: each row accepted or refused with the reason, utility
consent attested with the file's evidence, marketing left to the customers themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_support import RunningGateway, customer
from support import RunningRelay

from tresen.gateway.subscribers import ImportRefused, ListSpec, Purpose, State, Subscribers


def subscribers_of(gw: RunningGateway) -> Subscribers:
    found: Subscribers = gw.app.state.subscribers
    return found


async def test_an_import_reports_every_row_for_both_purposes(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    subs = subscribers_of(gw)
    business = gw.gateway.account_id
    anna = await customer(relay, tmp_path / "anna")
    bob = await customer(relay, tmp_path / "bob")
    carol = await customer(relay, tmp_path / "carol")
    try:
        await bob.revoke_all(business)
        await carol.opt_in(business, scopes=["marketing"])
        nobody = relay.next_phone()  # never registered
        flights = await subs.lists.create_list(
            ListSpec(name="Flight updates", keyword="FLIGHT", purpose=Purpose.UTILITY)
        )
        rows = [
            "phone,name,evidence,evidence_date,city",
            f"{anna.phone},Anna,Booking TA 123 with the updates box ticked,2025-11-03,Berlin",
            f"{bob.phone},Bob,Booking TA 124,2025-11-03,Hamburg",
            f"{carol.phone},Carol,,,Köln",
            "hello,Nobody,Booking,2025-11-03,",
            f"{nobody},Ghost,Booking TA 125,2025-11-03,",
            f"{anna.phone},Anna again,Booking TA 126,2025-11-04,",
        ]
        report = await subs.imports.import_csv(flights.id, "\n".join(rows).encode())

        outcome = [(r.row, r.accepted, r.state, r.reason) for r in report.rows]
        assert outcome == [
            (2, True, State.SUBSCRIBED, "subscribed: utility consent attested with the evidence"),
            (3, False, None, "the customer opted out (150062 customer_opted_out)"),
            (4, False, None, "no evidence of consent (a utility list needs it)"),
            (5, False, None, "not a phone number (write it like +4915112345678)"),
            (6, False, None, "not on the relay (no Tresen account has this number)"),
            (7, False, None, "duplicate row (the same number as row 2)"),
        ]
        assert report.counts() == {"pending": 0, "subscribed": 1, "unsubscribed": 0, "refused": 5}
        assert "customer_opted_out" in report.to_csv()
        utility = (await anna.consent_records(business)).consents["utility"]
        assert (utility.source, utility.evidence) == (
            "business",
            "Booking TA 123 with the updates box ticked",
        )
        [entry] = await subs.lists.subscribers(flights.id)
        assert entry.attributes == {"city": "Berlin", "name": "Anna"}

        news = await subs.lists.create_list(ListSpec(name="News", purpose=Purpose.MARKETING))
        rows = [
            "phone;name;city",
            f"{anna.phone};Anna;Berlin",
            f"{bob.phone};Bob;Hamburg",
            f"{carol.phone};Carol;Köln",
        ]
        report = await subs.imports.import_csv(news.id, "\n".join(rows).encode())

        assert [(r.accepted, r.state) for r in report.rows] == [
            (True, State.PENDING),
            (False, None),
            (True, State.SUBSCRIBED),
        ]
        assert report.rows[0].reason.startswith(
            "pending: marketing consent cannot be attested by the business"
        )
        assert report.rows[1].reason == "the customer opted out (150062 customer_opted_out)"
        assert report.rows[2].reason == (
            "subscribed: the customer's own signed opt-in is on record"
        )
        recipients = await subs.segments.recipients({"list": news.id})
        assert [r.phone for r in recipients] == [carol.phone]
    finally:
        for client in (anna, bob, carol):
            await client.close()


async def test_a_file_without_a_phone_column_is_refused_whole(gw: RunningGateway) -> None:
    subs = subscribers_of(gw)
    news = await subs.lists.create_list(ListSpec(name="News", purpose=Purpose.MARKETING))
    with pytest.raises(ImportRefused, match="phone"):
        await subs.imports.import_csv(news.id, b"number,name\n+4915112345678,Anna\n")
    with pytest.raises(ImportRefused, match="UTF-8"):
        await subs.imports.import_csv(news.id, "phone\n+4915112345678 Müller\n".encode("latin-1"))

"""Subscriber lists end to end: a customer's app writes ``START NEWS`` to a gateway, confirms
with ``START`` (their app signs the opt-in), leaves with ``STOP``; a withdrawal in the
customer's consent dashboard is found when the list is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway_support import RunningGateway, customer, next_of, subscribed_inbox
from support import RunningRelay

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.gateway.automation.config import AutomationSettings, GreetingSettings
from tresen.gateway.subscribers import ListSpec, Purpose, State, Subscribers
from tresen.wire.e2e import Interactive, Text


def subscribers_of(gw: RunningGateway) -> Subscribers:
    found: Subscribers = gw.app.state.subscribers
    return found


async def said(client: Client, business: str) -> str:
    """The body of the next message the business sends ``client``."""
    while True:
        event = await next_of(client, MessageEvent)
        if event.chat == business and not event.outgoing:
            payload = event.payload
            if isinstance(payload, Text):
                return payload.text
            if isinstance(payload, Interactive):
                return payload.body
            raise AssertionError(payload)


async def state_of(gw: RunningGateway, list_id: int, account: str) -> tuple[State, str | None]:
    entries = await subscribers_of(gw).lists.subscribers(list_id, reconcile=False)
    [entry] = [e for e in entries if e.account_id == account]
    return entry.state, entry.reason


async def handled(gw: RunningGateway, inbox: Any) -> None:
    """Wait until the customer's next message reached the gateway's webhooks and the
    automation (where the keywords are taken) is done with it."""
    await inbox.next_message("text")
    await gw.app.state.automation.idle()


async def test_keyword_double_opt_in_confirm_and_stop(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    subs = subscribers_of(gw)
    business = gw.gateway.account_id
    news = await subs.lists.create_list(
        ListSpec(
            name="News",
            keyword="news",
            purpose=Purpose.MARKETING,
            confirmation="Our news every Friday: offers and new arrivals.",
        )
    )
    flights = await subs.lists.create_list(
        ListSpec(name="Flight updates", keyword="FLIGHT", purpose=Purpose.UTILITY)
    )
    anna = await customer(relay, tmp_path / "anna")
    try:
        async with subscribed_inbox(gw) as inbox:
            await anna.send_text(business, "  Start News ")
            asked = await said(anna, business)
            assert asked.startswith("Our news every Friday: offers and new arrivals.")
            assert "Reply START to confirm" in asked
            state, reason = await state_of(gw, news.id, anna.account_id or "")
            assert state is State.PENDING
            assert reason is not None
            assert reason.startswith("asked with START NEWS on ")
            await inbox.next_message("text")  # the keyword still reaches the webhooks

            await anna.send_text(business, "START")
            assert await said(anna, business) == "You are subscribed to “News”."
            assert (await state_of(gw, news.id, anna.account_id or ""))[0] is State.SUBSCRIBED
            records = await gw.gateway.client.consent_records(business, anna.account_id)
            marketing = records.consents["marketing"]
            assert (marketing.state, marketing.source) == ("opted_in", "customer")
            marketing.verify()  # the customer's own signature
            assert await subs.lists.still_subscribed(news.id, anna.account_id or "")
            await inbox.next_message("text")

            # A utility list: the business attests the customer's confirmation.
            await anna.send_text(business, "start flight")
            asked = await said(anna, business)
            assert "Reply START to confirm" in asked
            await inbox.next_message("text")
            await anna.send_text(business, "START")
            assert await said(anna, business) == "You are subscribed to “Flight updates”."
            utility = (await gw.gateway.client.consent_records(business, anna.account_id)).consents[
                "utility"
            ]
            assert (utility.state, utility.source) == ("opted_in", "business")
            assert utility.evidence is not None
            assert utility.evidence.startswith("confirmed by keyword START FLIGHT on 20")
            await inbox.next_message("text")

            # STOP: off every marketing list at once; the flight updates stay.
            await anna.send_text(business, "stopp")
            await handled(gw, inbox)
            state, reason = await state_of(gw, news.id, anna.account_id or "")
            assert state is State.UNSUBSCRIBED
            assert reason is not None
            assert reason.startswith("sent STOPP on ")
            assert (await state_of(gw, flights.id, anna.account_id or ""))[0] is State.SUBSCRIBED
            assert not await subs.lists.still_subscribed(news.id, anna.account_id or "")
            counts = (await subs.lists.get_list(news.id)).counts
            assert counts[State.UNSUBSCRIBED] == 1
            assert counts[State.SUBSCRIBED] == 0
    finally:
        await anna.close()


async def test_a_withdrawal_in_the_dashboard_unsubscribes(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    subs = subscribers_of(gw)
    business = gw.gateway.account_id
    news = await subs.lists.create_list(
        ListSpec(name="News", keyword="NEWS", purpose=Purpose.MARKETING)
    )
    # The greeting is on, yet the keywords get only the list's answers (a greeting between
    # them would be the next message the customer reads).
    await gw.app.state.automation_store.save_settings(
        AutomationSettings(greeting=GreetingSettings(enabled=True, text={"en": "Hello!"}))
    )
    ben = await customer(relay, tmp_path / "ben")
    try:
        await ben.send_text(business, "START NEWS")
        assert "Reply START to confirm" in await said(ben, business)
        await ben.send_text(business, "START")
        assert await said(ben, business) == "You are subscribed to “News”."

        await ben.revoke_all(business)  # in the app's consent dashboard, not in the chat

        [entry] = await subs.lists.subscribers(news.id)
        assert entry.state is State.UNSUBSCRIBED
        assert entry.reason is not None
        assert entry.reason.startswith("marketing consent withdrawn by the customer on ")
        assert not await subs.lists.still_subscribed(news.id, entry.account_id)
        assert await subs.segments.recipients({"list": news.id}) == []
        dora = await customer(relay, tmp_path / "dora")
        try:
            await dora.send_text(business, "Hi")  # the same first message without a keyword
            assert await said(dora, business) == "Hello!"
        finally:
            await dora.close()
    finally:
        await ben.close()

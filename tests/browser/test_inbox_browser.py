"""The team inbox in Chromium, as its people use it: two agents in two browsers, a customer
writing from the end-to-end encrypted client, answers, notes, roles, CSRF, German and phone
width."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from browser_support import (
    PHONE,
    Team,
    TwoAgents,
    horizontal_overflow,
    live,
    notice,
    shoot,
    signed_in_page,
)
from gateway_support import RunningGateway, customer, next_of
from playwright.async_api import Browser, Page, expect
from support import Backend, RunningRelay, relay_database_bytes

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.wire.e2e import Text

QUESTION = "Haben Sie morgen Dinkelbrötchen?"


@pytest.fixture
async def alice(relay: RunningRelay, gw: RunningGateway, tmp_path: Path) -> AsyncIterator[Client]:
    """A customer who has just asked the business ``QUESTION``."""
    client = await customer(relay, tmp_path / "alice")
    try:
        await client.send_text(gw.gateway.phone, QUESTION)
        yield client
    finally:
        await client.close()


async def open_thread(page: Page, text: str) -> None:
    """Open the conversation whose preview shows ``text`` from the list."""
    await page.goto("/inbox")
    item = page.get_by_role("link").filter(has_text=text)
    await item.click()
    await expect(page.locator("ol.thread")).to_contain_text(text)


async def answer(page: Page, text: str, *, shown: str | None = None) -> None:
    """Send ``text`` from the reply box; the thread then shows ``shown`` (``text`` itself
    unless it is a quick reply's shortcut) as the latest answer."""
    await page.get_by_label(re.compile(r"^Answer ")).fill(text)
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(page.locator("ol.thread li.out").last).to_contain_text(shown or text)


async def test_a_customers_message_reaches_both_agents_live_and_one_takes_it(
    relay: RunningRelay, gw: RunningGateway, signed_in: TwoAgents, tmp_path: Path
) -> None:
    anna, ben = signed_in.anna, signed_in.ben
    bert = await customer(relay, tmp_path / "bert")
    try:
        # Both agents look at their lists, whose streams are open; nobody reloads.
        await bert.send_text(gw.gateway.phone, QUESTION)
        for page in (anna, ben):
            item = page.get_by_role("link").filter(has_text=QUESTION)
            await expect(item).to_be_visible(timeout=1_000)
            await expect(item).to_contain_text("unassigned")
            await expect(item.get_by_label("1 unread")).to_be_visible()
        # The tab's title counts it too (fetched apart from the rows, so waited for).
        await expect(anna).to_have_title("(1) Conversations · Bäckerei Sonne", timeout=1_000)

        # Ben opens the thread; Anna takes the conversation from the list's thread.
        await ben.get_by_role("link").filter(has_text=QUESTION).click()
        await expect(ben.locator("ol.thread")).to_contain_text(QUESTION)
        await live(ben)  # the thread's stream, not the list's
        await anna.get_by_role("link").filter(has_text=QUESTION).click()
        await anna.get_by_role("button", name="Assign to me").click()
        await expect(notice(anna)).to_have_text("Assigned to you.")
        await expect(anna.get_by_text("assigned to Anna Schmidt")).to_be_visible()
        await expect(anna.get_by_role("button", name="Unassign me")).to_be_visible()
        await expect(anna.locator("ol.thread")).to_contain_text(
            "Anna Schmidt assigned it to Anna Schmidt"
        )

        # Ben sees who has it in the thread he has open, without reloading.
        await expect(ben.get_by_text("assigned to Anna Schmidt")).to_be_visible(timeout=1_000)
        await expect(ben.locator("ol.thread")).to_contain_text(
            "Anna Schmidt assigned it to Anna Schmidt"
        )
        await ben.goto("/inbox?mine=unassigned")
        await expect(ben.get_by_text("No conversations here.")).to_be_visible()
    finally:
        await bert.close()


async def test_an_answer_with_a_quick_reply_reaches_the_customer_as_its_text(
    alice: Client, signed_in: TwoAgents
) -> None:
    anna = signed_in.anna
    hours = "Wir backen täglich ab 6 Uhr, sonntags bis 11 Uhr."

    # The admin keeps a quick reply on the Quick replies page.
    await anna.get_by_role("link", name="Quick replies").click()
    await anna.get_by_label("Shortcut (without the /)").fill("hours")
    await anna.get_by_label("Text").fill(hours)
    await anna.get_by_role("button", name="Add").click()
    await expect(anna.get_by_role("cell", name="/hours")).to_be_visible()
    await expect(anna.get_by_role("cell", name=hours)).to_be_visible()

    await open_thread(anna, QUESTION)
    await expect(anna.get_by_text("or a quick reply: /hours")).to_be_visible()
    await answer(anna, "/hours", shown=hours)
    received = await next_of(alice, MessageEvent, 30)
    assert isinstance(received.payload, Text)
    assert received.payload.text == hours  # expanded, exactly; never "/hours"
    await expect(anna.locator("ol.thread li.out", has_text="/hours")).to_have_count(0)


async def test_a_private_note_never_reaches_the_customer_nor_the_relay(
    alice: Client, backend: Backend, gw: RunningGateway, signed_in: TwoAgents
) -> None:
    anna, ben = signed_in.anna, signed_in.ben
    secret = "Stammkundin, zahlt immer bar, Notiz 5521"

    await open_thread(anna, QUESTION)
    await anna.get_by_label("Private note for the team (never sent)").fill(secret)
    await anna.get_by_role("button", name="Keep note").click()
    await expect(anna.locator("ol.thread li.note")).to_contain_text(secret)
    await open_thread(ben, QUESTION)  # the team sees it
    await expect(ben.locator("ol.thread li.note")).to_contain_text("Private note by Anna Schmidt")

    # An answer after the note: the next thing Alice gets is the answer, not the note.
    await answer(anna, "Ja, ab 7 Uhr.")
    received = await next_of(alice, MessageEvent, 30)
    assert isinstance(received.payload, Text)
    assert received.payload.text == "Ja, ab 7 Uhr."
    got = alice.store.messages(gw.gateway.account_id)
    assert any(m.payload and b"Ja, ab 7 Uhr." in m.payload for m in got)  # the search works
    for message in got:
        assert message.payload is None or secret.encode() not in message.payload
    held = await relay_database_bytes(backend)
    assert QUESTION.encode() not in held  # ciphertext only, so the note's absence means something
    assert secret.encode() not in held
    assert secret.encode("utf-16-le") not in held


async def test_an_agent_cannot_open_the_admin_pages(signed_in: TwoAgents) -> None:
    ben = signed_in.ben
    nav = ben.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Inbox")).to_be_visible()
    await expect(nav.get_by_role("link", name="Agents")).to_have_count(0)
    await expect(nav.get_by_role("link", name="Quick replies")).to_have_count(0)
    for path in ("/inbox/agents", "/inbox/quick-replies"):
        response = await ben.goto(path)
        assert response is not None
        assert response.status == 403
        await expect(ben.get_by_role("alert")).to_have_text(
            "Only owners and admins manage the team and the business's settings."
        )
        await expect(ben.get_by_role("textbox")).to_have_count(0)  # no form to fill in

    anna = signed_in.anna  # an admin opens both
    for path, heading in (("/inbox/agents", "Agents"), ("/inbox/quick-replies", "Quick replies")):
        await anna.goto(path)
        await expect(anna.get_by_role("heading", name=heading, exact=True)).to_be_visible()


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    alice: Client, signed_in: TwoAgents
) -> None:
    anna = signed_in.anna
    await open_thread(anna, QUESTION)

    # The page's own form, its hidden token removed before it is sent; in one step, because
    # the live page may render the form again (with its token) at any moment.
    assign = anna.locator("form[action$='/assign']")
    await expect(assign.get_by_role("button", name="Assign to me")).to_be_visible()
    await assign.evaluate(
        "form => { form.querySelector('input[name=csrf]').remove();"
        " form.querySelector('button').click(); }"
    )
    await expect(anna.get_by_role("alert")).to_contain_text(
        "This form has expired or did not come from the inbox; nothing was changed."
    )
    await open_thread(anna, QUESTION)
    await expect(anna.get_by_text("unassigned")).to_be_visible()
    await expect(anna.locator("ol.thread li.activity")).to_have_count(0)

    # A POST from elsewhere with the session's cookie but no token.
    forged = await anna.request.post(
        "/inbox/quick-replies",
        form={"shortcut": "forged", "text": "Nicht von uns"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert "nothing was changed" in await forged.text()
    await anna.goto("/inbox/quick-replies")
    await expect(anna.get_by_role("heading", name="Quick replies", exact=True)).to_be_visible()
    await expect(anna.get_by_text("/forged")).to_have_count(0)


async def test_an_agent_who_chooses_deutsch_reads_the_inbox_in_german(
    signed_in: TwoAgents,
) -> None:
    ben = signed_in.ben
    await ben.get_by_role("link", name="Me", exact=True).click()
    await ben.get_by_label("The inbox's language for you, in every browser").select_option(
        label="Deutsch"
    )
    await ben.get_by_role("button", name="Change").click()
    await expect(notice(ben)).to_have_text("Sprache geändert.")
    await ben.get_by_role("link", name="Posteingang").click()
    await expect(ben.get_by_role("heading", name="Unterhaltungen")).to_be_visible()
    await expect(ben.get_by_role("button", name="Abmelden", exact=True)).to_be_visible()
    await expect(ben.locator("html")).to_have_attribute("lang", "de")
    await ben.reload()  # kept with the agent, not just for this page
    await expect(ben.get_by_role("heading", name="Unterhaltungen")).to_be_visible()
    # Anna, who chose nothing, still reads English.
    await signed_in.anna.reload()
    await expect(signed_in.anna.get_by_role("heading", name="Conversations")).to_be_visible()


async def test_at_phone_width_the_list_and_the_thread_fit_the_screen(
    alice: Client, gw: RunningGateway, team: Team, browser: Browser
) -> None:
    phone = await signed_in_page(browser, gw.url, team.agent, viewport=PHONE)
    skip = phone.get_by_role("link", name="Skip to the content")
    await expect(skip).not_to_be_in_viewport()  # out of the way until the keyboard reaches it
    await phone.keyboard.press("Tab")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()
    item = phone.get_by_role("link").filter(has_text=QUESTION)
    await expect(item).to_be_visible()
    assert await horizontal_overflow(phone) <= 0
    await shoot(phone, "inbox-phone")

    await item.click()
    await phone.get_by_role("button", name="Assign to me").click()
    await expect(phone.get_by_text("assigned to Ben Meyer")).to_be_visible()
    assert await horizontal_overflow(phone) <= 0
    box = phone.get_by_label(re.compile(r"^Answer "))
    await box.scroll_into_view_if_needed()
    await expect(box).to_be_in_viewport()
    await answer(phone, "Ja, ab 7 Uhr.")
    assert await horizontal_overflow(phone) <= 0
    received = await next_of(alice, MessageEvent, 30)
    assert received.payload == Text("Ja, ab 7 Uhr.")

"""What the inbox's script adds, in Chromium: who is replying, Enter to send, the keyboard
shortcuts and the unread count in the tab's title; and the composer's quoted reply, reaction
and reply buttons reaching the customer's app."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from browser_support import TwoAgents, live, notice, shoot
from gateway_support import RunningGateway, customer, next_of
from playwright.async_api import Page, expect
from support import RunningRelay

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.wire.e2e import Interactive, Reaction, Text

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
    """Open the conversation whose preview shows ``text`` from the list; its stream is open."""
    await page.goto("/inbox")
    await page.get_by_role("link").filter(has_text=text).click()
    await expect(page.locator("ol.thread")).to_contain_text(text)
    await live(page)


async def test_an_agent_sees_who_else_is_replying_until_they_stop(
    alice: Client, signed_in: TwoAgents
) -> None:
    anna, ben = signed_in.anna, signed_in.ben
    await anna.clock.install()
    await open_thread(anna, QUESTION)
    # Anna's page's time stands still from now on, and moves only as the test says.
    now_ms: int = await anna.evaluate("Date.now()")
    await anna.clock.pause_at((now_ms + 100) / 1000)  # seconds, in Python
    await open_thread(ben, QUESTION)
    presence = anna.locator("#presence")
    await expect(presence).to_have_text("")

    await ben.get_by_label(re.compile(r"^Answer ")).press_sequentially("Ja, ab 7")
    await expect(presence).to_have_text("Ben Meyer is replying…")
    await expect(ben.locator("#presence")).to_have_text("")  # never about oneself

    # Ben stops typing: a few seconds later the line goes.
    await anna.clock.run_for(4_000)
    await expect(presence).to_have_text("Ben Meyer is replying…")
    await anna.clock.run_for(2_500)
    await expect(presence).to_have_text("")


async def test_the_composer_quotes_reacts_offers_buttons_and_enter_sends(
    alice: Client, gw: RunningGateway, signed_in: TwoAgents
) -> None:
    anna = signed_in.anna
    await open_thread(anna, QUESTION)
    asked = anna.locator("ol.thread li.in").filter(has_text=QUESTION)

    # A message that comes in while the thread is open has the same controls as the others.
    await alice.send_text(gw.gateway.phone, "Und haben Sie auch Roggenbrot?")
    later = anna.locator("ol.thread li.in").filter(has_text="Roggenbrot")
    await expect(later.get_by_role("link", name="Reply")).to_be_visible()
    await expect(later.get_by_role("button", name="React 👍")).to_be_visible()

    # Reply quoting Alice's question; Shift+Enter makes a new line, Enter sends.
    await asked.get_by_role("link", name="Reply").click()
    await expect(anna.locator("blockquote.replying")).to_contain_text(QUESTION)
    box = anna.get_by_label(re.compile(r"^Answer "))
    await box.click()
    await box.press_sequentially("Ja, morgen ab 7 Uhr.")
    await box.press("Shift+Enter")
    await box.press_sequentially("Wie viele dürfen wir zurücklegen?")
    await expect(box).to_have_value("Ja, morgen ab 7 Uhr.\nWie viele dürfen wir zurücklegen?")
    await box.press("Enter")
    answered = await next_of(alice, MessageEvent, 30)
    assert isinstance(answered.payload, Text)
    assert answered.payload.text == "Ja, morgen ab 7 Uhr.\nWie viele dürfen wir zurücklegen?"
    assert answered.payload.context is not None  # a reply to the question
    sent = anna.locator("ol.thread li.out").filter(has_text="Wie viele dürfen wir")
    await expect(sent).to_contain_text("In reply to the customer")
    await expect(sent).to_contain_text(QUESTION)

    # A reaction on the question.
    await asked.get_by_role("button", name="React 👍").click()
    await expect(notice(anna)).to_have_text("Reacted 👍.")
    reaction = await next_of(alice, MessageEvent, 30)
    assert isinstance(reaction.payload, Reaction)
    assert reaction.payload.emoji == "👍"
    await expect(asked.get_by_label("👍 from you")).to_be_visible()

    # Reply buttons; Alice's choice shows on the message, live.
    await anna.get_by_text("Send with reply buttons").click()
    await anna.get_by_label("Message", exact=True).fill("Wann möchten Sie abholen?")
    await anna.get_by_label("Button 1", exact=True).fill("Vormittags")
    await anna.get_by_label("Button 2 (optional)").fill("Nachmittags")
    await anna.get_by_role("button", name="Send with buttons").click()
    await expect(notice(anna)).to_have_text("Sent with buttons.")
    offered = await next_of(alice, MessageEvent, 30)
    assert isinstance(offered.payload, Interactive)
    assert [b.title for b in offered.payload.buttons] == ["Vormittags", "Nachmittags"]
    await live(anna)
    await alice.answer(gw.gateway.phone, offered.message_id, offered.payload.buttons[0].id)
    await expect(anna.locator("ol.thread")).to_contain_text("Chose “Vormittags”")
    await expect(anna.locator("li.chosen")).to_contain_text("Vormittags")  # on the question
    # Alice's reaction to the answer shows on it, live too.
    await alice.react(gw.gateway.phone, answered.message_id, "❤️")
    await expect(sent.get_by_label("❤️ from the customer")).to_be_visible()

    await anna.get_by_label("Private note for the team (never sent)").fill(
        "Stammkundin: 6 Dinkelbrötchen für morgen früh zurückgelegt."
    )
    await anna.get_by_role("button", name="Keep note").click()
    await expect(anna.locator("ol.thread li.note")).to_contain_text("6 Dinkelbrötchen")
    await shoot(anna, "inbox-thread")

    # Search finds the conversation by a word of the customer's message, marked.
    await anna.keyboard.press("Escape")
    await anna.goto("/inbox")
    await anna.keyboard.press("/")
    await expect(anna.get_by_role("searchbox")).to_be_focused()
    await anna.keyboard.type("dinkel")
    await anna.keyboard.press("Enter")
    found = anna.get_by_role("list", name="Conversations found")
    await expect(found.locator("mark").first).to_have_text("Dinkelbrötchen")
    await shoot(anna, "inbox-search")


async def test_keyboard_shortcuts_assign_and_show_their_help(
    alice: Client, signed_in: TwoAgents
) -> None:
    ben = signed_in.ben
    await open_thread(ben, QUESTION)
    await expect(ben.get_by_text("unassigned")).to_be_visible()

    await ben.keyboard.press("?")
    help_ = ben.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(help_).to_be_visible()
    await expect(help_).to_contain_text("Assign the conversation to me")
    await expect(help_).to_contain_text("In the answer: send / new line")
    await ben.keyboard.press("Escape")
    await expect(help_).to_be_hidden()

    # In a field a letter is just a letter; Esc leaves the field, and then "a" assigns.
    note = ben.get_by_label("Private note for the team (never sent)")
    await note.press_sequentially("a")
    await expect(note).to_have_value("a")
    await ben.keyboard.press("Escape")
    await expect(note).not_to_be_focused()
    await ben.keyboard.press("a")
    await expect(notice(ben)).to_have_text("Assigned to you.")
    await expect(ben.get_by_text("assigned to Ben Meyer")).to_be_visible()
    await expect(ben.locator("ol.thread li.activity")).to_have_count(1)


async def test_the_tab_title_counts_the_conversations_with_unread_messages(
    alice: Client, relay: RunningRelay, gw: RunningGateway, signed_in: TwoAgents, tmp_path: Path
) -> None:
    anna, ben = signed_in.anna, signed_in.ben
    await expect(anna).to_have_title("(1) Conversations · Bäckerei Sonne")
    bert = await customer(relay, tmp_path / "bert")
    try:
        await bert.send_text(gw.gateway.phone, "Ist die Torte für Samstag fertig?")
        await expect(anna).to_have_title("(2) Conversations · Bäckerei Sonne")  # live
        await expect(anna.get_by_role("link").filter(has_text="Torte")).to_be_visible()
        await shoot(anna, "inbox-list")
        await open_thread(ben, QUESTION)  # read by Ben
        await expect(ben).to_have_title(re.compile(r"^\(1\) \+\d+ · Bäckerei Sonne$"))
        await bert.send_text(gw.gateway.phone, "Und eine Kerze dazu, bitte.")
        await expect(anna.get_by_role("link").filter(has_text="Kerze")).to_be_visible()
        await expect(anna).to_have_title("(1) Conversations · Bäckerei Sonne")
    finally:
        await bert.close()

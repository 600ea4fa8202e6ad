"""Automation in Chromium: an admin edits an intent and tries it; and a customer whom the FAQ
bot answers asks for a person, the conversation reaches the team with the bot's transcript,
the bot stays silent while people answer, and answers again once the conversation is
resolved."""

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
    notice,
    shoot,
    signed_in_page,
)
from gateway_support import RunningGateway, customer, next_of
from playwright.async_api import Browser as Chromium
from playwright.async_api import Page, expect
from support import RunningRelay

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.core.clock import SystemClock
from tresen.gateway.automation.config import AutomationSettings, BotMode, parse_bot_file
from tresen.gateway.automation.store import AutomationStore
from tresen.gateway.database import gateway_key, open_database

BOT_FILE = """
intents:
  - name: baggage
    title: {en: Baggage, de: Gepäck}
    examples:
      - How much luggage can I take with me?
      - Wie viel Gepäck darf ich mitnehmen?
      - baggage allowance hand luggage weight
    answer:
      text:
        en: "Economy: one checked bag of 23 kg."
        de: "Economy: ein aufgegebenes Gepäckstück mit 23 kg."
  - name: opening
    title: {en: Opening hours, de: Öffnungszeiten}
    examples:
      - When are you open?
      - Wann haben Sie geöffnet?
      - opening hours today
    answer: {text: {en: "Every day from 7 to 18.", de: "Täglich von 7 bis 18 Uhr."}}
"""
BAGGAGE_DE = "Economy: ein aufgegebenes Gepäckstück mit 23 kg."
QUESTION = "Wie viel Gepäck darf ich mitnehmen?"
PERSON = "Ich möchte mit einem Mitarbeiter sprechen"


@pytest.fixture
async def faq_bot(gw: RunningGateway) -> AsyncIterator[AutomationStore]:
    """The FAQ bot on, with two intents, as ``tresen gateway bot import`` writes them."""
    db = await open_database(gw.settings)
    store = AutomationStore(db, SystemClock(), gateway_key(gw.settings))
    bot = parse_bot_file(BOT_FILE)
    settings = AutomationSettings.from_json({"bot": {"mode": str(BotMode.FAQ)}})
    await store.import_config(bot.__class__(settings, bot.intents, bot.actions))
    yield store
    await db.dispose()


async def said_to(client: Client) -> str:
    """The text of the next message the customer receives from the business."""
    while True:
        event: MessageEvent = await next_of(client, MessageEvent, 30)
        if not event.outgoing:
            return str(getattr(event.payload, "text", ""))


async def open_thread(page: Page, text: str, query: str = "") -> None:
    await page.goto(f"/inbox{query}")
    await page.get_by_role("link").filter(has_text=text).first.click()
    await expect(page.locator("ol.thread")).to_contain_text(text)


async def test_an_admin_edits_an_intent_and_tries_it(
    browser: Chromium, gw: RunningGateway, team: Team, faq_bot: AutomationStore
) -> None:
    anna = await signed_in_page(browser, gw.url, team.admin)
    await anna.goto("/inbox/settings")
    await anna.get_by_role("link", name="Automation").click()
    await expect(anna.get_by_role("heading", name="Greeting and away message")).to_be_visible()
    await expect(anna.get_by_label("The FAQ bot")).to_be_checked()
    await shoot(anna, "inbox-automation-settings")

    await anna.get_by_role("link", name="Intents and try it").click()
    await anna.get_by_role("link", name="baggage").click()
    examples = anna.get_by_label(re.compile("^Example phrasings"))
    await examples.fill(
        "How much luggage can I take with me?\nWie viel Gepäck darf ich mitnehmen?\n"
        "baggage allowance hand luggage weight\nWie schwer darf mein Koffer sein?"
    )
    titles = anna.get_by_role("group", name="Title shown on buttons (at most 20 characters)")
    await titles.get_by_label("German").fill("Freigepäck")
    await anna.get_by_role("button", name="Save the intent").click()
    await expect(notice(anna)).to_have_text("The intent Baggage is saved.")
    intent = await faq_bot.intent("baggage")
    assert intent is not None
    assert intent.title["de"] == "Freigepäck"
    assert intent.examples[-1] == "Wie schwer darf mein Koffer sein?"

    await anna.get_by_label("Try it: a message as a customer would write it").fill(
        "Can I bring a second suitcase?"
    )
    await anna.get_by_role("button", name="Try it", exact=True).click()
    verdict = anna.locator(".tried .verdict")
    await expect(verdict).to_have_text(re.compile(r"^Would answer: Baggage \(\d+ %\)$"))
    await expect(anna.locator(".tried")).to_contain_text("Language guessed: English")
    await shoot(anna, "inbox-automation-intent")

    # At phone width the intent's form and the answer fit the screen.
    # At phone width the bot's section fits the screen (the tables above it scroll).
    await anna.set_viewport_size(PHONE)
    widest = await anna.evaluate(
        "Math.max(...[...document.querySelectorAll('#bot ~ *, #bot ~ * *')]"
        ".map(e => e.getBoundingClientRect().right))"
    )
    assert widest <= PHONE["width"]
    await anna.goto("/inbox/settings/automation")
    assert await horizontal_overflow(anna) == 0


async def test_a_customer_who_asks_for_a_person_is_handed_over_and_the_bot_stays_silent(
    browser: Chromium,
    relay: RunningRelay,
    gw: RunningGateway,
    team: Team,
    signed_in: TwoAgents,
    faq_bot: AutomationStore,
    tmp_path: Path,
) -> None:
    ben = signed_in.ben
    alice = await customer(relay, tmp_path / "alice")
    try:
        # The bot answers a question by itself; the list marks the conversation as the bot's.
        await alice.send_text(gw.gateway.phone, QUESTION)
        assert await said_to(alice) == BAGGAGE_DE
        await ben.goto("/inbox?status=bot")
        item = ben.locator("ul.conversations li").filter(has_text=BAGGAGE_DE[:20])
        await expect(item.locator(".badge.bot")).to_have_text("Bot")

        # Asking for a person hands the conversation to the team: open and unassigned.
        await alice.send_text(gw.gateway.phone, PERSON)
        told = await said_to(alice)
        assert told.startswith("Ich gebe Sie an")
        await ben.goto("/inbox?status=open&mine=unassigned")
        item = ben.locator("ul.conversations li").first
        await expect(item).to_contain_text("unassigned")
        await expect(item.locator(".badge.bot")).to_have_count(0)
        await item.get_by_role("link").click()
        handoff = ben.locator("ol.thread li.handoff")
        await expect(handoff).to_contain_text(
            "Handed over by the bot: the customer asked for a person"
        )
        await handoff.get_by_text(re.compile("The bot's conversation")).click()
        transcript = handoff.locator("details.transcript")
        await expect(transcript).to_contain_text(QUESTION)
        await expect(transcript).to_contain_text(BAGGAGE_DE)
        await expect(transcript).to_contain_text(PERSON)
        await shoot(ben, "inbox-automation-handoff")

        # The agent answers; the customer receives it.
        await ben.get_by_label(re.compile(r"^Answer ")).fill("Hallo, hier ist Ben. Worum geht es?")
        await ben.get_by_role("button", name="Send", exact=True).click()
        assert await said_to(alice) == "Hallo, hier ist Ben. Worum geht es?"

        # The customer asks the bot's question again: people answer now, the bot is silent.
        await alice.send_text(gw.gateway.phone, "Und wie viel Handgepäck darf ich mitnehmen?")
        await expect(ben.locator("ol.thread li.in").last).to_contain_text("Und wie viel Handgepäck")
        await ben.reload()
        await expect(ben.locator("ol.thread > li").last).to_contain_text("Und wie viel Handgepäck")
        await expect(ben.locator("main > p.meta")).to_contain_text("open")

        # Resolved, the next question is the bot's again; the first thing the customer
        # receives after the agent's answer is the bot's answer to it, so the bot said
        # nothing in between.
        await ben.get_by_label("Status", exact=True).select_option("resolved")
        await ben.get_by_role("button", name="Set", exact=True).click()
        await expect(ben.locator("main > p.meta")).to_contain_text("resolved")
        await alice.send_text(gw.gateway.phone, "Wann haben Sie geöffnet?")
        assert await said_to(alice) == "Täglich von 7 bis 18 Uhr."
        await ben.reload()
        await expect(ben.locator("ol.thread li.out").last).to_contain_text("Täglich von 7")
        outs = await ben.locator("ol.thread li.out").all_inner_texts()
        assert not any("Handgepäck" in text or "23 kg" in text for text in outs[2:])
    finally:
        await alice.close()


async def test_the_reports_show_what_the_bot_did(
    browser: Chromium,
    relay: RunningRelay,
    gw: RunningGateway,
    team: Team,
    faq_bot: AutomationStore,
    tmp_path: Path,
) -> None:
    bert = await customer(relay, tmp_path / "bert")
    try:
        await bert.send_text(gw.gateway.phone, QUESTION)
        assert await said_to(bert) == BAGGAGE_DE
        await bert.send_text(gw.gateway.phone, "Wie spät ist es auf dem Mond?")
        assert (await said_to(bert)).startswith("Entschuldigung")
        await bert.send_text(gw.gateway.phone, "Mensch bitte")
        assert (await said_to(bert)).startswith("Ich gebe Sie an")
    finally:
        await bert.close()
    anna = await signed_in_page(browser, gw.url, team.admin)
    await anna.goto("/inbox/reports")
    section = anna.locator("#bot ~ dl.totals").first
    await expect(section).to_contain_text("Handed over")
    await expect(anna.locator("table.bot-reasons")).to_contain_text(
        "the customer asked for a person"
    )
    await expect(anna.locator("table.bot-intents")).to_contain_text("Baggage")
    question = anna.locator("ul.unanswered li").filter(has_text="Wie spät ist es auf dem Mond?")
    await expect(question).to_be_visible()
    await shoot(anna, "inbox-automation-reports")
    await question.get_by_role("button", name="Dismiss").click()
    await expect(notice(anna)).to_have_text(
        "The question is dismissed; the bot learns nothing from it."
    )
    await expect(anna.locator("ul.unanswered")).not_to_contain_text("auf dem Mond")
    # At phone width the bot's section fits the screen.
    await anna.set_viewport_size(PHONE)
    widest = await anna.evaluate(
        "Math.max(...[...document.querySelectorAll('#bot ~ *, #bot ~ * *')]"
        ".map(e => e.getBoundingClientRect().right))"
    )
    assert widest <= PHONE["width"]

"""Automation in the inbox over HTTP, as an owner uses it in a browser: greeting, away and bot
settings, intents with "try it", the bot file's import and export, actions, and the reports'
unanswered questions; agents see none of it."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from importlib import resources

import httpx
import pytest
from gateway_support import RunningGateway
from inbox_browser import FAST, PASSWORD, Browser

from tresen.core.clock import SystemClock
from tresen.gateway.automation.config import BotMode, parse_bot_file
from tresen.gateway.automation.store import AutomationStore
from tresen.gateway.database import gateway_key, open_database
from tresen.gateway.inbox.agents import Agents, Role

HOME = "/inbox/settings/automation"
INTENTS = "/inbox/settings/automation/intents"
SYSTEMS = "http://127.0.0.1:9"
PAGES = [
    HOME,
    INTENTS,
    "/inbox/settings/automation/new-intent",
    "/inbox/settings/automation/export",
]
POSTS = [
    "/inbox/settings/automation/greeting",
    "/inbox/settings/automation/bot",
    "/inbox/settings/automation/secret",
    "/inbox/settings/automation/intents",
    "/inbox/settings/automation/intents/baggage/delete",
    "/inbox/settings/automation/try",
    "/inbox/settings/automation/actions/flight_status/delete",
    "/inbox/reports/unanswered/1/adopt",
    "/inbox/reports/unanswered/1/dismiss",
]
SMALL_BOT = """
intents:
  - name: baggage
    title: {en: Baggage, de: Gepäck}
    examples:
      - How much luggage can I take with me?
      - Wie viel Gepäck darf ich mitnehmen?
      - baggage allowance hand luggage weight
    answer: {text: {en: "One bag of 23 kg.", de: "Ein Koffer mit 23 kg."}}
  - name: opening
    title: {en: Opening hours, de: Öffnungszeiten}
    examples:
      - When are you open?
      - Wann haben Sie geöffnet?
      - opening hours today
    answer: {text: "9 to 18"}
"""


def demo_bot_file() -> str:
    """The demo airline's bot file, its systems at an address of this machine."""
    text = resources.files("tresen").joinpath("demo_bot.yaml").read_text()
    return text.replace("http://airline-systems.invalid", SYSTEMS)


def field_value(page: str, name: str) -> str:
    found = re.search(rf'<input[^>]* name="{name}"[^>]* value="([^"]*)"', page)
    if found is None:
        found = re.search(rf'<textarea[^>]* name="{name}"[^>]*>([^<]*)</textarea>', page)
    assert found is not None, name
    return html.unescape(found.group(1))


def error_of(page: str) -> str:
    found = re.search(r'<p class="error" role="alert">([^<]*)</p>', page)
    assert found is not None, page
    return html.unescape(found.group(1))


def notice_of(response: httpx.Response) -> str:
    assert response.status_code == 303, error_of(response.text)
    location = response.headers["location"]
    found = re.search(r"notice=([^&#]*)", location)
    assert found is not None, location
    from urllib.parse import unquote_plus

    return unquote_plus(found.group(1))


@pytest.fixture
async def store(gw: RunningGateway) -> AsyncIterator[AutomationStore]:
    """The gateway's automation configuration, opened as ``tresen gateway bot`` opens it."""
    db = await open_database(gw.settings)
    yield AutomationStore(db, SystemClock(), gateway_key(gw.settings))
    await db.dispose()


@pytest.fixture
async def people(gw: RunningGateway) -> AsyncIterator[tuple[Browser, Browser]]:
    """Anna (owner) and Cem (agent), signed in."""
    db = await open_database(gw.settings)
    agents = Agents(db, SystemClock(), hasher=FAST)
    await agents.create("anna", "Anna Schmidt", Role.OWNER, PASSWORD)
    await agents.create("cem", "Cem Yilmaz", Role.AGENT, PASSWORD)
    owner, agent = Browser(gw.url), Browser(gw.url)
    assert (await owner.sign_in("anna")).status_code == 303
    assert (await agent.sign_in("cem")).status_code == 303
    yield owner, agent
    await owner.close()
    await agent.close()
    await db.dispose()


async def post_form(
    browser: Browser, page: str, action: str, fields: dict[str, str]
) -> httpx.Response:
    return await browser.post(action, {"csrf": await browser.csrf(page), **fields})


async def upload(browser: Browser, content: bytes, name: str = "bot.yaml") -> httpx.Response:
    token = await browser.csrf(HOME)
    return await browser.request(
        "POST",
        "/inbox/settings/automation/import",
        data={"csrf": token},
        files={"file": (name, content, "application/yaml")},
    )


GREETING = {
    "greeting_enabled": "on",
    "greeting_en": "Welcome to {name}!",
    "greeting_de": "Willkommen bei {name}!",
    "again_after_days": "7",
    "away_enabled": "on",
    "away_en": "We are closed; we answer from {opens}.",
    "away_de": "Wir sind nicht da; wir antworten ab {opens}.",
    "quiet_minutes": "15",
}
BOT = {
    "mode": "faq",
    "external_url": "",
    "answer_threshold": "60",
    "suggest_threshold": "40",
    "misunderstood_limit": "3",
    "handoff_keywords": "Beschwerde\ncomplaint",
    **{f"{n}_{lang}": "" for n in ("not_understood", "did_you_mean") for lang in ("en", "de")},
    "handoff_en": "A colleague takes over.",
    "handoff_de": "Eine Kollegin übernimmt.",
    "handoff_closed_en": "Our team answers from {opens}.",
    "handoff_closed_de": "Unser Team antwortet ab {opens}.",
}


async def test_agents_see_and_change_nothing_of_automation(
    people: tuple[Browser, Browser], store: AutomationStore
) -> None:
    _owner, agent = people
    for path in PAGES:
        assert (await agent.get(path)).status_code == 403, path
    token = await agent.csrf("/inbox")
    for path in POSTS:
        response = await agent.post(path, {"csrf": token, "mode": "faq", "text": "hi"})
        assert response.status_code == 403, path
    assert (await store.settings()).bot.mode is BotMode.OFF
    # The nav shows the room to owners only.
    assert "/inbox/settings/automation" not in (await agent.get("/inbox")).text


async def test_the_owner_saves_greeting_away_and_bot_settings(
    people: tuple[Browser, Browser], store: AutomationStore
) -> None:
    owner, _agent = people
    page = await owner.get(HOME)
    assert page.status_code == 200
    assert "No opening hours are set yet" in page.text
    saved = await post_form(owner, HOME, "/inbox/settings/automation/greeting", GREETING)
    assert saved.status_code == 303
    assert notice_of(saved) == "The greeting and away messages are saved."
    saved = await post_form(owner, HOME, "/inbox/settings/automation/bot", BOT)
    assert notice_of(saved) == "The bot's settings are saved."

    settings = await store.settings()
    assert settings.greeting.enabled
    assert settings.away.enabled
    assert settings.greeting.text == {"en": "Welcome to {name}!", "de": "Willkommen bei {name}!"}
    assert settings.greeting.again_after_days == 7
    assert settings.quiet_after_agent_minutes == 15
    assert settings.bot.mode is BotMode.FAQ
    assert (settings.bot.answer_threshold, settings.bot.suggest_threshold) == (0.6, 0.4)
    assert settings.bot.misunderstood_limit == 3
    assert settings.bot.handoff_keywords == ("Beschwerde", "complaint")
    assert settings.bot.handoff["de"] == "Eine Kollegin übernimmt."
    # An emptied text takes the default again rather than sending nothing.
    assert settings.bot.not_understood["en"].startswith("Sorry, I did not understand")

    page = (await owner.get(HOME)).text
    assert field_value(page, "answer_threshold") == "60"
    assert field_value(page, "handoff_keywords") == "Beschwerde\ncomplaint"
    assert field_value(page, "away_de") == "Wir sind nicht da; wir antworten ab {opens}."


async def test_refused_settings_are_explained_and_the_typed_values_kept(
    people: tuple[Browser, Browser], store: AutomationStore
) -> None:
    owner, _agent = people
    refused = await post_form(
        owner,
        HOME,
        "/inbox/settings/automation/bot",
        {**BOT, "answer_threshold": "30", "suggest_threshold": "50"},
    )
    assert refused.status_code == 400
    assert "The threshold to suggest must not be above the one to answer" in error_of(refused.text)
    assert field_value(refused.text, "suggest_threshold") == "50"
    assert field_value(refused.text, "handoff_de") == "Eine Kollegin übernimmt."

    refused = await post_form(
        owner, HOME, "/inbox/settings/automation/bot", {**BOT, "mode": "external"}
    )
    assert refused.status_code == 400
    assert "needs its URL" in error_of(refused.text)

    refused = await post_form(
        owner, HOME, "/inbox/settings/automation/greeting", {**GREETING, "quiet_minutes": "a lot"}
    )
    assert refused.status_code == 400
    assert "A number is outside its range" in error_of(refused.text)
    assert field_value(refused.text, "greeting_en") == "Welcome to {name}!"
    assert (await store.settings()).bot.mode is BotMode.OFF
    assert not (await store.settings()).greeting.enabled

    # Without the form's token nothing changes.
    forged = await owner.post("/inbox/settings/automation/bot", {**BOT, "csrf": "forged"})
    assert forged.status_code == 403
    assert (await store.settings()).bot.mode is BotMode.OFF


async def test_a_new_signing_secret_is_shown_once(
    people: tuple[Browser, Browser], store: AutomationStore
) -> None:
    owner, _agent = people
    made = await post_form(owner, HOME, "/inbox/settings/automation/secret", {})
    assert made.status_code == 200
    secret = await store.agent_bot_secret()
    assert secret is not None
    assert secret in made.text
    assert secret not in (await owner.get(HOME)).text
    assert "A secret is set" in (await owner.get(HOME)).text


INTENT = {
    "was": "",
    "name": "refund",
    "title_en": "Refund",
    "title_de": "Erstattung",
    "examples": (
        "How do I get my money back?\nIch möchte mein Geld zurück\n\nrefund for a cancelled flight"
    ),
    "enabled": "on",
    "kind": "text",
    "text_en": "Refunds take 7 days.",
    "text_de": "Erstattungen dauern 7 Tage.",
}


async def test_the_owner_adds_changes_and_deletes_an_intent(
    people: tuple[Browser, Browser], store: AutomationStore
) -> None:
    owner, _agent = people
    new = "/inbox/settings/automation/new-intent"
    added = await post_form(owner, new, INTENTS, INTENT)
    assert added.status_code == 303
    assert notice_of(added) == "The intent Refund is saved."
    intent = await store.intent("refund")
    assert intent is not None
    assert intent.examples == (
        "How do I get my money back?",
        "Ich möchte mein Geld zurück",
        "refund for a cancelled flight",
    )
    listed = (await owner.get(INTENTS)).text
    assert "refund" in listed
    assert "Refund" in listed

    # A title longer than a button's is refused; the form keeps what was typed.
    too_long = {**INTENT, "was": "refund", "title_de": "Rückerstattung des Flugpreises"}
    refused = await post_form(owner, f"{INTENTS}/refund", INTENTS, too_long)
    assert refused.status_code == 400
    assert "A text is too long" in error_of(refused.text)
    assert "20 characters" in error_of(refused.text)
    assert field_value(refused.text, "title_de") == "Rückerstattung des Flugpreises"
    assert field_value(refused.text, "text_en") == "Refunds take 7 days."
    assert (await store.intent("refund")) == intent

    # Buttons that answer another intent; renamed, it keeps its place.
    await post_form(owner, new, INTENTS, {**INTENT, "name": "money", "examples": "money back"})
    buttons = {
        **INTENT,
        "was": "refund",
        "name": "refunds",
        "kind": "buttons",
        "body_en": "What do you want to know?",
        "body_de": "Was möchten Sie wissen?",
        "choice1_id": "intent:money",
        "choice1_en": "Money back",
        "choice1_de": "Geld zurück",
    }
    changed = await post_form(owner, f"{INTENTS}/refund", INTENTS, buttons)
    assert changed.status_code == 303, changed.text
    assert [i.name for i in await store.intents()] == ["refunds", "money"]
    renamed = await store.intent("refunds")
    assert renamed is not None
    assert renamed.answer.choices[0].id == "intent:money"
    page = (await owner.get(f"{INTENTS}/refunds")).text
    assert field_value(page, "choice1_de") == "Geld zurück"

    # A button for an intent that does not exist is refused.
    unknown = {**buttons, "was": "refunds", "name": "refunds", "choice1_id": "intent:nothing"}
    refused = await post_form(owner, f"{INTENTS}/refunds", INTENTS, unknown)
    assert refused.status_code == 400
    assert "That intent does not exist" in error_of(refused.text)

    # Deleting asks first, and is refused while another intent's button answers it.
    confirm = (await owner.get(f"{INTENTS}/money?delete=1")).text
    assert "Delete the intent money? The bot no longer answers it." in confirm
    refused = await post_form(owner, f"{INTENTS}/money", f"{INTENTS}/money/delete", {})
    assert refused.status_code == 400
    assert "has a button for unknown money" in error_of(refused.text)
    deleted = await post_form(owner, f"{INTENTS}/refunds", f"{INTENTS}/refunds/delete", {})
    assert notice_of(deleted) == "The intent refunds is deleted."
    assert [i.name for i in await store.intents()] == ["money"]


async def test_try_it_says_what_the_bot_would_do(
    people: tuple[Browser, Browser], store: AutomationStore
) -> None:
    owner, _agent = people
    await store.import_config(parse_bot_file(SMALL_BOT))
    tried = await post_form(
        owner,
        INTENTS,
        "/inbox/settings/automation/try",
        {"text": "Wie schwer darf mein Koffer sein?"},
    )
    assert tried.status_code == 200
    assert re.search(r"Would answer: Baggage \(\d+ %\)", tried.text), tried.text
    assert "Language guessed: Deutsch" in tried.text

    tried = await post_form(
        owner,
        INTENTS,
        "/inbox/settings/automation/try",
        {"text": "Ich möchte mit einem Mitarbeiter sprechen"},
    )
    assert "Would hand over: asked for a person" in tried.text

    tried = await post_form(
        owner,
        f"{INTENTS}/baggage",
        "/inbox/settings/automation/try",
        {"text": "What is the capital of Mongolia?", "intent": "baggage"},
    )
    assert "Would not understand" in tried.text
    assert field_value(tried.text, "name") == "baggage"  # still on the intent's page


async def test_import_and_export_of_the_demo_bot(
    people: tuple[Browser, Browser], store: AutomationStore
) -> None:
    owner, _agent = people
    imported = await upload(owner, demo_bot_file().encode())
    assert imported.status_code == 303, imported.text
    assert re.match(r"The bot file is imported: \d+ intents, \d+ actions\.", notice_of(imported))
    names = [i.name for i in await store.intents()]
    assert {"baggage", "checkin", "boarding_pass", "flight_status"} <= set(names)
    actions = await store.actions(with_headers=True)
    assert actions
    assert all(a["url"].startswith(SYSTEMS) for a in actions)

    page = (await owner.get(HOME)).text
    assert "flight_status" in page
    assert SYSTEMS in page
    secret = await store.new_agent_bot_secret()
    exported = await owner.get("/inbox/settings/automation/export")
    assert exported.status_code == 200
    assert exported.headers["content-disposition"] == 'attachment; filename="bot.yaml"'
    again = parse_bot_file(exported.text)
    assert [i.name for i in again.intents] == names
    assert secret not in exported.text
    for action, sealed in zip(again.actions, actions, strict=True):
        assert set(action.get("headers", {})) == set(sealed.get("headers", {}))
        assert all(v == "********" for v in action.get("headers", {}).values())
        for value in sealed.get("headers", {}).values():
            assert value not in exported.text

    # An action an intent uses is not deleted.
    refused = await post_form(
        owner, HOME, "/inbox/settings/automation/actions/flight_status/delete", {}
    )
    assert refused.status_code == 400
    assert "An intent still uses the action" in error_of(refused.text)
    assert "flight_status" in {a["name"] for a in await store.actions()}


async def test_a_refused_bot_file_changes_nothing(
    people: tuple[Browser, Browser], store: AutomationStore
) -> None:
    owner, _agent = people
    await store.import_config(parse_bot_file(SMALL_BOT))
    before = await store.export_config(with_headers=True)
    broken = SMALL_BOT.replace('answer: {text: "9 to 18"}', "answer: {action: nowhere}")
    refused = await upload(owner, broken.encode())
    assert refused.status_code == 400
    said = error_of(refused.text)
    assert said.startswith("The file was not imported; nothing changed:")
    assert "nowhere" in said
    refused = await upload(owner, b"intents: [unclosed")
    assert "The file is not valid YAML" in error_of(refused.text)
    refused = await upload(owner, b"x" * (1024 * 1024 + 10))
    assert "at most 1 MiB" in error_of(refused.text)
    assert await store.export_config(with_headers=True) == before


async def test_an_unanswered_question_is_adopted_or_dismissed_in_the_reports(
    people: tuple[Browser, Browser], store: AutomationStore
) -> None:
    owner, _agent = people
    await store.import_config(parse_bot_file(SMALL_BOT))
    await store.log("c1", "unanswered", detail="Darf mein Hund mit in die Kabine?")
    await store.log("c2", "unanswered", detail="Was kostet ein zweiter Koffer?")
    await store.log("c2", "took")
    await store.log("c2", "handoff", detail="person")
    reports = (await owner.get("/inbox/reports")).text
    assert "Unanswered questions" in reports
    assert "Was kostet ein zweiter Koffer?" in reports
    assert "the customer asked for a person" in reports
    second = (await store.unanswered())[0]
    assert second.text == "Was kostet ein zweiter Koffer?"

    adopted = await post_form(
        owner,
        "/inbox/reports",
        f"/inbox/reports/unanswered/{second.id}/adopt",
        {"intent": "baggage", "start": "", "end": "", "zone": "UTC"},
    )
    assert adopted.status_code == 303
    assert notice_of(adopted) == "The question is now an example of Baggage."
    baggage = await store.intent("baggage")
    assert baggage is not None
    assert baggage.examples[-1] == "Was kostet ein zweiter Koffer?"

    first = (await store.unanswered())[0]
    dismissed = await post_form(
        owner, "/inbox/reports", f"/inbox/reports/unanswered/{first.id}/dismiss", {}
    )
    assert notice_of(dismissed) == "The question is dismissed; the bot learns nothing from it."
    assert await store.unanswered() == []
    assert [i.examples for i in await store.intents()][1] == (
        "When are you open?",
        "Wann haben Sie geöffnet?",
        "opening hours today",
    )
    assert "No unanswered questions." in (await owner.get("/inbox/reports")).text

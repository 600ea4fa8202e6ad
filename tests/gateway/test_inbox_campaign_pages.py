"""The campaigns' and subscriber lists' pages without a browser: who may change what, the
CSRF token on every form, and the pages in German."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from gateway_support import RunningGateway
from inbox_browser import FAST, PASSWORD, Browser, notice

from tresen.core.clock import SystemClock
from tresen.gateway.app import open_database
from tresen.gateway.inbox.agents import Agents, Role

LIST = {
    "name": "Newsletter",
    "purpose": "marketing",
    "keyword": "news",
    "description": "Every Friday",
    "confirmation": "Our bakery news, once a week.",
}


@pytest.fixture
async def team(gw: RunningGateway) -> AsyncIterator[Agents]:
    db = await open_database(gw.settings)
    agents = Agents(db, SystemClock(), hasher=FAST)
    await agents.create("anna", "Anna Schmidt", Role.OWNER, PASSWORD)
    await agents.create("cem", "Cem Yilmaz", Role.AGENT, PASSWORD)
    yield agents
    await db.dispose()


@pytest.fixture
async def browser(gw: RunningGateway) -> AsyncIterator[Browser]:
    made = Browser(gw.url)
    yield made
    await made.close()


async def test_an_owner_makes_and_changes_a_list_with_plain_forms(
    team: Agents, browser: Browser
) -> None:
    await browser.sign_in("anna")
    token = await browser.csrf("/inbox/lists")
    forged = await browser.post("/inbox/lists", {**LIST, "csrf": "guessed"})
    assert forged.status_code == 403
    assert "No subscriber list yet." in (await browser.get("/inbox/lists")).text

    made = await browser.post("/inbox/lists", {**LIST, "csrf": token})
    assert notice(made) == "List Newsletter made."
    page = (await browser.get("/inbox/lists/1")).text
    assert "NEWS" in page
    assert 'src="/inbox/lists/1/qr.svg"' in page
    qr = await browser.get("/inbox/lists/1/qr.svg")
    assert (qr.status_code, qr.headers["content-type"]) == (200, "image/svg+xml")
    assert "<svg" in qr.text
    png = await browser.get("/inbox/lists/1/qr.png?download=1")
    assert png.content.startswith(b"\x89PNG")
    assert png.headers["content-disposition"] == 'attachment; filename="list-1.png"'

    refused = await browser.post("/inbox/lists/1", {**LIST, "keyword": "STOP", "csrf": token})
    assert "STOP already means something" in notice(refused)
    saved = await browser.post("/inbox/lists/1", {**LIST, "name": "Bakery news", "csrf": token})
    assert notice(saved) == "List saved."
    assert "Bakery news" in (await browser.get("/inbox/lists")).text


async def test_an_agent_sees_campaigns_and_lists_but_changes_nothing(
    team: Agents, browser: Browser
) -> None:
    await browser.sign_in("cem")
    campaigns = await browser.get("/inbox/campaigns")
    assert campaigns.status_code == 200
    assert "No campaign yet." in campaigns.text
    assert "/inbox/campaigns/new" not in campaigns.text
    lists = await browser.get("/inbox/lists")
    assert lists.status_code == 200
    assert "Make the list" not in lists.text
    token = await browser.csrf("/inbox/lists")  # the bar's forms carry it
    assert (await browser.get("/inbox/campaigns/new")).status_code == 403
    made = await browser.post("/inbox/lists", {**LIST, "csrf": token})
    assert made.status_code == 403
    assert "No subscriber list yet." in (await browser.get("/inbox/lists")).text


async def test_the_pages_speak_german_to_an_agent_who_chose_it(
    team: Agents, browser: Browser
) -> None:
    anna = next(a for a in await team.all() if a.username == "anna")
    await team.set_language(anna.id, "de")
    await browser.sign_in("anna")
    campaigns = (await browser.get("/inbox/campaigns")).text
    assert "<h1>Kampagnen</h1>" in campaigns
    assert "Neue Kampagne" in campaigns
    lists = (await browser.get("/inbox/lists")).text
    assert "<h1>Abonnentenlisten</h1>" in lists
    assert "Wofür die Liste ist" in lists

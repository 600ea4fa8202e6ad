"""The campaigns' and subscriber lists' pages without a browser: who may change what, the
CSRF token on every form, and the pages in German."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from campaign_support import NEWS
from gateway_support import RunningGateway, approved_template
from inbox_browser import FAST, PASSWORD, Browser, notice
from support import RunningRelay

from tresen.core.clock import SystemClock
from tresen.gateway.app import open_database
from tresen.gateway.inbox.agents import Agents, Role

NO_FILE = {"csv": ("", b"", "application/octet-stream")}
"""What a browser sends for a file input left empty."""
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


async def test_a_scheduled_campaign_is_paused_resumed_and_cancelled_with_plain_forms(
    relay: RunningRelay, gw: RunningGateway, team: Agents, browser: Browser
) -> None:
    template_id = await approved_template(relay, gw, NEWS)
    await browser.sign_in("anna")
    form = await browser.get(f"/inbox/campaigns/new?t={template_id}")
    assert "Hi {{1}}, this week: {{2}}." in form.text  # the template's text, its placeholders
    assert 'name="p.body.1"' in form.text
    assert 'name="p.body.2"' in form.text
    token = await browser.csrf(f"/inbox/campaigns/new?t={template_id}")
    fields = {
        "csrf": token,
        "t": template_id,
        "name": "Friday news",
        "p.body.1": "{{name}}",
        "p.body.2": "{{offer}}",
        "when": "at",
        "at": "2099-01-01T10:00",
        "quiet_from": "21:00",
        "quiet_until": "08:00",
    }
    people = "phone,name,offer\n+4915100000001,Marie,rolls\n"
    nobody = await browser.request("POST", "/inbox/campaigns/new", data=fields, files=NO_FILE)
    # Refused, the form comes back with the reason and with what was filled in.
    assert nobody.status_code == 400
    assert "Choose who gets it: a list, a label or a CSV of recipients." in nobody.text
    assert 'value="Friday news"' in nobody.text
    assert 'value="2099-01-01T10:00"' in nobody.text
    forged = await browser.request(
        "POST",
        "/inbox/campaigns/new",
        data={**fields, "csrf": "guessed"},
        files={"csv": ("people.csv", people, "text/csv")},
    )
    assert forged.status_code == 403
    made = await browser.request(
        "POST",
        "/inbox/campaigns/new",
        data=fields,
        files={"csv": ("people.csv", people, "text/csv")},
    )
    assert notice(made) == "Campaign Friday news made: check it, then start it."
    page = made.headers["location"].split("?")[0]
    campaign = gw.app.state.campaigns
    (draft,) = await campaign.all()
    assert draft.audience.recipients[0].attributes == {"offer": "rolls"}
    assert draft.schedule.quiet_hours == ("21:00", "08:00")

    # Nobody on this network has that number: the campaign starts, scheduled, and waits.
    for action, said in (
        ("start", "Campaign started."),
        ("pause", "Campaign paused."),
        ("resume", "Campaign resumed."),
        ("cancel", "Campaign cancelled."),
    ):
        answer = await browser.post(f"{page}/{action}", {"csrf": token})
        assert notice(answer) == said
    shown = await browser.get(page)
    assert 'class="campaign-state state-cancelled"' in shown.text
    again = await browser.post(f"{page}/resume", {"csrf": token})
    assert notice(again).startswith("Campaign 1 is cancelled")
    csv = await browser.get(f"{page}/results.csv")
    assert csv.status_code == 200
    assert csv.text.splitlines()[0].startswith("phone,account_id,state")

"""The campaigns' and subscriber lists' pages without a browser: who may change what, the
CSRF token on every form, and the pages in German."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from campaign_support import NEWS
from gateway_support import RunningGateway, approved_template
from inbox_browser import FAST, PASSWORD, Browser, notice
from support import RunningRelay

from tresen.core.clock import SystemClock
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import Agents, Role
from tresen.gateway.subscribers import SubscriberImport

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


async def test_a_german_agent_reads_the_lists_refusals_in_german(
    team: Agents, browser: Browser
) -> None:
    anna = next(a for a in await team.all() if a.username == "anna")
    await team.set_language(anna.id, "de")
    await browser.sign_in("anna")
    token = await browser.csrf("/inbox/lists")
    await browser.post("/inbox/lists", {**LIST, "csrf": token})
    refused = await browser.post("/inbox/lists/1", {**LIST, "keyword": "STOP", "csrf": token})
    assert notice(refused) == "STOP bedeutet in der App jedes Kunden schon etwas."
    taken = await browser.post("/inbox/lists", {**LIST, "keyword": "other", "csrf": token})
    assert notice(taken) == "Eine andere Liste hat diesen Namen schon."
    empty = await browser.request(
        "POST",
        "/inbox/lists/1/import",
        data={"csrf": token},
        files={"file": ("people.csv", b"name\nAna\n", "text/csv")},
    )
    assert notice(empty) == "Die erste Zeile muss die Spalten nennen, eine davon phone."


async def test_an_import_report_is_kept_in_the_database_with_its_csv(
    gw: RunningGateway, team: Agents, browser: Browser
) -> None:
    await browser.sign_in("anna")
    token = await browser.csrf("/inbox/lists")
    await browser.post("/inbox/lists", {**LIST, "csrf": token})
    people = b"phone,city\nhello,Berlin\n+4915100000001,Berlin\n+4915100000001,Hamburg\n"
    imported = await browser.request(
        "POST",
        "/inbox/lists/1/import",
        data={"csrf": token},
        files={"file": ("people.csv", people, "text/csv")},
    )
    assert notice(imported) == "Imported: 0 accepted, 3 refused."
    report_page = imported.headers["location"].split("?")[0]
    assert report_page == "/inbox/lists/1/imports/1"
    shown = (await browser.get(report_page)).text
    assert "Imported by Anna Schmidt on " in shown
    assert "not a phone number (write it like +4915112345678)" in shown
    assert "duplicate row (the same number as row 3)" in shown
    listed = (await browser.get("/inbox/lists/1")).text
    assert "Recent imports" in listed
    assert 'href="/inbox/lists/1/imports/1.csv"' in listed

    # Another instance of the gateway reads the same report from the database.
    db = await open_database(gw.settings)
    try:
        kept = await SubscriberImport(
            db, SystemClock(), gw.app.state.gateway.client, business_account_id="x"
        ).report(1, 1)
    finally:
        await db.dispose()
    assert kept is not None
    assert (kept.by, kept.accepted, kept.refused) == ("Anna Schmidt", 0, 3)
    assert [r.why.code for r in kept.rows] == ["not_a_phone", "not_on_relay", "duplicate"]

    # In German, the page and its CSV.
    anna = next(a for a in await team.all() if a.username == "anna")
    await team.set_language(anna.id, "de")
    german = (await browser.get(report_page)).text
    assert "doppelte Zeile (dieselbe Nummer wie Zeile 3)" in german
    csv = await browser.get(f"{report_page}.csv")
    assert csv.text.splitlines()[0] == "Zeile,Telefon,Ergebnis,Status,Grund"
    assert "keine Telefonnummer" in csv.text
    gone = await browser.get("/inbox/lists/1/imports/99")
    assert gone.status_code == 404


async def test_the_new_campaign_form_takes_attribute_conditions(
    relay: RunningRelay, gw: RunningGateway, team: Agents, browser: Browser
) -> None:
    template_id = await approved_template(relay, gw, NEWS)
    await browser.sign_in("anna")
    token = await browser.csrf(f"/inbox/campaigns/new?t={template_id}")
    form = await browser.get(f"/inbox/campaigns/new?t={template_id}")
    assert form.text.count('name="cond_attribute"') == 1
    assert 'src="/inbox/static/campaign_form.js"' in form.text
    fields: dict[str, Any] = {
        "csrf": token,
        "t": template_id,
        "name": "Gold in Berlin",
        "p.body.1": "{{name}}",
        "p.body.2": "rolls",
        "when": "now",
        "quiet": "none",
        "cond_attribute": ["city", "tier", "loyalty_id", ""],
        "cond_op": ["equals", "in", "has", "equals"],
        "cond_values": ["", "gold, silver", "", ""],
    }
    people = (
        "phone,name,city,tier,loyalty_id\n"
        "+4915100000001,Marie,Berlin,gold,L1\n"
        "+4915100000002,Jonas,Berlin,bronze,L2\n"
        "+4915100000003,Ina,Hamburg,gold,L3\n"
    )
    files = {"csv": ("people.csv", people, "text/csv")}
    wrong = await browser.request("POST", "/inbox/campaigns/new", data=fields, files=files)
    assert wrong.status_code == 400
    assert "Check the conditions: 1 of them cannot be used as written." in wrong.text
    assert 'id="cond-trouble-1">Give the value it must equal.</p>' in wrong.text
    assert 'value="gold, silver"' in wrong.text
    assert wrong.text.count('name="cond_attribute"') == 4  # the three, and room for one more
    assert await gw.app.state.campaigns.all() == []

    made = await browser.request(
        "POST",
        "/inbox/campaigns/new",
        data={**fields, "cond_values": ["Berlin", "gold, silver", "", ""]},
        files=files,
    )
    assert notice(made) == "Campaign Gold in Berlin made: check it, then start it."
    (draft,) = await gw.app.state.campaigns.all()
    assert [(c.attribute, c.op, c.values) for c in draft.audience.conditions] == [
        ("city", "equals", ("Berlin",)),
        ("tier", "in", ("gold", "silver")),
        ("loyalty_id", "has", ()),
    ]
    review = (await browser.get(made.headers["location"].split("?")[0])).text
    assert "<li>city equals Berlin</li>" in review
    assert "<li>tier is one of gold, silver</li>" in review
    assert "<li>loyalty_id has a value</li>" in review
    assert "3 recipients from a CSV" in review
    assert "Recipients now: 1" in review  # Marie: in Berlin, gold, with a loyalty id

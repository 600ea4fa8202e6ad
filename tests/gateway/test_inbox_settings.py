"""The inbox's settings over HTTP, as a business's owner uses them in a browser: a gateway that
has just registered its number creates its profile and hours and customers find it; only
owners and admins see or change anything; every form needs its CSRF token; refused input
is explained in the agent's language and kept in the form."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from gateway_support import (
    RunningGateway,
    customer,
    gateway_settings,
    relay_codes,
    run_gateway,
    webhook_inbox,
)
from inbox_browser import FAST, PASSWORD, Browser
from sqlalchemy import select
from support import Backend, RunningRelay, drop_schema

from tresen.core.clock import SystemClock
from tresen.core.http import tls_context
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import Agents, Role
from tresen.gateway.inbox.conversations import Conversations
from tresen.gateway.schema import activity
from tresen.relay.operator.service import OperatorPrincipal

SETTINGS_PAGES = [
    "/inbox/settings",
    "/inbox/settings/hours",
    "/inbox/settings/api",
    "/inbox/settings/templates",
    "/inbox/settings/labels",
]
SETTINGS_POSTS = [
    "/inbox/settings/profile",
    "/inbox/settings/hours",
    "/inbox/settings/verification",
    "/inbox/settings/labels/rename",
    "/inbox/settings/labels/remove",
    "/inbox/settings/tokens",
    "/inbox/settings/tokens/1/revoke",
    "/inbox/settings/webhooks",
    "/inbox/settings/webhooks/1/remove",
    "/inbox/settings/templates",
]
BAKERY = {
    "display_name": "Bäckerei Sonnenschein",
    "category": "RESTAURANT",
    "about": "Frisches Brot jeden Morgen",
    "description": "Sauerteig, Brezeln und Kuchen aus dem Holzofen.",
    "address": "Lindenstraße 5, 10969 Berlin",
    "email": "hallo@sonnenschein.example",
    "website1": "https://sonnenschein.example",
    "website2": "",
}
HOURS = {
    "timezone": "Europe/Berlin",
    "hours_mon": "7-13, 14:00-18:00",
    "hours_tue": "07:00-18:00",
    "hours_wed": "07:00-18:00",
    "hours_thu": "07:00-18:00",
    "hours_fri": "07:00-18:00",
    "hours_sat": "08:00 \u2013 12:00",  # an en dash, as word processors write it
    "hours_sun": "",
    "closed_dates": "2026-12-25\n2026-12-26",
}


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def field_value(page: str, name: str) -> str:
    """What the form shows in the input or textarea ``name``."""
    found = re.search(rf'<input[^>]* name="{name}"[^>]* value="([^"]*)"', page)
    if found is None:
        found = re.search(rf'<textarea[^>]* name="{name}"[^>]*>([^<]*)</textarea>', page)
    assert found is not None, name
    return html.unescape(found.group(1))


@pytest.fixture
async def fresh(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> AsyncIterator[RunningGateway]:
    """A gateway that has just registered its number: no business profile yet."""
    settings, schema = gateway_settings(relay, backend, tmp_path)
    try:
        async with run_gateway(settings, codes=relay_codes(relay)) as running:
            yield running
    finally:
        if schema is not None:
            await drop_schema(schema)


async def staff(running: RunningGateway) -> Agents:
    """Anna (owner, reads German when asked), Ben (admin), Cem (agent)."""
    db = await open_database(running.settings)
    agents = Agents(db, SystemClock(), hasher=FAST)
    await agents.create("anna", "Anna Schmidt", Role.OWNER, PASSWORD)
    await agents.create("ben", "Ben Meyer", Role.ADMIN, PASSWORD)
    await agents.create("cem", "Cem Yilmaz", Role.AGENT, PASSWORD)
    return agents


@pytest.fixture
async def owner_of_fresh(fresh: RunningGateway) -> AsyncIterator[Browser]:
    agents = await staff(fresh)
    browser = Browser(fresh.url)
    assert (await browser.sign_in("anna")).status_code == 303
    yield browser
    await browser.close()
    await agents.db.dispose()


@pytest.fixture
async def people(gw: RunningGateway) -> AsyncIterator[tuple[Agents, Browser, Browser]]:
    """The team of the (listed, verified) test shop: the owner's and the agent's browsers."""
    agents = await staff(gw)
    owner, agent = Browser(gw.url), Browser(gw.url)
    assert (await owner.sign_in("anna")).status_code == 303
    assert (await agent.sign_in("cem")).status_code == 303
    yield agents, owner, agent
    await owner.close()
    await agent.close()
    await agents.db.dispose()


async def post_form(
    browser: Browser, page: str, action: str, fields: dict[str, str]
) -> httpx.Response:
    return await browser.post(action, {"csrf": await browser.csrf(page), **fields})


# --- (a) a new business sets itself up and becomes findable ------------------------------------


async def test_a_new_business_creates_its_profile_and_hours_and_customers_find_it(
    fresh: RunningGateway, owner_of_fresh: Browser, relay: RunningRelay, tmp_path: Path
) -> None:
    owner = owner_of_fresh
    first = await owner.get("/inbox/settings")
    assert first.status_code == 200
    assert "no business profile yet" in first.text
    assert '<a href="/inbox/settings">Settings</a>' in first.text
    early = await post_form(owner, "/inbox/settings/hours", "/inbox/settings/hours", HOURS)
    assert early.status_code == 400
    assert "Save the business profile first; then its opening hours." in early.text
    assert field_value(early.text, "hours_mon") == HOURS["hours_mon"]

    saved = await post_form(owner, "/inbox/settings", "/inbox/settings/profile", BAKERY)
    assert saved.status_code == 303, saved.text
    shown = await owner.get(saved.headers["location"])
    assert "The business profile is saved." in shown.text
    assert field_value(shown.text, "display_name") == "Bäckerei Sonnenschein"
    assert "no business profile yet" not in shown.text
    # Every page of the inbox now names the business instead of its number.
    assert '<span class="business">Bäckerei Sonnenschein</span>' in shown.text

    hours = await post_form(owner, "/inbox/settings/hours", "/inbox/settings/hours", HOURS)
    assert hours.status_code == 303, hours.text
    page = (await owner.get("/inbox/settings/hours")).text
    assert field_value(page, "hours_mon") == "07:00-13:00, 14:00-18:00"
    assert field_value(page, "hours_sat") == "08:00-12:00"
    assert field_value(page, "timezone") == "Europe/Berlin"
    # Reports count days in the business's time zone from now on.
    assert "By day (Europe/Berlin)" in (await owner.get("/inbox/reports")).text

    # A picture: a PNG is taken, anything else is explained and changes nothing.
    token = await owner.csrf("/inbox/settings")
    png = b"\x89PNG\r\n\x1a\n" + bytes(200)
    wrong = await owner.request(
        "POST",
        "/inbox/settings/picture",
        data={"csrf": token},
        files={"picture": ("brot.gif", b"GIF89a" + bytes(50), "image/gif")},
    )
    assert wrong.status_code == 400
    assert "Choose a JPEG or PNG picture of at most 512 KiB." in wrong.text
    forged = await owner.request(
        "POST",
        "/inbox/settings/picture",
        data={"csrf": "guessed"},
        files={"picture": ("brot.png", png, "image/png")},
    )
    assert forged.status_code == 403
    assert "No profile picture yet." in (await owner.get("/inbox/settings")).text
    taken = await owner.request(
        "POST",
        "/inbox/settings/picture",
        data={"csrf": token},
        files={"picture": ("brot.png", png, "image/png")},
    )
    assert taken.status_code == 303, taken.text
    assert "The business has a profile picture" in (await owner.get("/inbox/settings")).text

    alice = await customer(relay, tmp_path / "alice")
    try:
        [hit] = await alice.find_businesses("sonnenschein")
        assert (hit.account_id, hit.display_name) == (
            fresh.gateway.account_id,
            "Bäckerei Sonnenschein",
        )
        assert hit.about == "Frisches Brot jeden Morgen"
        business = await alice.business(hit.account_id)
        profile = business.profile
        assert profile.email == "hallo@sonnenschein.example"
        assert list(profile.websites) == ["https://sonnenschein.example"]
        assert profile.hours_lines()[0] == "Mon  07:00-13:00, 14:00-18:00"
        assert profile.hours_lines()[6] == "Sun  closed"
        assert profile.has_picture
        # Monday 7 December 2026, 10:00 in Berlin (09:00 UTC): open; at 13:30 the lunch break.
        assert profile.open_now(utc_ms("2026-12-07T09:00:00")) is True
        assert profile.open_now(utc_ms("2026-12-07T12:30:00")) is False
        # Christmas Day is a Friday, and closed.
        assert profile.open_now(utc_ms("2026-12-25T10:00:00")) is False
    finally:
        await alice.close()


async def test_the_cloud_api_creates_the_profile_of_a_new_business_too(
    fresh: RunningGateway,
) -> None:
    path = f"/{fresh.phone_number_id}/whatsapp_business_profile"
    nameless = await fresh.http.post(path, json={"messaging_product": "whatsapp", "about": "Hi"})
    assert nameless.status_code == 400
    assert "display_name" in nameless.json()["error"]["error_data"]["details"]

    made = await fresh.http.post(
        path,
        json={
            "messaging_product": "whatsapp",
            "display_name": "Fahrradladen Kette",
            "vertical": "RETAIL",
        },
    )
    assert made.status_code == 200, made.text
    number = (await fresh.http.get(f"/{fresh.phone_number_id}")).json()
    assert number["verified_name"] == "Fahrradladen Kette"
    assert number["name_status"] == "PENDING_REVIEW"  # not verified by the operator
    [profile] = (await fresh.http.get(path)).json()["data"]
    assert profile["vertical"] == "RETAIL"

    wrong = await fresh.http.post(
        path, json={"messaging_product": "whatsapp", "email": "no address", "websites": ["x"]}
    )
    assert wrong.status_code == 400
    details = wrong.json()["error"]["error_data"]["details"]
    assert "email" in details
    assert "websites" in details


async def test_the_owner_requests_verification_and_sees_where_it_stands(
    fresh: RunningGateway, owner_of_fresh: Browser, relay: RunningRelay
) -> None:
    owner = owner_of_fresh
    before = await owner.get("/inbox/settings")
    assert "Save the business profile first; then the operator can verify it." in before.text
    assert 'action="/inbox/settings/verification"' not in before.text
    assert (
        await post_form(owner, "/inbox/settings", "/inbox/settings/profile", BAKERY)
    ).status_code == 303
    page = (await owner.get("/inbox/settings")).text
    assert "<strong>not requested</strong>" in page

    asked = await post_form(
        owner,
        "/inbox/settings",
        "/inbox/settings/verification",
        {"note": "Handelsregister HRB 1234"},
    )
    assert asked.status_code == 303, asked.text
    page = (await owner.get(asked.headers["location"])).text
    assert "Verification is requested" in page
    assert "<strong>requested</strong>" in page
    assert 'action="/inbox/settings/verification"' not in page  # one request at a time

    await relay.ctx.operator.reject(
        OperatorPrincipal("tests"),
        fresh.gateway.account_id,
        "the register entry names another firm",
    )
    page = (await owner.get("/inbox/settings")).text
    assert "<strong>refused</strong>" in page
    assert "the register entry names another firm" in page
    assert 'action="/inbox/settings/verification"' in page  # may ask again

    await relay.ctx.operator.verify(OperatorPrincipal("tests"), fresh.gateway.account_id)
    page = (await owner.get("/inbox/settings")).text
    assert "<strong>verified</strong>" in page
    assert 'action="/inbox/settings/verification"' not in page


# --- (b) agents, (c) CSRF ----------------------------------------------------------------------


async def test_an_agent_gets_403_on_every_settings_page_and_form(
    gw: RunningGateway, people: tuple[Agents, Browser, Browser]
) -> None:
    _agents, owner, agent = people
    tokens_before = await gw.gateway.store.tokens()
    home = await agent.get("/inbox")
    assert 'href="/inbox/settings"' not in home.text
    assert '<a href="/inbox/settings">Settings</a>' in (await owner.get("/inbox")).text
    csrf = await agent.csrf("/inbox")
    for path in SETTINGS_PAGES:
        answer = await agent.get(path)
        assert answer.status_code == 403, path
        assert "Only owners and admins manage the team and the business's settings." in (
            html.unescape(answer.text)
        )
    for path in SETTINGS_POSTS:
        answer = await agent.post(
            path,
            {
                "csrf": csrf,
                "name": "stolen",
                "display_name": "Taken over",
                "label": "x",
                "new_name": "y",
            },
        )
        assert answer.status_code == 403, path
    assert await gw.gateway.store.tokens() == tokens_before
    assert (await gw.gateway.business_profile() or {})["display_name"] == "Gateway Test Shop"
    admin = Browser(gw.url)
    try:
        assert (await admin.sign_in("ben")).status_code == 303
        for path in SETTINGS_PAGES:
            assert (await admin.get(path)).status_code == 200, path
    finally:
        await admin.close()


async def test_a_settings_form_without_its_csrf_token_changes_nothing(
    gw: RunningGateway, people: tuple[Agents, Browser, Browser]
) -> None:
    _agents, owner, _agent = people
    inbox = Conversations(gw.gateway.store.db, SystemClock())
    await inbox.labels.put("c1", "vip")
    tokens_before = await gw.gateway.store.tokens()
    forged = [
        ("/inbox/settings/profile", {**BAKERY}),
        ("/inbox/settings/hours", {**HOURS}),
        ("/inbox/settings/tokens", {"name": "forged"}),
        ("/inbox/settings/labels/remove", {"label": "vip"}),
    ]
    for path, fields in forged:
        for token in (None, "not-the-token"):
            answer = await owner.post(path, fields if token is None else {**fields, "csrf": token})
            assert answer.status_code == 403, path
            assert "nothing was changed" in answer.text
    profile = await gw.gateway.business_profile()
    assert profile is not None
    assert profile["display_name"] == "Gateway Test Shop"
    assert profile["hours"] == {}
    assert await gw.gateway.store.tokens() == tokens_before
    assert await inbox.labels.counts() == [("vip", 1)]


# --- (d) refused input: a clear error in the agent's language, and what was typed kept ---------


async def test_invalid_hours_and_time_zone_are_explained_and_kept(
    fresh: RunningGateway, owner_of_fresh: Browser
) -> None:
    owner = owner_of_fresh
    assert (
        await post_form(owner, "/inbox/settings", "/inbox/settings/profile", BAKERY)
    ).status_code == 303
    typed = {
        **HOURS,
        "timezone": "Europe/Berlinn",
        "hours_tue": "9 till late",
        "hours_wed": "18:00-09:00",
        "closed_dates": "25.12.2026",
    }
    answer = await post_form(owner, "/inbox/settings/hours", "/inbox/settings/hours", typed)
    assert answer.status_code == 400
    page = html.unescape(answer.text)
    assert "Nothing was saved" in page
    assert "Enter the time zone by its name, such as Europe/Berlin" in page
    assert "Opening hours on Tuesday: write them like 09:00-12:30" in page
    assert "Opening hours on Wednesday" in page
    assert "Write the closed dates one a line as YYYY-MM-DD" in page
    assert field_value(answer.text, "timezone") == "Europe/Berlinn"
    assert field_value(answer.text, "hours_tue") == "9 till late"
    assert field_value(answer.text, "closed_dates") == "25.12.2026"
    assert re.search(r'<input id="timezone"[^>]*aria-invalid="true"', answer.text)
    assert not re.search(r'<input id="hours_mon"[^>]*aria-invalid="true"', answer.text)
    profile = await fresh.gateway.business_profile()
    assert profile is not None
    assert profile["hours"] == {}  # nothing saved

    # The same in German, for an owner who reads German.
    agents = Agents(await open_database(fresh.settings), SystemClock(), hasher=FAST)
    try:
        anna = await agents.by_username("anna")
        assert anna is not None
        await agents.set_language(anna.id, "de")
    finally:
        await agents.db.dispose()
    german = await post_form(owner, "/inbox/settings/hours", "/inbox/settings/hours", typed)
    assert german.status_code == 400
    page = html.unescape(german.text)
    assert "Geben Sie die Zeitzone mit ihrem Namen an" in page
    assert "Öffnungszeiten am Dienstag" in page
    assert field_value(german.text, "hours_tue") == "9 till late"


async def test_an_invalid_email_or_website_is_explained_and_kept(
    gw: RunningGateway, people: tuple[Agents, Browser, Browser]
) -> None:
    _agents, owner, _agent = people
    typed = {**BAKERY, "email": "hallo at sonnenschein", "website2": "ftp://files.example"}
    answer = await post_form(owner, "/inbox/settings", "/inbox/settings/profile", typed)
    assert answer.status_code == 400
    page = html.unescape(answer.text)
    assert "Enter an e-mail address such as service@example.com" in page
    assert "Enter each website as a full address such as https://example.com" in page
    assert field_value(answer.text, "email") == "hallo at sonnenschein"
    assert field_value(answer.text, "website2") == "ftp://files.example"
    assert field_value(answer.text, "display_name") == "Bäckerei Sonnenschein"
    profile = await gw.gateway.business_profile()
    assert profile is not None
    assert profile["display_name"] == "Gateway Test Shop"


# --- tokens, webhooks, templates, labels -------------------------------------------------------


async def test_a_token_is_shown_once_works_and_stops_working_when_revoked(
    gw: RunningGateway, people: tuple[Agents, Browser, Browser]
) -> None:
    _agents, owner, _agent = people
    made = await post_form(owner, "/inbox/settings/api", "/inbox/settings/tokens", {"name": "crm"})
    assert made.status_code == 200
    token = re.search(r'<code class="token">([^<]+)</code>', made.text)
    assert token is not None
    bearer = {"Authorization": f"Bearer {token.group(1)}"}
    async with httpx.AsyncClient(verify=tls_context(), base_url=gw.api_base) as api:
        assert (await api.get(f"/{gw.phone_number_id}", headers=bearer)).status_code == 200
        listed = (await owner.get("/inbox/settings/api")).text
        assert token.group(1) not in listed  # shown once
        assert "<td>crm</td>" in listed
        [crm] = [t for t in await gw.gateway.store.tokens() if t.name == "crm"]
        revoked = await post_form(
            owner, "/inbox/settings/api", f"/inbox/settings/tokens/{crm.id}/revoke", {}
        )
        assert revoked.status_code == 303
        assert (await api.get(f"/{gw.phone_number_id}", headers=bearer)).status_code == 401
    nameless = await post_form(owner, "/inbox/settings/api", "/inbox/settings/tokens", {"name": ""})
    assert nameless.status_code == 400
    assert "A token&#39;s name is 1 to 64" in nameless.text


async def test_webhooks_are_added_with_the_handshake_listed_and_removed(
    gw: RunningGateway, people: tuple[Agents, Browser, Browser]
) -> None:
    _agents, owner, _agent = people
    async with webhook_inbox(gw.gateway.app_secret) as hook:
        wrong = await post_form(
            owner,
            "/inbox/settings/api",
            "/inbox/settings/webhooks",
            {"url": hook.url, "verify_token": "not the token", "fields": "messages"},
        )
        assert wrong.status_code == 400
        assert "The endpoint did not confirm the subscription" in wrong.text
        assert field_value(wrong.text, "url") == hook.url  # kept
        assert await gw.gateway.outbox.list() == []

        added = await post_form(
            owner,
            "/inbox/settings/api",
            "/inbox/settings/webhooks",
            {"url": hook.url, "verify_token": hook.verify_token, "fields": "messages"},
        )
        assert added.status_code == 303, added.text
        [subscription] = await gw.gateway.outbox.list()
        assert (subscription.url, subscription.fields) == (hook.url, ("messages",))
        assert hook.url in (await owner.get("/inbox/settings/api")).text
        apps = (await gw.http.get(f"/{gw.waba_id}/subscribed_apps")).json()["data"]
        assert [a["override_callback_uri"] for a in apps] == [hook.url]

        removed = await post_form(
            owner, "/inbox/settings/api", f"/inbox/settings/webhooks/{subscription.id}/remove", {}
        )
        assert removed.status_code == 303
        assert await gw.gateway.outbox.list() == []

    bad = await post_form(
        owner,
        "/inbox/settings/api",
        "/inbox/settings/webhooks",
        {"url": "javascript:alert(1)", "verify_token": "t", "fields": "messages"},
    )
    assert bad.status_code == 400
    assert "The callback URL must start with https://" in bad.text


async def test_templates_are_submitted_and_listed_with_their_review(
    gw: RunningGateway, people: tuple[Agents, Browser, Browser], relay: RunningRelay
) -> None:
    _agents, owner, _agent = people
    submitted = await post_form(
        owner,
        "/inbox/settings/templates",
        "/inbox/settings/templates",
        {
            "name": "pickup_ready",
            "language": "de",
            "category": "UTILITY",
            "body": "Ihre Bestellung liegt zur Abholung bereit.",
        },
    )
    assert submitted.status_code == 303, submitted.text
    page = (await owner.get("/inbox/settings/templates")).text
    assert re.search(
        r"<td>pickup_ready</td>\s*<td>de</td>\s*<td>UTILITY</td>\s*<td>PENDING</td>", page
    )
    [template] = [t for t in await gw.gateway.all_templates() if t["name"] == "pickup_ready"]
    await relay.ctx.templates.reject(
        OperatorPrincipal("tests"), int(template["id"]), "INVALID_FORMAT"
    )
    page = (await owner.get("/inbox/settings/templates")).text
    assert re.search(r"<td>REJECTED</td>\s*<td>INVALID_FORMAT</td>", page)

    bad = await post_form(
        owner,
        "/inbox/settings/templates",
        "/inbox/settings/templates",
        {"name": "Pickup Ready!", "language": "de", "category": "UTILITY", "body": "x"},
    )
    assert bad.status_code == 400
    assert "lower-case letters, digits and underscores" in bad.text
    assert field_value(bad.text, "name") == "Pickup Ready!"


async def test_labels_are_listed_with_their_conversations_renamed_and_removed(
    gw: RunningGateway, people: tuple[Agents, Browser, Browser]
) -> None:
    _agents, owner, _agent = people
    inbox = Conversations(gw.gateway.store.db, SystemClock())
    for contact, name in (("c1", "vip"), ("c2", "vip"), ("c2", "refund"), ("c3", "later")):
        await inbox.labels.put(contact, name)
    page = (await owner.get("/inbox/settings/labels")).text
    assert re.search(r"<td>vip</td>\s*<td>2</td>", page)
    assert re.search(r"<td>refund</td>\s*<td>1</td>", page)

    renamed = await post_form(
        owner,
        "/inbox/settings/labels",
        "/inbox/settings/labels/rename",
        {"label": "vip", "new_name": "Stammkunde"},
    )
    assert renamed.status_code == 303
    clash = await post_form(
        owner,
        "/inbox/settings/labels",
        "/inbox/settings/labels/rename",
        {"label": "refund", "new_name": "later"},
    )
    assert clash.status_code == 400
    assert "There is a label later already." in clash.text
    removed = await post_form(
        owner, "/inbox/settings/labels", "/inbox/settings/labels/remove", {"label": "later"}
    )
    assert removed.status_code == 303
    assert await inbox.labels.counts() == [("refund", 1), ("stammkunde", 2)]
    # The activity lines say so, which is what reports by label replay.
    async with gw.gateway.store.db.read() as conn:
        rows = await conn.execute(select(activity.c.contact, activity.c.kind, activity.c.detail))
        recorded = sorted(tuple(r) for r in rows)
    assert recorded == [
        ("c1", "label", "stammkunde"),
        ("c1", "unlabel", "vip"),
        ("c2", "label", "stammkunde"),
        ("c2", "unlabel", "vip"),
        ("c3", "unlabel", "later"),
    ]

"""The inbox's sign-in and team pages over HTTP, as a browser uses them: cookies and their
flags, CSRF tokens on every form, roles, signing out everywhere, throttling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gateway_support import RunningGateway, customer, next_of
from inbox_browser import FAST, PASSWORD, Browser
from support import Backend, RunningRelay, relay_database_bytes

from tresen.client.events import MessageEvent
from tresen.core.clock import SystemClock
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import Agents, Role
from tresen.wire.e2e import Text


@pytest.fixture
async def team(gw: RunningGateway) -> AsyncIterator[Agents]:
    db = await open_database(gw.settings)
    agents = Agents(db, SystemClock(), hasher=FAST)
    await agents.create("anna", "Anna Schmidt", Role.OWNER, PASSWORD)
    await agents.create("ben", "Ben Meyer", Role.ADMIN, PASSWORD)
    await agents.create("cem", "Cem Yilmaz", Role.AGENT, PASSWORD)
    yield agents
    await db.dispose()


@pytest.fixture
async def browsers(gw: RunningGateway) -> AsyncIterator[list[Browser]]:
    made = [Browser(gw.url) for _ in range(2)]
    yield made
    for browser in made:
        await browser.close()


async def test_signing_in_sets_a_strict_session_cookie_and_a_strict_policy(
    team: Agents, browsers: list[Browser]
) -> None:
    browser = browsers[0]
    first = await browser.get("/inbox")
    assert (first.status_code, first.headers["location"]) == (303, "/inbox/login")
    form = await browser.get("/inbox/login")
    csp = form.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp  # the inbox's own scripts only
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert form.headers["cache-control"] == "no-store"

    wrong = await browser.sign_in("anna", "not the password")
    assert wrong.status_code == 401
    assert "The user name or the password is wrong." in wrong.text
    signed_in = await browser.sign_in("Anna")
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/inbox")
    session_cookie = next(h for h in browser.set_cookie_headers if h.startswith("tresen_inbox="))
    flags = {part.strip().lower() for part in session_cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/inbox"} <= flags
    home = await browser.get("/inbox")
    assert home.status_code == 200
    assert "<h1>Conversations</h1>" in home.text
    assert "Anna Schmidt" in home.text


async def test_a_form_without_its_csrf_token_changes_nothing(
    team: Agents, browsers: list[Browser]
) -> None:
    browser = browsers[0]
    # Sign-in itself needs the token that came with its form.
    refused = await browser.post("/inbox/login", {"username": "anna", "password": PASSWORD})
    assert refused.status_code == 403
    assert "nothing was changed" in refused.text
    await browser.sign_in("anna")

    for path in ("/inbox/logout", "/inbox/logout-everywhere"):
        forged = await browser.post(path, {"csrf": "guessed"})
        assert forged.status_code == 403
    forged = await browser.post(
        "/inbox/agents",
        {"username": "mallory", "display_name": "M", "role": "owner", "password": PASSWORD * 2},
    )
    assert forged.status_code == 403
    assert await team.by_username("mallory") is None
    assert (await browser.get("/inbox")).status_code == 200  # still signed in

    token = await browser.csrf("/inbox")
    out = await browser.post("/inbox/logout", {"csrf": token})
    assert out.headers["location"].startswith("/inbox/login")
    assert (await browser.get("/inbox")).status_code == 303


async def test_only_owners_and_admins_manage_the_team(
    team: Agents, browsers: list[Browser]
) -> None:
    agent, admin = browsers
    await agent.sign_in("cem")
    assert (await agent.get("/inbox/agents")).status_code == 403
    token = await agent.csrf("/inbox")
    sneaky = await agent.post(
        "/inbox/agents",
        {
            "csrf": token,
            "username": "dora",
            "display_name": "Dora",
            "role": "agent",
            "password": PASSWORD,
        },
    )
    assert sneaky.status_code == 403
    assert await team.by_username("dora") is None
    home = await agent.get("/inbox")
    assert 'href="/inbox/agents"' not in home.text  # not even offered

    await admin.sign_in("ben")
    token = await admin.csrf("/inbox/agents")
    added = await admin.post(
        "/inbox/agents",
        {
            "csrf": token,
            "username": "Dora",
            "display_name": "Dora Lang",
            "role": "agent",
            "password": PASSWORD,
        },
    )
    assert added.status_code == 303
    dora = await team.by_username("dora")
    assert dora is not None
    assert dora.role is Role.AGENT
    page = await admin.get("/inbox/agents")
    assert "Dora Lang" in page.text

    anna = await team.by_username("anna")
    assert anna is not None
    for path, data in (
        (f"/inbox/agents/{anna.id}/disable", {}),
        (f"/inbox/agents/{dora.id}/role", {"role": "owner"}),
    ):
        refused = await admin.post(path, {"csrf": token, **data})
        assert refused.status_code == 400
        assert "Only an owner" in refused.text
    assert (await team.by_username("anna")).active  # type: ignore[union-attr]
    made_admin = await admin.post(f"/inbox/agents/{dora.id}/role", {"csrf": token, "role": "admin"})
    assert made_admin.status_code == 303
    assert (await team.by_username("dora")).role is Role.ADMIN  # type: ignore[union-attr]


async def test_signing_out_everywhere_ends_the_other_browsers_session(
    team: Agents, browsers: list[Browser]
) -> None:
    laptop, phone = browsers
    await laptop.sign_in("anna")
    await phone.sign_in("anna")
    token = await laptop.csrf("/inbox")
    out = await laptop.post("/inbox/logout-everywhere", {"csrf": token})
    assert out.headers["location"].startswith("/inbox/login")
    assert (await phone.get("/inbox")).status_code == 303
    assert (await laptop.get("/inbox")).status_code == 303


async def test_guessing_is_throttled_and_huge_forms_are_refused(
    team: Agents, browsers: list[Browser]
) -> None:
    browser = browsers[0]
    for _ in range(5):
        assert (await browser.sign_in("anna", "guess guess guess")).status_code == 401
    held = await browser.sign_in("anna")
    assert held.status_code == 429
    assert int(held.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in held.text

    huge = await browser.post("/inbox/login", {"csrf": "x", "username": "a" * 20_000})
    assert huge.status_code == 413
    many = await browser.post("/inbox/login", {f"f{i}": "x" for i in range(100)})
    assert many.status_code == 413
    bad_id = await browser.post("/inbox/agents/99999999999999999999/disable", {})
    assert bad_id.status_code < 500


async def test_a_customer_writes_an_agent_takes_it_and_answers(
    relay: RunningRelay,
    backend: Backend,
    gw: RunningGateway,
    team: Agents,
    browsers: list[Browser],
    tmp_path: Path,
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    await alice.send_text(gw.gateway.phone, "Wo bleibt mein Paket <4711>?")
    agent = browsers[0]
    await agent.sign_in("cem")

    listed = await agent.get("/inbox")
    deadline = asyncio.get_running_loop().time() + 15
    while "Paket" not in listed.text:
        assert asyncio.get_running_loop().time() < deadline, listed.text
        await asyncio.sleep(0.05)
        listed = await agent.get("/inbox")
    assert "Wo bleibt mein Paket &lt;4711&gt;?" in listed.text  # escaped, never markup
    assert 'aria-label="1 unread"' in listed.text
    assert "window 23 h" in listed.text
    assert alice.account_id is not None
    thread = await agent.get(f"/inbox/c/{alice.account_id}")
    assert thread.status_code == 200
    assert "Wo bleibt mein Paket &lt;4711&gt;?" in thread.text
    assert 'aria-label="1 unread"' not in (await agent.get("/inbox")).text  # read now

    token = await agent.csrf(f"/inbox/c/{alice.account_id}")
    cem = await team.by_username("cem")
    assert cem is not None
    taken = await agent.post(
        f"/inbox/c/{alice.account_id}/assign", {"csrf": token, "agent": str(cem.id)}
    )
    assert taken.status_code == 303
    assert "Wo bleibt" in (await agent.get("/inbox?mine=mine")).text
    labelled = await agent.post(
        f"/inbox/c/{alice.account_id}/label", {"csrf": token, "label": "Lieferung"}
    )
    assert labelled.status_code == 303
    assert "Wo bleibt" in (await agent.get("/inbox?label=lieferung")).text
    assert "#lieferung" in (await agent.get("/inbox")).text
    assert "Wo bleibt" not in (await agent.get("/inbox?mine=unassigned")).text

    sent = await agent.post(
        f"/inbox/c/{alice.account_id}/reply", {"csrf": token, "text": "Es kommt morgen."}
    )
    assert sent.status_code == 303
    answer = await next_of(alice, MessageEvent, 30)
    assert isinstance(answer.payload, Text)
    assert answer.payload.text == "Es kommt morgen."
    shown = await agent.get(f"/inbox/c/{alice.account_id}")
    assert "Es kommt morgen." in shown.text
    assert "Cem Yilmaz assigned it to Cem Yilmaz" in shown.text  # the activity line

    # The owner adds a quick reply; the agent answers with its shortcut.
    owner = browsers[1]
    await owner.sign_in("anna")
    owner_token = await owner.csrf("/inbox/quick-replies")
    added = await owner.post(
        "/inbox/quick-replies",
        {"csrf": owner_token, "shortcut": "hours", "text": "Wir sind Mo bis Fr 9 bis 17 Uhr da."},
    )
    assert added.status_code == 303
    assert (await agent.get("/inbox/quick-replies")).status_code == 403
    await agent.post(f"/inbox/c/{alice.account_id}/reply", {"csrf": token, "text": "/hours"})
    quick = await next_of(alice, MessageEvent, 30)
    assert isinstance(quick.payload, Text)
    assert quick.payload.text == "Wir sind Mo bis Fr 9 bis 17 Uhr da."
    unknown = await agent.post(
        f"/inbox/c/{alice.account_id}/reply", {"csrf": token, "text": "/nosuch"}
    )
    assert "no+quick+reply" in unknown.headers["location"]

    # A private note stays in the gateway: the customer never gets it, the relay never
    # holds it.
    secret = "Kunde ist VIP-Geheimnis-7731"
    kept = await agent.post(f"/inbox/c/{alice.account_id}/note", {"csrf": token, "note": secret})
    assert kept.status_code == 303
    assert secret in (await agent.get(f"/inbox/c/{alice.account_id}")).text
    await agent.post(f"/inbox/c/{alice.account_id}/reply", {"csrf": token, "text": "Bis bald"})
    after = await next_of(alice, MessageEvent, 30)
    assert isinstance(after.payload, Text)
    assert after.payload.text == "Bis bald"  # the next thing Alice got: not the note
    for message in alice.store.messages(gw.gateway.account_id):
        assert message.payload is None or secret.encode() not in message.payload
    assert secret.encode() not in await relay_database_bytes(backend)

    resolved = await agent.post(
        f"/inbox/c/{alice.account_id}/status", {"csrf": token, "status": "resolved"}
    )
    assert resolved.status_code == 303
    assert "Wo bleibt" not in (await agent.get("/inbox")).text
    assert "Bis bald" in (await agent.get("/inbox?status=resolved")).text
    forged = await agent.post(f"/inbox/c/{alice.account_id}/reply", {"text": "forged"})
    assert forged.status_code == 403
    await alice.close()


async def test_an_agent_reads_the_inbox_in_the_language_they_chose(
    team: Agents, browsers: list[Browser]
) -> None:
    browser = browsers[0]
    # Before signing in, the browser's language decides.
    page = await browser.request("GET", "/inbox/login", headers={"Accept-Language": "de-DE"})
    assert "Am Posteingang anmelden" in page.text
    assert '<html lang="de">' in page.text
    await browser.sign_in("cem")
    assert "<h1>Conversations</h1>" in (await browser.get("/inbox")).text

    token = await browser.csrf("/inbox")
    chosen = await browser.post(
        "/inbox/language", {"csrf": token, "language": "de", "back": "/inbox?status=pending"}
    )
    assert chosen.status_code == 303
    assert chosen.headers["location"].startswith("/inbox?status=pending&notice=Sprache")
    home = await browser.get("/inbox")
    assert "<h1>Unterhaltungen</h1>" in home.text
    assert "Überall abmelden" in (await browser.get("/inbox/me")).text
    # The choice is the agent's: a second browser of theirs follows it.
    other = browsers[1]
    await other.sign_in("cem")
    assert "<h1>Unterhaltungen</h1>" in (await other.get("/inbox")).text

    elsewhere = await browser.post(
        "/inbox/language", {"csrf": token, "language": "en", "back": "//evil.example/inbox"}
    )
    assert elsewhere.headers["location"].startswith("/inbox?notice=Language")
    unknown = await browser.post("/inbox/language", {"csrf": token, "language": "xx"})
    assert unknown.status_code == 303
    assert "<h1>Conversations</h1>" in (await browser.get("/inbox")).text

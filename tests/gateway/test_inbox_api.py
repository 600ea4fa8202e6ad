"""The inbox's JSON API as tools, bots and the pages' script use it: an agent's personal
access token or the session cookie with its CSRF header, roles, one error envelope with 4xx
statuses, rate limits, and tokens that end when revoked or when their agent is disabled."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from argon2 import PasswordHasher
from gateway_support import RunningGateway, customer, next_of, serve_gateway
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import Backend, MakeRelay, RunningRelay

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.core.clock import ManualClock, SystemClock
from tresen.core.http import tls_context
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import Agents, Role
from tresen.gateway.inbox.tokens import AgentTokens, TokenError
from tresen.gateway.settings import InboxSettings
from tresen.wire.e2e import Text

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "Korrekt Pferd Batterie"
API = "/inbox/api/v1"


@pytest.fixture
async def team(gw: RunningGateway) -> AsyncIterator[Agents]:
    db = await open_database(gw.settings)
    agents = Agents(db, SystemClock(), hasher=FAST)
    await agents.create("anna", "Anna Schmidt", Role.OWNER, PASSWORD)
    await agents.create("cem", "Cem Yilmaz", Role.AGENT, PASSWORD)
    yield agents
    await db.dispose()


async def token_of(team: Agents, username: str) -> str:
    agent = await team.by_username(username)
    assert agent is not None
    _listed, token = await AgentTokens(team.db, team.clock, team).create(agent.id, "tests")
    return token


class Bot:
    """A tool using the API with an agent's token."""

    def __init__(self, gw: RunningGateway, token: str) -> None:
        self.http = httpx.AsyncClient(
            verify=tls_context(),
            base_url=gw.url + API,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self.http.request(method, path, json=body)

    async def close(self) -> None:
        await self.http.aclose()


class Session:
    """A signed-in browser's script: the session cookie (sent as a browser on 127.0.0.1
    sends a Secure cookie) and, for changes, the session's CSRF token as a header."""

    def __init__(self, gw: RunningGateway) -> None:
        self.http = httpx.AsyncClient(verify=tls_context(), base_url=gw.url, timeout=30)
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = await self.http.request(method, path, headers=headers, **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            for name, morsel in SimpleCookie(raw).items():
                self.cookies[name] = morsel.value
        return response

    async def sign_in(self, username: str) -> None:
        form = await self._request("GET", "/inbox/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        await self._request(
            "POST",
            "/inbox/login",
            data={"csrf": token.group(1), "username": username, "password": PASSWORD},
        )
        home = await self._request("GET", "/inbox")
        found = re.search(r'name="csrf" value="([^"]+)"', home.text)
        assert found is not None
        self.csrf = found.group(1)

    async def call(
        self, method: str, path: str, body: Any = None, *, csrf: str | None = None
    ) -> httpx.Response:
        headers = {} if csrf is None else {"X-CSRF-Token": csrf}
        return await self._request(method, API + path, json=body, headers=headers)

    async def close(self) -> None:
        await self.http.aclose()


async def first_conversation(bot: Bot, text: str) -> dict[str, Any]:
    """The conversation whose preview is ``text``, once it has arrived."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        listed = await bot.call("GET", "/conversations")
        assert listed.status_code == 200, listed.text
        for c in listed.json()["conversations"]:
            if c["preview"] == text:
                return dict(c)
        assert asyncio.get_running_loop().time() < deadline, listed.text
        await asyncio.sleep(0.05)


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """The message of an error answer, after checking its status and envelope."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    assert message
    return message


@pytest.fixture
async def alice(relay: RunningRelay, tmp_path: Path) -> AsyncIterator[Client]:
    client = await customer(relay, tmp_path / "alice")
    yield client
    await client.close()


async def test_an_agent_token_answers_a_customer_through_every_endpoint(
    relay: RunningRelay, gw: RunningGateway, team: Agents, alice: Client, tmp_path: Path
) -> None:
    bot = Bot(gw, await token_of(team, "cem"))
    owner = Bot(gw, await token_of(team, "anna"))
    try:
        me = await bot.call("GET", "/me")
        assert me.status_code == 200, me.text
        assert me.headers["cache-control"] == "no-store"
        assert me.json()["username"] == "cem"
        assert me.json()["role"] == "agent"

        await alice.send_text(gw.gateway.phone, "Wo ist mein Koffer?")
        c = await first_conversation(bot, "Wo ist mein Koffer?")
        contact = c["contact"]
        assert (c["status"], c["assignee"], c["unread"]) == ("open", None, 1)
        assert c["window_left_ms"] > 23 * 3600 * 1000

        opened = await bot.call("GET", f"/conversations/{contact}")
        assert opened.status_code == 200
        [asked] = opened.json()["messages"]
        assert (asked["text"], asked["incoming"]) == ("Wo ist mein Koffer?", True)
        again = await bot.call("GET", "/conversations")
        assert again.json()["conversations"][0]["unread"] == 0  # opening it read it

        sent = await bot.call(
            "POST",
            f"/conversations/{contact}/messages",
            {"text": "Er kommt heute Abend.", "reply_to": asked["wamid"]},
        )
        assert sent.status_code == 201, sent.text
        assert sent.json()["wamid"].startswith("wamid.")
        answer = await next_of(alice, MessageEvent, 30)
        assert isinstance(answer.payload, Text)
        assert answer.payload.text == "Er kommt heute Abend."
        assert answer.payload.context is not None  # quoted Alice's question

        added = await owner.call(
            "POST", "/quick-replies", {"shortcut": "hours", "text": "Mo bis Fr 9 bis 17 Uhr."}
        )
        assert added.status_code == 201, added.text
        quick = await bot.call("GET", "/quick-replies")
        assert [q["shortcut"] for q in quick.json()["quick_replies"]] == ["hours"]
        by_shortcut = await bot.call(
            "POST", f"/conversations/{contact}/messages", {"text": "/hours"}
        )
        assert by_shortcut.status_code == 201, by_shortcut.text
        expanded = await next_of(alice, MessageEvent, 30)
        assert expanded.payload.text == "Mo bis Fr 9 bis 17 Uhr."
        foreign = await bot.call(
            "POST",
            f"/conversations/{contact}/messages",
            {"text": "Hm?", "reply_to": "wamid.not-one-of-ours"},
        )
        assert "not in this conversation" in error_of(foreign, 400, "refused")
        unknown = await bot.call("POST", f"/conversations/{contact}/messages", {"text": "/nosuch"})
        assert "/nosuch" in error_of(unknown, 400, "refused")

        secret = "Stammkunde, Geheimnis 4242"
        note = await bot.call("POST", f"/conversations/{contact}/notes", {"text": secret})
        assert note.status_code == 201, note.text
        assert note.json()["kind"] == "note"

        cem = await team.by_username("cem")
        assert cem is not None
        taken = await bot.call("PUT", f"/conversations/{contact}/assignee", {"agent_id": cem.id})
        assert taken.status_code == 200, taken.text
        assert taken.json()["assignee"] == cem.id
        mine = await bot.call("GET", "/conversations?mine=mine")
        assert [x["contact"] for x in mine.json()["conversations"]] == [contact]
        unassigned = await bot.call("GET", "/conversations?mine=unassigned")
        assert unassigned.json()["conversations"] == []
        nobody = await bot.call("PUT", f"/conversations/{contact}/assignee", {"agent_id": 999999})
        error_of(nobody, 404, "not_found")

        labelled = await bot.call("POST", f"/conversations/{contact}/labels", {"name": "Gepaeck"})
        assert labelled.status_code == 200, labelled.text
        assert labelled.json()["labels"] == ["gepaeck"]
        assert (await bot.call("GET", "/labels")).json() == {"labels": ["gepaeck"]}
        tagged = await bot.call("GET", "/conversations?label=gepaeck")
        assert [x["contact"] for x in tagged.json()["conversations"]] == [contact]
        untagged = await bot.call("DELETE", f"/conversations/{contact}/labels/gepaeck")
        assert untagged.json()["labels"] == []
        error_of(
            await bot.call("DELETE", f"/conversations/{contact}/labels/gepaeck"), 404, "not_found"
        )

        snoozed = await bot.call(
            "PUT", f"/conversations/{contact}/status", {"status": "snoozed", "snooze_seconds": 3600}
        )
        assert snoozed.status_code == 200, snoozed.text
        assert snoozed.json()["status"] == "snoozed"
        assert snoozed.json()["snoozed_until_ms"] is not None
        assert (await bot.call("GET", "/conversations")).json()["conversations"] == []
        anyhow = await bot.call("GET", "/conversations?status=snoozed")
        assert [x["contact"] for x in anyhow.json()["conversations"]] == [contact]
        forever = await bot.call("PUT", f"/conversations/{contact}/status", {"status": "snoozed"})
        error_of(forever, 400, "refused")
        resolved = await bot.call("PUT", f"/conversations/{contact}/status", {"status": "resolved"})
        assert resolved.json()["status"] == "resolved"

        shown = (await bot.call("GET", f"/conversations/{contact}")).json()
        kinds = [a["kind"] for a in shown["activity"]]
        assert kinds.count("reply") == 2
        assert {"note", "assign", "label", "unlabel", "status"} <= set(kinds)
        assert secret in [a["detail"] for a in shown["activity"]]
        assert [m["text"] for m in shown["messages"] if not m["incoming"]] == [
            "Er kommt heute Abend.",
            "Mo bis Fr 9 bis 17 Uhr.",
        ]

        # An agent sees the team's ids and names; an owner sees everything.
        seen = (await bot.call("GET", "/agents")).json()["agents"]
        assert {a["display_name"] for a in seen} == {"Anna Schmidt", "Cem Yilmaz"}
        assert all(set(a) == {"id", "display_name"} for a in seen), seen
        full = (await owner.call("GET", "/agents")).json()["agents"]
        assert {a["role"] for a in full} == {"owner", "agent"}
        assert {a["username"] for a in full} == {"anna", "cem"}

        # Only owners and admins change the quick replies.
        refused = await bot.call("POST", "/quick-replies", {"shortcut": "x", "text": "y"})
        error_of(refused, 403, "forbidden")
        hours = added.json()["id"]
        error_of(await bot.call("DELETE", f"/quick-replies/{hours}"), 403, "forbidden")
        twice = await owner.call("POST", "/quick-replies", {"shortcut": "/hours", "text": "z"})
        error_of(twice, 409, "conflict")
        removed = await owner.call("DELETE", f"/quick-replies/{hours}")
        assert removed.json() == {"quick_replies": []}
    finally:
        await bot.close()
        await owner.close()


async def test_pages_of_conversations_follow_their_cursor(
    relay: RunningRelay, gw: RunningGateway, team: Agents, tmp_path: Path
) -> None:
    customers = [await customer(relay, tmp_path / f"c{i}") for i in range(3)]
    bot = Bot(gw, await token_of(team, "cem"))
    try:
        for i, client in enumerate(customers):
            await client.send_text(gw.gateway.phone, f"Frage {i}")
            await first_conversation(bot, f"Frage {i}")
        seen: list[str] = []
        cursor = None
        for _ in range(3):
            query = "/conversations?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = (await bot.call("GET", query)).json()
            seen += [c["preview"] for c in page["conversations"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["Frage 2", "Frage 1", "Frage 0"]
        bad = await bot.call("GET", "/conversations?cursor=drop%20table")
        error_of(bad, 400, "invalid_input")
        error_of(await bot.call("GET", "/conversations?limit=1000"), 400, "invalid_input")
    finally:
        await bot.close()
        for client in customers:
            await client.close()


async def test_the_session_cookie_needs_the_csrf_header_for_changes(
    gw: RunningGateway, team: Agents, alice: Client
) -> None:
    session = Session(gw)
    try:
        await session.sign_in("cem")
        me = await session.call("GET", "/me")
        assert me.status_code == 200, me.text
        assert me.json()["display_name"] == "Cem Yilmaz"

        await alice.send_text(gw.gateway.phone, "Hallo?")
        listed = await session.call("GET", "/conversations")
        deadline = asyncio.get_running_loop().time() + 15
        while not listed.json()["conversations"]:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
            listed = await session.call("GET", "/conversations")
        contact = listed.json()["conversations"][0]["contact"]

        path = f"/conversations/{contact}/notes"
        for forged in (None, "guessed", ""):
            refused = await session.call("POST", path, {"text": "forged"}, csrf=forged)
            error_of(refused, 403, "csrf_failed")
        kept = await session.call("POST", path, {"text": "echt"}, csrf=session.csrf)
        assert kept.status_code == 201, kept.text
        shown = (await session.call("GET", f"/conversations/{contact}")).json()
        assert [a["detail"] for a in shown["activity"] if a["kind"] == "note"] == ["echt"]

        # Every other change, too: refused without the header, done with it.
        cem = await team.by_username("cem")
        assert cem is not None
        changes: list[tuple[str, str, Any]] = [
            ("POST", f"/conversations/{contact}/messages", {"text": "Ja, hier!"}),
            ("PUT", f"/conversations/{contact}/assignee", {"agent_id": cem.id}),
            ("POST", f"/conversations/{contact}/labels", {"name": "rueckruf"}),
            ("DELETE", f"/conversations/{contact}/labels/rueckruf", None),
            ("PUT", f"/conversations/{contact}/status", {"status": "pending"}),
        ]
        for method, change, body in changes:
            error_of(await session.call(method, change, body), 403, "csrf_failed")
            done = await session.call(method, change, body, csrf=session.csrf)
            assert done.status_code in {200, 201}, (change, done.text)
        answer = await next_of(alice, MessageEvent, 30)
        assert answer.payload.text == "Ja, hier!"
        after = (await session.call("GET", f"/conversations/{contact}")).json()
        assert after["conversation"]["assignee"] == cem.id
        assert after["conversation"]["status"] == "pending"
        done_by_agents = [a["kind"] for a in after["activity"] if a["agent_id"] is not None]
        assert done_by_agents == [
            "note",
            "reply",
            "assign",
            "label",
            "unlabel",
            "status",
        ]
        for read in ("/labels", "/quick-replies", "/agents"):
            assert (await session.call("GET", read)).status_code == 200
        quick = await session.call("POST", "/quick-replies", {"shortcut": "a", "text": "b"})
        error_of(quick, 403, "csrf_failed")
        quick = await session.call(
            "POST", "/quick-replies", {"shortcut": "a", "text": "b"}, csrf=session.csrf
        )
        error_of(quick, 403, "forbidden")  # an agent's session: the role decides

        # Signed out, the cookie is worth nothing.
        await session._request("POST", "/inbox/logout", data={"csrf": session.csrf})
        error_of(await session.call("GET", "/me"), 401, "unauthenticated")
    finally:
        await session.close()


async def test_every_refusal_is_one_envelope_with_a_4xx_status(
    gw: RunningGateway, team: Agents
) -> None:
    bot = Bot(gw, await token_of(team, "cem"))
    anonymous = httpx.AsyncClient(verify=tls_context(), base_url=gw.url + API, timeout=30)
    try:
        error_of(await anonymous.get("/me"), 401, "unauthenticated")
        for header in ("Bearer tia_guessed", "Bearer " + gw.token, "Basic YTpi", "Bearer"):
            wrong = await anonymous.get("/me", headers={"Authorization": header})
            error_of(wrong, 401, "unauthenticated")
        german = await anonymous.get("/me", headers={"Accept-Language": "de"})
        assert error_of(german, 401, "unauthenticated").startswith("Melden Sie sich an")

        missing = "/conversations/abc123/notes"
        error_of(await bot.call("POST", missing, {"text": "x"}), 404, "not_found")
        error_of(await bot.call("GET", "/conversations/abc123"), 404, "not_found")
        error_of(await bot.call("GET", "/conversations/NOT-HEX"), 400, "invalid_input")
        error_of(await bot.call("GET", "/nothing/here"), 404, "not_found")
        error_of(await bot.call("GET", "/conversations?status=lost"), 400, "invalid_input")

        for body in (
            {},
            {"text": ""},
            {"text": 5},
            {"text": "x", "extra": 1},
            [],
            {"text": "\x00"},
        ):
            error_of(await bot.call("POST", missing, body), 400, "invalid_input")
        broken = await bot.http.post(
            missing, content=b"{not json", headers={"Content-Type": "application/json"}
        )
        error_of(broken, 400, "invalid_input")
        long = await bot.call("POST", missing, {"text": "x" * 4097})
        error_of(long, 400, "invalid_input")
        huge = await bot.http.post(
            missing, content=b"x" * 70_000, headers={"Content-Type": "application/json"}
        )
        error_of(huge, 413, "too_large")
        status = "/conversations/abc123/status"
        odd = await bot.call("PUT", status, {"status": "snoozed", "snooze_seconds": 5})
        error_of(odd, 400, "invalid_input")
        assignee = "/conversations/abc123/assignee"
        error_of(await bot.call("PUT", assignee, {"agent_id": True}), 400, "invalid_input")

        # The Cloud API keeps the Graph envelope for the same mistakes.
        graph = await gw.http.post(
            f"/{gw.phone_number_id}/messages",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert graph.status_code == 400
        assert graph.json()["error"]["code"] == 100
    finally:
        await bot.close()
        await anonymous.aclose()


async def test_a_token_ends_when_revoked_or_when_its_agent_is_disabled(
    gw: RunningGateway, team: Agents
) -> None:
    tokens = AgentTokens(team.db, team.clock, team)
    cem = await team.by_username("cem")
    assert cem is not None
    first, first_token = await tokens.create(cem.id, "first")
    _second, second_token = await tokens.create(cem.id, "second")
    one, two = Bot(gw, first_token), Bot(gw, second_token)
    try:
        assert (await one.call("GET", "/me")).status_code == 200
        assert await tokens.revoke(cem.id, first.id)
        error_of(await one.call("GET", "/me"), 401, "unauthenticated")
        assert (await two.call("GET", "/me")).status_code == 200

        await team.disable(cem.id)
        error_of(await two.call("GET", "/me"), 401, "unauthenticated")
        await team.enable(cem.id)  # enabled again: the old tokens stay ended
        error_of(await two.call("GET", "/me"), 401, "unauthenticated")
        listed = await tokens.of(cem.id)
        assert all(not t.active for t in listed)
        await team.disable(cem.id)
        with pytest.raises(TokenError, match="disabled"):
            await tokens.create(cem.id, "third")
    finally:
        await one.close()
        await two.close()


async def test_the_me_page_makes_a_token_shown_once_and_revokes_it(
    gw: RunningGateway, team: Agents
) -> None:
    session = Session(gw)
    try:
        await session.sign_in("cem")
        page = await session._request("GET", "/inbox/me")
        assert page.status_code == 200
        assert "You have no tokens." in page.text
        assert '<label for="token-name">' in page.text
        refused = await session._request("POST", "/inbox/me/tokens", data={"name": "bot"})
        assert refused.status_code == 403  # no CSRF token: nothing made
        made = await session._request(
            "POST", "/inbox/me/tokens", data={"csrf": session.csrf, "name": "Mein Bot"}
        )
        assert made.status_code == 200
        found = re.search(r'id="new-token" readonly value="(tia_[^"]+)"', made.text)
        assert found is not None, made.text
        token = found.group(1)
        bot = Bot(gw, token)
        try:
            assert (await bot.call("GET", "/me")).json()["username"] == "cem"
            again = await session._request("GET", "/inbox/me")
            assert token not in again.text  # shown only once
            assert "Mein Bot" in again.text
            listed = await AgentTokens(team.db, team.clock, team).of(
                (await team.by_username("cem")).id  # type: ignore[union-attr]
            )
            revoked = await session._request(
                "POST", f"/inbox/me/tokens/{listed[0].id}/revoke", data={"csrf": session.csrf}
            )
            assert revoked.status_code == 303
            error_of(await bot.call("GET", "/me"), 401, "unauthenticated")
        finally:
            await bot.close()
        nameless = await session._request(
            "POST", "/inbox/me/tokens", data={"csrf": session.csrf, "name": " "}
        )
        assert nameless.status_code == 400
        assert "1 to 64 characters" in nameless.text
    finally:
        await session.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_too_many_requests_are_answered_429_with_retry_after(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    inbox = InboxSettings(api_request_burst=3, api_requests_per_second=0.01)
    async with serve_gateway(relay, backend, tmp_path, inbox=inbox) as gw:
        db = await open_database(gw.settings)
        try:
            agents = Agents(db, SystemClock(), hasher=FAST)
            await agents.create("cem", "Cem Yilmaz", Role.AGENT, PASSWORD)
            bot, other = (
                Bot(gw, await token_of(agents, "cem")),
                Bot(gw, await token_of(agents, "cem")),
            )
            try:
                for _ in range(3):
                    assert (await bot.call("GET", "/me")).status_code == 200
                held = await bot.call("GET", "/me")
                error_of(held, 429, "rate_limited")
                assert int(held.headers["retry-after"]) > 0
                assert (await other.call("GET", "/me")).status_code == 200  # per token
            finally:
                await bot.close()
                await other.close()
        finally:
            await db.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_openapi_document_describes_the_inbox_api_and_not_its_pages(
    gw: RunningGateway,
) -> None:
    async with httpx.AsyncClient(verify=tls_context(), base_url=gw.url) as anonymous:
        spec = (await anonymous.get("/openapi.json")).json()
    paths = spec["paths"]
    assert not [p for p in paths if p.startswith("/inbox") and not p.startswith(API)]
    assert set(paths[f"{API}/conversations/{{contact}}/status"]) == {"put"}
    assert set(paths[f"{API}/conversations/{{contact}}/labels/{{label}}"]) == {"delete"}
    assert set(paths[f"{API}/quick-replies"]) == {"get", "post"}
    assert set(paths[f"{API}/conversations/{{contact}}/handoff"]) == {"post"}
    schemes = spec["components"]["securitySchemes"]
    assert schemes["agent_token"]["scheme"] == "bearer"
    assert schemes["inbox_session"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "tresen_inbox",
        "description": schemes["inbox_session"]["description"],
    }
    assert set(paths[f"{API}/campaigns"]) == {"get", "post"}
    assert set(paths[f"{API}/campaigns/{{campaign_id}}/{{action}}"]) == {"post"}
    inbox = {p: ops for p, ops in paths.items() if p.startswith(API)}
    assert set(paths[f"{API}/lists/{{list_id}}"]) == {"get", "put", "delete"}
    assert set(paths[f"{API}/lists/{{list_id}}/imports/{{import_id}}"]) == {"get"}
    assert set(paths[f"{API}/customers/{{customer}}"]) == {"delete"}
    assert set(paths[f"{API}/billing/{{month}}"]) == {"get"}
    assert len(inbox) == 33
    for path, operations in inbox.items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            assert {"400", "401", "403", "404", "429"} <= set(responses), (method, path)
            bad = responses["400"]["content"]["application/json"]["schema"]
            assert bad == {"$ref": "#/components/schemas/InboxErrorEnvelope"}
            # Every change with a body documents it and its limit (a campaign's start,
            # pause, resume and cancel take none).
            if method in {"post", "put"} and not path.endswith("{action}"):
                assert "413" in responses, (method, path)
                content = operation["requestBody"]["content"]
                assert content.get("application/json", content.get("text/csv"))["schema"]


def conform_inbox(spec: dict[str, Any], base_url: str, token: str) -> tuple[int, list[str]]:
    """Run every operation of the inbox's API with an owner's token: how many operations
    ran, and the failures, with why."""
    schema = schemathesis.openapi.from_dict(spec)
    failed: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(API):
            continue
        ran += 1

        @settings(
            max_examples=12,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            case.call_and_validate(
                base_url=base_url,
                headers={"Authorization": f"Bearer {token}"},
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
                timeout=30,
            )

        try:
            run()
        except Exception as exc:
            failed.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return ran, failed


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_inbox_api_answers_as_its_openapi_document_says(
    gw: RunningGateway, team: Agents, alice: Client
) -> None:
    owner = Bot(gw, await token_of(team, "anna"))
    try:
        await alice.send_text(gw.gateway.phone, "Guten Tag")
        contact = (await first_conversation(owner, "Guten Tag"))["contact"]
        await owner.call("POST", f"/conversations/{contact}/labels", {"name": "vip"})
        added = await owner.call("POST", "/quick-replies", {"shortcut": "hi", "text": "Hallo!"})
        async with httpx.AsyncClient(verify=tls_context(), base_url=gw.url) as anonymous:
            spec = (await anonymous.get("/openapi.json")).json()
    finally:
        await owner.close()
    # Path parameters drawn from this gateway's (and a foreign one now and then), so that
    # requests reach the routes' own rules.
    known = {
        "contact": [contact, "abc123"],
        "label": ["vip", "nosuch"],
        "reply_id": [added.json()["id"], 999],
    }
    for path in spec["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in known:
                    parameter["schema"] = {"enum": known[parameter["name"]]}
    started = time.monotonic()
    ran, failed = await asyncio.to_thread(conform_inbox, spec, gw.url, await token_of(team, "anna"))
    assert failed == [], "\n\n".join(failed)
    assert ran == 38  # every operation of the inbox's API, campaigns, lists and bills included
    assert time.monotonic() - started < 100


async def test_with_the_window_closed_an_answer_is_refused_409(
    make_relay: MakeRelay, backend: Backend, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with (
        make_relay(clock=clock) as relay,
        serve_gateway(relay, backend, tmp_path, clock=clock) as gw,
    ):
        db = await open_database(gw.settings)
        alice = await customer(relay, tmp_path / "alice")
        try:
            agents = Agents(db, clock, hasher=FAST)
            await agents.create("cem", "Cem Yilmaz", Role.AGENT, PASSWORD)
            bot = Bot(gw, await token_of(agents, "cem"))
            await alice.send_text(gw.gateway.phone, "Noch da?")
            contact = (await first_conversation(bot, "Noch da?"))["contact"]
            clock.advance(seconds=25 * 3600)
            listed = (await bot.call("GET", "/conversations")).json()["conversations"]
            assert listed[0]["window_left_ms"] == 0
            late = await bot.call("POST", f"/conversations/{contact}/messages", {"text": "Ja!"})
            assert "24" in error_of(late, 409, "not_sent")
            await bot.close()
        finally:
            await alice.close()
            await db.dispose()


async def test_an_agent_has_at_most_20_active_tokens(gw: RunningGateway, team: Agents) -> None:
    tokens = AgentTokens(team.db, team.clock, team)
    anna = await team.by_username("anna")
    assert anna is not None
    made = [await tokens.create(anna.id, f"tool {i}") for i in range(20)]
    with pytest.raises(TokenError, match="at most 20"):
        await tokens.create(anna.id, "one too many")
    assert await tokens.revoke(anna.id, made[0][0].id)
    assert not await tokens.revoke(anna.id, made[0][0].id)  # once
    await tokens.create(anna.id, "in its place")
    cem = await team.by_username("cem")
    assert cem is not None
    assert not await tokens.revoke(cem.id, made[1][0].id)  # nobody revokes another's token
    for bad in ("", " ", "x" * 65, "zwei\nZeilen"):
        with pytest.raises(TokenError, match="1 to 64"):
            await tokens.create(anna.id, bad)


async def test_owners_and_admins_erase_a_customer_through_the_api(
    gw: RunningGateway, team: Agents, alice: Client
) -> None:
    await alice.send_text(gw.gateway.account_id, "Please delete my data")
    contact = alice.account_id or ""
    async with httpx.AsyncClient(verify=tls_context(), base_url=f"{gw.url}{API}") as http:
        for _ in range(100):
            if await gw.gateway.store.contact(contact) is not None:
                break
            await asyncio.sleep(0.05)
        body = {"reason": "asked in the chat on 2025-11-05"}
        agent = {"Authorization": f"Bearer {await token_of(team, 'cem')}"}
        r = await http.request("DELETE", f"/customers/{contact}", json=body, headers=agent)
        assert r.status_code == 403, r.text
        owner = {"Authorization": f"Bearer {await token_of(team, 'anna')}"}
        r = await http.request("DELETE", f"/customers/{contact}", json=body, headers=owner)
        assert r.status_code == 200, r.text
        assert r.json()["removed"]["messages"] == 1
        r = await http.request("DELETE", f"/customers/{contact}", json=body, headers=owner)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
    assert await gw.gateway.store.contact(contact) is None

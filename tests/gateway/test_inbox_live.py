"""The live inbox over HTTP, as a page's script uses it: the event stream of each signed-in
agent (what it tells, to whom, and when it ends), the fragments the page fetches, and agents
typing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from gateway_support import RunningGateway, customer, next_of, serve_gateway
from support import Backend, RunningRelay

from tresen.client.events import MessageEvent, TypingStarted
from tresen.core.clock import ManualClock, SystemClock
from tresen.core.http import tls_context
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import Agent, Agents, Role
from tresen.gateway.inbox.events import Hub, InboxEvent
from tresen.gateway.inbox.presence import Typing
from tresen.gateway.inbox.streams import StreamLimits, Streams
from tresen.gateway.settings import InboxSettings

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "Korrekt Pferd Batterie"


@dataclass
class Said:
    kind: str
    data: dict[str, Any]
    raw: str


class Page:
    """One agent's browser: its session cookie, its forms' token, its live stream."""

    def __init__(self, base: str) -> None:
        self.http = httpx.AsyncClient(
            verify=tls_context(), base_url=base, follow_redirects=False, timeout=30
        )
        self.cookies: dict[str, str] = {}
        self.csrf = ""
        self.events: asyncio.Queue[Said | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.stream_status: int | None = None
        self.skipped: list[Said] = []

    def _headers(self) -> dict[str, str]:
        header = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return {"Cookie": header} if header else {}

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, path, headers=self._headers(), **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            for name, morsel in SimpleCookie(raw).items():
                if morsel["max-age"] == "0" or not morsel.value or morsel.value == '""':
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response

    async def get(self, path: str) -> httpx.Response:
        return await self.request("GET", path)

    async def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return await self.request("POST", path, data={"csrf": self.csrf, **data})

    async def sign_in(self, username: str) -> None:
        form = await self.get("/inbox/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        signed = await self.request(
            "POST",
            "/inbox/login",
            data={"csrf": token.group(1), "username": username, "password": PASSWORD},
        )
        assert signed.status_code == 303, signed.text
        home = await self.get("/inbox")
        found = re.search(r'name="csrf" value="([^"]+)"', home.text)
        assert found is not None
        self.csrf = found.group(1)

    async def follow(self) -> None:
        """Open the live stream, as the page's script does, and read it in the background."""
        opened: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def read() -> None:
            try:
                async with self.http.stream(
                    "GET", "/inbox/events", headers=self._headers(), timeout=None
                ) as response:
                    opened.set_result(response.status_code)
                    kind, data = "", ""
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("data: "):
                            data = line[6:]
                        elif line == "" and kind:
                            await self.events.put(Said(kind, json.loads(data), data))
                            kind, data = "", ""
            except httpx.TransportError:
                pass  # the gateway stopped: the stream ended
            finally:
                if not opened.done():
                    opened.set_result(0)
                await self.events.put(None)  # the stream ended

        self._reader = asyncio.create_task(read())
        self.stream_status = await opened
        assert self.stream_status == 200

    async def next(self, kind: str, /, within_s: float = 15, **where: Any) -> Said:
        """The first event of ``kind`` whose data has ``where`` (others are kept for later
        calls, in whatever order they came)."""

        def wanted(said: Said) -> bool:
            return said.kind == kind and all(said.data.get(k) == v for k, v in where.items())

        for said in self.skipped:
            if wanted(said):
                self.skipped.remove(said)
                return said
        async with asyncio.timeout(within_s):
            while True:
                got = await self.events.get()
                assert got is not None, f"the stream ended before a {kind} event"
                if wanted(got):
                    return got
                self.skipped.append(got)

    async def ended(self, within_s: float = 15) -> list[str]:
        """The kinds of the events up to the stream's end."""
        kinds = []
        async with asyncio.timeout(within_s):
            while (said := await self.events.get()) is not None:
                kinds.append(said.kind)
        return kinds

    async def close(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.http.aclose()


@pytest.fixture
async def live(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> AsyncIterator[RunningGateway]:
    """A gateway whose streams re-check their sessions often, and that allows an agent two."""
    settings = InboxSettings(live_session_check_s=0.2, live_streams_per_agent=2)
    async with serve_gateway(relay, backend, tmp_path, inbox=settings) as running:
        yield running


@pytest.fixture
async def team(live: RunningGateway) -> AsyncIterator[dict[str, Agent]]:
    db = await open_database(live.settings)
    agents = Agents(db, SystemClock(), hasher=FAST)
    made = {
        "anna": await agents.create("anna", "Anna Schmidt", Role.OWNER, PASSWORD),
        "ben": await agents.create("ben", "Ben Meyer", Role.AGENT, PASSWORD),
    }
    yield made
    await db.dispose()


@pytest.fixture
async def anna(live: RunningGateway, team: dict[str, Agent]) -> AsyncIterator[Page]:
    browser = Page(live.url)
    await browser.sign_in("anna")
    yield browser
    await browser.close()


@pytest.fixture
async def ben(live: RunningGateway, team: dict[str, Agent]) -> AsyncIterator[Page]:
    browser = Page(live.url)
    await browser.sign_in("ben")
    yield browser
    await browser.close()


async def test_a_customers_message_reaches_every_agents_stream_and_the_fragments_show_it(
    relay: RunningRelay,
    live: RunningGateway,
    team: dict[str, Agent],
    anna: Page,
    ben: Page,
    tmp_path: Path,
) -> None:
    await anna.follow()
    await ben.follow()
    alice = await customer(relay, tmp_path / "alice")
    await alice.send_text(live.gateway.phone, "Wo bleibt mein Paket <4711>?")
    contact = alice.account_id
    assert contact is not None

    for agent in (anna, ben):
        said = await agent.next("message", contact=contact)
        assert said.data["direction"] == "in"
        assert "Paket" not in said.raw  # ids and kinds, never the words
    wamid = said.data["wamid"]

    assert (await ben.get("/inbox/unread")).json() == {"conversations": 1}
    rows = await ben.get("/inbox/list-items?mine=all&status=open")
    assert rows.status_code == 200
    assert f'data-contact="{contact}"' in rows.text
    assert "Wo bleibt mein Paket &lt;4711&gt;?" in rows.text
    assert 'aria-label="1 unread"' in rows.text
    assert "<html" not in rows.text  # the rows only
    assert "No conversations here." in (await ben.get("/inbox/list-items?mine=mine")).text
    page = await ben.get("/inbox")  # without JavaScript, the page has the same rows
    assert 'id="conversations" data-live="list"' in page.text
    assert "Wo bleibt mein Paket &lt;4711&gt;?" in page.text
    assert '<script src="/inbox/static/inbox.js" defer></script>' in page.text

    items = await ben.get(f"/inbox/c/{contact}/items?after=0")
    assert items.status_code == 200
    assert f'data-wamid="{wamid}"' in items.text
    assert "Wo bleibt mein Paket &lt;4711&gt;?" in items.text
    until = items.headers["x-inbox-until"]
    assert int(until) > 0
    assert (await ben.get("/inbox/unread")).json() == {"conversations": 0}  # Ben read it

    # Ben answers: the answer, then its ticks, reach Anna's stream; the fragment after the
    # last one Anna fetched has the answer only.
    sent = await ben.post(f"/inbox/c/{contact}/reply", {"text": "Es kommt morgen."})
    assert sent.status_code == 303
    answer = await anna.next("message", contact=contact, direction="out")
    await anna.next("activity", contact=contact, kind="reply", agent_id=team["ben"].id)
    assert (await next_of(alice, MessageEvent, 30)).payload.text == "Es kommt morgen."
    await anna.next("status", wamid=answer.data["wamid"], status="delivered", within_s=30)
    newer = await anna.get(f"/inbox/c/{contact}/items?after={until}")
    assert "Es kommt morgen." in newer.text
    assert f'data-wamid="{answer.data["wamid"]}"' in newer.text
    assert "Paket" not in newer.text
    assert "Ben Meyer answered" in newer.text
    thread = await anna.get(f"/inbox/c/{contact}")
    assert f'id="thread" role="log" data-live="thread" data-contact="{contact}"' in thread.text
    assert 'id="presence"' in thread.text
    await alice.close()


async def test_an_assignment_by_one_agent_reaches_the_others_stream(
    relay: RunningRelay,
    live: RunningGateway,
    team: dict[str, Agent],
    anna: Page,
    ben: Page,
    tmp_path: Path,
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    await alice.send_text(live.gateway.phone, "Hallo?")
    contact = alice.account_id
    assert contact is not None
    await anna.follow()
    deadline = asyncio.get_running_loop().time() + 15
    while f'data-contact="{contact}"' not in (await ben.get("/inbox/list-items")).text:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)

    taken = await ben.post(f"/inbox/c/{contact}/assign", {"agent": str(team["ben"].id)})
    assert taken.status_code == 303
    changed = await anna.next("conversation", contact=contact)
    assert changed.data["assignee"] == team["ben"].id
    done = await anna.next("activity", contact=contact, kind="assign")
    assert (done.data["kind"], done.data["agent_id"]) == ("assign", team["ben"].id)
    assert "Ben Meyer" in (await anna.get("/inbox/list-items?mine=all")).text
    assert f'data-contact="{contact}"' not in (await anna.get("/inbox/list-items?mine=mine")).text

    resolved = await ben.post(f"/inbox/c/{contact}/status", {"status": "resolved"})
    assert resolved.status_code == 303
    assert (await anna.next("conversation", contact=contact)).data["status"] == "resolved"
    await alice.close()


async def test_typing_reaches_the_other_agents_and_the_customer(
    relay: RunningRelay,
    live: RunningGateway,
    team: dict[str, Agent],
    anna: Page,
    ben: Page,
    tmp_path: Path,
) -> None:
    # Ben's page is open before Alice writes: a stream tells only what happens after it opened.
    await ben.follow()
    alice = await customer(relay, tmp_path / "alice")
    await alice.send_text(live.gateway.phone, "Ist jemand da?")
    contact = alice.account_id
    assert contact is not None
    await ben.next("message", contact=contact)

    typed = await anna.post(f"/inbox/c/{contact}/typing", {})
    assert typed.status_code == 204
    said = await ben.next("typing", contact=contact)
    assert said.data == {"contact": contact, "agent_id": team["anna"].id, "name": "Anna Schmidt"}
    shown = await next_of(alice, TypingStarted, 30)
    assert shown.chat == live.gateway.account_id

    forged = await anna.request("POST", f"/inbox/c/{contact}/typing", data={"csrf": "guessed"})
    assert forged.status_code == 403
    nobody = await anna.post("/inbox/c/abcdef/typing", {})
    assert nobody.status_code == 404
    await alice.close()


async def test_signing_out_everywhere_ends_the_stream(live: RunningGateway, anna: Page) -> None:
    await anna.follow()
    phone = Page(live.url)
    try:
        await phone.sign_in("anna")
        out = await phone.post("/inbox/logout-everywhere", {})
        assert out.status_code == 303
        assert await anna.ended(within_s=10) == ["signed-out"]
        again = await anna.get("/inbox/events")
        assert again.status_code == 401
    finally:
        await phone.close()


async def test_strangers_get_401_and_an_agent_only_so_many_streams(
    live: RunningGateway, anna: Page
) -> None:
    async with httpx.AsyncClient(verify=tls_context(), base_url=live.url) as stranger:
        refused = await stranger.get("/inbox/events")
        assert refused.status_code == 401
        assert "Sign in to the inbox" in refused.text
        assert refused.headers["content-type"].startswith("text/plain")
        forged = await stranger.get("/inbox/events", headers={"Cookie": "tresen_inbox=guess"})
        assert forged.status_code == 401
        for path in ("/inbox/list-items", "/inbox/unread", "/inbox/c/abc/items?after=1"):
            assert (await stranger.get(path)).status_code == 401
        typed = await stranger.post("/inbox/c/abc/typing", data={"csrf": "x"})
        assert (typed.status_code, typed.headers["location"]) == (303, "/inbox/login")

    for bad in ("abc/items?after=-1", "abc/items?after=zehn", "NOT-HEX/items"):
        assert (await anna.get(f"/inbox/c/{bad}")).status_code == 400
    assert (await anna.get("/inbox/c/abc/items")).status_code == 404

    second = Page(live.url)
    second.cookies = dict(anna.cookies)
    try:
        await anna.follow()
        await second.follow()  # two pages: the most this gateway allows an agent
        third = await anna.get("/inbox/events")
        assert third.status_code == 429
        assert "Too many inbox pages" in third.text
    finally:
        await second.close()


# --- the parts, without a gateway --------------------------------------------------------------


async def test_typing_is_told_at_most_every_two_seconds_per_agent() -> None:
    hub = Hub()
    heard = hub.subscribe()
    clock = ManualClock()
    told: list[str] = []

    async def tell(contact: str) -> None:
        told.append(contact)

    typing = Typing(hub, clock, tell_customer=tell)
    anna = Agent(1, "anna", "Anna Schmidt", Role.AGENT, 0, None)
    assert await typing.typing(anna, "c1")
    assert not await typing.typing(anna, "c1")  # the page again, a moment later
    clock.advance(seconds=2)
    assert await typing.typing(anna, "c1")
    assert [heard._queue.get_nowait().kind for _ in range(2)] == ["typing", "typing"]
    assert heard._queue.empty()
    assert told == ["c1"]  # the customer's app shows it for 25 s: once is enough
    clock.advance(seconds=20)
    assert await typing.typing(anna, "c1")
    assert told == ["c1", "c1"]


class _Sessions:
    """Agents whose one session ends when told."""

    def __init__(self) -> None:
        self.live = True
        self.checks = 0

    async def session(self, token: str) -> object | None:
        self.checks += 1
        return object() if self.live else None


async def test_a_stream_beats_tells_kinds_and_ids_only_and_ends_with_its_session() -> None:
    hub = Hub()
    sessions = _Sessions()
    limits = StreamLimits(per_agent=1, heartbeat_s=0.05, session_check_s=0.1)
    streams = Streams(hub, sessions, limits)  # type: ignore[arg-type]
    lines = streams.follow(7, "token")
    assert (await anext(lines)).startswith("retry: ")
    assert streams.open == 1
    assert not streams.room_for(7)
    assert streams.room_for(8)
    assert await anext(lines) == ": beat\n\n"
    hub.publish(InboxEvent("activity", "c1", {"kind": "note", "agent_id": 3, "text": "geheim"}))
    said = await anext(lines)
    assert said == 'event: activity\ndata: {"contact":"c1","kind":"note","agent_id":3}\n\n'
    sessions.live = False
    rest = [line async for line in lines]
    assert rest[-1] == "event: signed-out\ndata: {}\n\n"
    assert sessions.checks >= 1
    assert streams.open == 0
    assert hub.listeners == 0

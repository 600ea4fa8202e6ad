"""Automatic assignment with an injected clock: round robin over online agents, their limits,
away and offline agents, waiting conversations, racing events; and in a running gateway."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from gateway_support import RunningGateway, customer
from inbox_browser import FAST, PASSWORD, Browser
from sqlalchemy import insert, select, update
from support import RunningRelay

from tresen.client import Client
from tresen.core.clock import ManualClock
from tresen.core.db import Database
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import Agents, Role
from tresen.gateway.inbox.assignment import Assignment
from tresen.gateway.inbox.conversations import Conversations, Status
from tresen.gateway.inbox.events import InboxEvent
from tresen.gateway.schema import activity, contacts, messages


@dataclass
class Desk:
    """A business's inbox at a fixed time: agents, customers who write, the assigner."""

    db: Database
    clock: ManualClock
    agents: Agents
    inbox: Conversations
    assignment: Assignment
    written: int = 0

    async def agent(self, username: str, name: str, *, signed_in: bool = True) -> int:
        made = await self.agents.create(username, name, Role.AGENT, PASSWORD)
        if signed_in:
            await self.agents.sign_in(username, PASSWORD, "127.0.0.1")
        return made.id

    async def writes(self, account_id: str, text: str = "Hallo?") -> None:
        """The customer writes (as the recorder stores it), and the hub tells of it."""
        self.written += 1
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            known = await conn.execute(
                select(contacts.c.account_id).where(contacts.c.account_id == account_id)
            )
            if known.first() is None:
                await conn.execute(
                    insert(contacts).values(
                        account_id=account_id,
                        user_id=f"DE.{account_id}",
                        profile_name=account_id,
                        created_ms=now,
                    )
                )
            await conn.execute(
                insert(messages).values(
                    wamid=f"wamid.{self.written}",
                    contact=account_id,
                    direction="in",
                    origin="customer",
                    type="text",
                    content=json.dumps({"body": text}),
                    status="received",
                    created_ms=now,
                    updated_ms=now,
                )
            )
            await conn.execute(
                update(contacts)
                .where(contacts.c.account_id == account_id)
                .values(last_inbound_ms=now)
            )
        await self.assignment.handle(
            InboxEvent("message", account_id, {"wamid": f"wamid.{self.written}", "direction": "in"})
        )

    async def assignees(self) -> dict[str, int | None]:
        return {c.contact: c.assignee for c in await self.inbox.list(me=0, limit=500)}

    async def automatic(self) -> list[tuple[str, str]]:
        """The automatic assignments in the activity line: (conversation, agent's name)."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(activity.c.contact, activity.c.detail)
                .where(activity.c.kind == "assign", activity.c.agent_id.is_(None))
                .order_by(activity.c.id)
            )
            return [(str(c), str(d)) for c, d in rows.all()]


@pytest.fixture
async def desk(db: Database) -> Desk:
    clock = ManualClock()
    inbox = Conversations(db, clock)
    return Desk(
        db, clock, Agents(db, clock, hasher=FAST), inbox, Assignment(db, clock, inbox, tick_s=3600)
    )


def customer_id(n: int) -> str:
    return f"{n:032x}"


async def test_round_robin_is_fair_and_keeps_to_each_limit(desk: Desk) -> None:
    anna = await desk.agent("anna", "Anna")
    ben = await desk.agent("ben", "Ben")
    cem = await desk.agent("cem", "Cem")
    await desk.assignment.configure(enabled=True, default_limit=2)
    await desk.assignment.set_limit(cem, 1)

    for n in range(1, 7):
        desk.clock.advance(seconds=10)
        await desk.writes(customer_id(n))
    assert await desk.automatic() == [
        (customer_id(1), "Anna"),
        (customer_id(2), "Ben"),
        (customer_id(3), "Cem"),
        (customer_id(4), "Anna"),
        (customer_id(5), "Ben"),
    ]
    assignees = await desk.assignees()
    assert assignees[customer_id(6)] is None  # everyone is at their limit: it waits
    # Writing again into a conversation someone has changes nothing.
    await desk.writes(customer_id(1), "Noch da?")
    assert len(await desk.automatic()) == 5

    # Anna resolves one: below her limit, she takes the waiting one.
    await desk.inbox.set_status(customer_id(1), Status.RESOLVED)
    await desk.assignment.handle(InboxEvent("conversation", customer_id(1), {"status": "resolved"}))
    assert (await desk.assignees())[customer_id(6)] == anna
    assert (await desk.automatic())[-1] == (customer_id(6), "Anna")
    members = {m.name: m for m in await desk.assignment.team()}
    assert (members["Anna"].open, members["Ben"].open, members["Cem"].open) == (2, 2, 1)
    assert members["Ben"].id == ben


async def test_away_and_offline_agents_are_skipped_until_they_can_take_one(desk: Desk) -> None:
    anna = await desk.agent("anna", "Anna")
    ben = await desk.agent("ben", "Ben")
    await desk.agent("cem", "Cem", signed_in=False)
    await desk.assignment.set_available(anna, False)
    await desk.assignment.configure(enabled=True, default_limit=1)
    desk.clock.advance(minutes=3)  # Ben's session was last seen 3 minutes ago: offline
    await desk.agents.sign_in("cem", PASSWORD, "127.0.0.1")

    for n in (1, 2, 3):
        desk.clock.advance(seconds=5)
        await desk.writes(customer_id(n))
    assert await desk.automatic() == [(customer_id(1), "Cem")]
    assert {m.name: (m.available, m.online) for m in await desk.assignment.team()} == {
        "Anna": (False, False),
        "Ben": (True, False),
        "Cem": (True, True),
    }

    # Anna comes back: she takes the conversation that waited longest.
    await desk.agents.sign_in("anna", PASSWORD, "127.0.0.1")
    await desk.assignment.set_available(anna, True)
    await desk.assignment.handle(InboxEvent("availability", None, {"agent_id": anna}))
    assert (await desk.automatic())[-1] == (customer_id(2), "Anna")

    # Ben opens a page again (his session is touched); the next tick gives him the last one.
    await desk.agents.sign_in("ben", PASSWORD, "127.0.0.1")
    await desk.assignment.handle(None)
    assert (await desk.assignees())[customer_id(3)] == ben
    assert len(await desk.automatic()) == 3


async def test_nothing_is_assigned_while_it_is_off_but_openings_are_recorded(desk: Desk) -> None:
    await desk.agent("anna", "Anna")
    await desk.writes(customer_id(1))
    await desk.writes(customer_id(1), "Noch da?")
    assert await desk.automatic() == []
    assert (await desk.assignees())[customer_id(1)] is None
    async with desk.db.read() as conn:
        kinds = (await conn.execute(select(activity.c.kind))).scalars().all()
    assert kinds == ["opened"]  # one opening, however often the customer writes

    # Turned on, the waiting conversation goes out at once; a resolved one opens again.
    await desk.assignment.configure(enabled=True, default_limit=10)
    await desk.assignment.handle(InboxEvent("assignment", None, {"enabled": True}))
    assert await desk.automatic() == [(customer_id(1), "Anna")]
    await desk.inbox.set_status(customer_id(1), Status.RESOLVED)
    await desk.inbox.record(customer_id(1), 1, "status", "resolved")
    desk.clock.advance(minutes=1)
    await desk.writes(customer_id(1), "Doch noch eine Frage")
    async with desk.db.read() as conn:
        kinds = (await conn.execute(select(activity.c.kind).order_by(activity.c.id))).scalars()
        assert list(kinds) == ["opened", "assign", "status", "opened"]


async def test_racing_events_never_assign_a_conversation_twice(desk: Desk) -> None:
    for username in ("anna", "ben", "cem"):
        await desk.agent(username, username.title())
    # A second assigner on the same database (another process) races the first.
    rival = Assignment(desk.db, desk.clock, desk.inbox, tick_s=3600)
    for n in range(1, 13):
        await desk.writes(customer_id(n))
    await desk.assignment.configure(enabled=True, default_limit=50)

    wake = InboxEvent("availability", None, {})
    await asyncio.gather(*(a.handle(wake) for a in [desk.assignment, rival] * 4))

    given = await desk.automatic()
    assert sorted(c for c, _ in given) == [customer_id(n) for n in range(1, 13)]  # once each
    assert all(a is not None for a in (await desk.assignees()).values())
    per_agent = [sum(1 for _, name in given if name == who) for who in ("Anna", "Ben", "Cem")]
    assert sum(per_agent) == 12


async def test_a_running_gateway_assigns_a_customers_conversation_automatically(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    db = await open_database(gw.settings)
    try:
        agents = Agents(db, ManualClock(), hasher=FAST)
        await agents.create("anna", "Anna Schmidt", Role.OWNER, PASSWORD)
        await agents.create("cem", "Cem Yilmaz", Role.AGENT, PASSWORD)
    finally:
        await db.dispose()
    owner, agent = Browser(gw.url), Browser(gw.url)
    closing: list[Client] = []
    try:
        await owner.sign_in("anna")
        await agent.sign_in("cem")
        # Anna is away; Cem is the only one online.
        token = await owner.csrf("/inbox")
        away = await owner.post("/inbox/availability", {"csrf": token, "available": "0"})
        assert away.status_code == 303
        assert "Set available" in (await owner.get("/inbox")).text
        refused = await agent.post(
            "/inbox/assignment", {"csrf": await agent.csrf("/inbox"), "enabled": "on"}
        )
        assert refused.status_code == 403
        page = await owner.get("/inbox/assignment")
        assert page.status_code == 200
        turned_on = await owner.post(
            "/inbox/assignment", {"csrf": token, "enabled": "on", "default_limit": "5"}
        )
        assert turned_on.status_code == 303
        assert (
            "Automatic assignment is on." in (await owner.get(turned_on.headers["location"])).text
        )

        alice = await customer(relay, tmp_path / "alice")
        closing.append(alice)
        await alice.send_text(gw.gateway.phone, "Wo bleibt mein Paket?")
        deadline = asyncio.get_running_loop().time() + 15
        mine = await agent.get("/inbox?mine=mine")
        while "Paket" not in mine.text:
            assert asyncio.get_running_loop().time() < deadline, mine.text
            await asyncio.sleep(0.05)
            mine = await agent.get("/inbox?mine=mine")
        thread = await agent.get(f"/inbox/c/{alice.account_id}")
        assert "Assigned automatically to Cem Yilmaz" in thread.text
        assert "someone" not in thread.text  # the opening is for reports, not the thread
        team = await owner.get("/inbox/assignment")
        assert "away" in team.text
    finally:
        for client in closing:
            await client.close()
        await owner.close()
        await agent.close()

"""Availability and automatic assignment.

An agent is *available* or *away* (their own toggle), and *online* when available and one of
their sessions was seen within ``online_window_ms`` (every page touches the session, and so
does the live event stream). With automatic assignment on, a customer's message in an open
conversation that no one has gives it to an online agent under their limit of open
conversations, round robin: the agent assigned automatically least recently goes first. When
no one can take it, it waits; waiting conversations are given out, the longest waiting first,
whenever someone can take one again (an agent comes back, a conversation is resolved or
handed back, the settings change, and at least every ``tick_s`` seconds, for agents whose
sessions came back to life).

The same listener records ``opened`` in the activity line when a customer writes into a new
or resolved conversation: the start of what reports measure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import func, insert, select, update

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.logging import get_logger
from tresen.gateway.inbox.conversations import Conversations
from tresen.gateway.inbox.events import InboxEvent, Listener
from tresen.gateway.inbox.i18n import Refused
from tresen.gateway.schema import agent_sessions, agents, assignment_settings

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Assignment",
    "AssignmentSettings",
    "Member",
    "next_agent",
]

log = get_logger(__name__)

DEFAULT_LIMIT = 10
MAX_LIMIT = 500
ONLINE_WINDOW_MS = 2 * 60 * 1000
TICK_S = 30.0
BATCH = 100


@dataclass(frozen=True, slots=True)
class AssignmentSettings:
    enabled: bool = False
    default_limit: int = DEFAULT_LIMIT


@dataclass(frozen=True, slots=True)
class Member:
    """An agent as automatic assignment sees them."""

    id: int
    name: str
    available: bool
    online: bool
    open: int
    own_limit: int | None
    limit: int
    turn: int | None

    @property
    def can_take(self) -> bool:
        return self.online and self.open < self.limit


def next_agent(members: Sequence[Member]) -> Member | None:
    """Who takes the next conversation: of those who can take one, the one assigned
    automatically least recently (never assigned first; then the oldest turn; then by id)."""
    able = [m for m in members if m.can_take]
    if not able:
        return None
    return min(able, key=lambda m: (m.turn is not None, m.turn or 0, m.id))


def check_limit(limit: int) -> int:
    if not 0 <= limit <= MAX_LIMIT:
        raise Refused("a limit is a number from 0 to {high}", high=MAX_LIMIT)
    return limit


class Assignment:
    """Availability, the business's assignment settings, and the listener that assigns."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        conversations: Conversations,
        *,
        online_window_ms: int = ONLINE_WINDOW_MS,
        tick_s: float = TICK_S,
        follow_messages: bool = True,
    ) -> None:
        """``follow_messages`` False: customer messages reach ``handle`` from automation
        (which keeps the conversations its bot answers), not from the hub."""
        self.db = db
        self.clock = clock
        self.conversations = conversations
        self.hub = conversations.hub
        self.online_window_ms = online_window_ms
        self.tick_s = tick_s
        self.follow_messages = follow_messages
        # One assigner at a time in this process: the limits are counted, then used.
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # --- settings and availability -------------------------------------------------------------

    async def settings(self) -> AssignmentSettings:
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(assignment_settings).where(assignment_settings.c.id == 1))
            ).first()
        if row is None:
            return AssignmentSettings()
        return AssignmentSettings(bool(row.enabled), int(row.default_limit))

    async def configure(self, *, enabled: bool, default_limit: int) -> AssignmentSettings:
        """Turn automatic assignment on or off, with the business's limit per agent."""
        check_limit(default_limit)
        values = {
            "enabled": int(enabled),
            "default_limit": default_limit,
            "updated_ms": self.clock.now_ms(),
        }
        async with self.db.write() as conn:
            changed = await conn.execute(
                update(assignment_settings).where(assignment_settings.c.id == 1).values(**values)
            )
            if not changed.rowcount:
                await conn.execute(insert(assignment_settings).values(id=1, **values))
        self.hub.publish(InboxEvent("assignment", None, {"enabled": enabled}))
        return AssignmentSettings(enabled, default_limit)

    async def set_limit(self, agent_id: int, limit: int | None) -> None:
        """The agent's own limit of open conversations (``None``: the business's)."""
        if limit is not None:
            check_limit(limit)
        await self._update_agent(agent_id, open_limit=limit)
        self.hub.publish(InboxEvent("assignment", None, {"agent_id": agent_id}))

    async def set_available(self, agent_id: int, available: bool) -> None:
        """Available, or away (nothing is assigned to them automatically)."""
        away = None if available else self.clock.now_ms()
        await self._update_agent(agent_id, away_ms=away)
        self.hub.publish(
            InboxEvent("availability", None, {"agent_id": agent_id, "available": available})
        )

    async def _update_agent(self, agent_id: int, **values: int | None) -> None:
        async with self.db.write() as conn:
            changed = await conn.execute(
                update(agents).where(agents.c.id == agent_id).values(**values)
            )
            if not changed.rowcount:
                raise Refused("there is no such agent")

    async def team(self) -> list[Member]:
        """Every active agent: availability, whether online, open conversations, limit."""
        settings = await self.settings()
        now = self.clock.now_ms()
        counts = await self.conversations.open_counts()
        async with self.db.read() as conn:
            seen = dict(
                (
                    await conn.execute(
                        select(agent_sessions.c.agent_id, func.max(agent_sessions.c.last_seen_ms))
                        .where(agent_sessions.c.expires_ms > now)
                        .group_by(agent_sessions.c.agent_id)
                    )
                ).all()
            )
            rows = (
                await conn.execute(
                    select(agents).where(agents.c.disabled_ms.is_(None)).order_by(agents.c.id)
                )
            ).all()
        members = []
        for row in rows:
            available = row.away_ms is None
            last_seen = seen.get(row.id)
            online = (
                available and last_seen is not None and now - last_seen <= (self.online_window_ms)
            )
            members.append(
                Member(
                    id=int(row.id),
                    name=str(row.display_name),
                    available=available,
                    online=online,
                    open=counts.get(int(row.id), 0),
                    own_limit=row.open_limit,
                    limit=settings.default_limit if row.open_limit is None else row.open_limit,
                    turn=row.assigned_turn,
                )
            )
        return members

    # --- assigning -----------------------------------------------------------------------------

    async def drain(self) -> int:
        """Give waiting conversations to agents who can take them; how many were given."""
        async with self._lock:
            if not (await self.settings()).enabled:
                return 0
            given = 0
            while True:
                waiting = await self.conversations.waiting(limit=BATCH)
                if not waiting:
                    return given
                members = {m.id: m for m in await self.team()}
                if next_agent(list(members.values())) is None:
                    return given
                before = given
                for contact in waiting:
                    chosen = next_agent(list(members.values()))
                    if chosen is None:
                        return given
                    if not await self.conversations.take(contact, chosen.id):
                        continue  # someone else took it (or resolved it) meanwhile
                    turn = await self._next_turn(chosen.id)
                    members[chosen.id] = replace(chosen, open=chosen.open + 1, turn=turn)
                    await self.conversations.record(contact, None, "assign", chosen.name)
                    given += 1
                if len(waiting) < BATCH or given == before:
                    return given

    async def _next_turn(self, agent_id: int) -> int:
        async with self.db.write() as conn:
            last = (await conn.execute(select(func.max(agents.c.assigned_turn)))).scalar_one()
            turn = int(last or 0) + 1
            await conn.execute(
                update(agents).where(agents.c.id == agent_id).values(assigned_turn=turn)
            )
        return turn

    async def handle(self, event: InboxEvent | None) -> None:
        """What one event (``None``: a tick) means for openings and assignments."""
        if event is None or event.kind in {"conversation", "availability", "assignment", "lagged"}:
            await self.drain()
        elif (
            self.follow_messages
            and event.kind == "message"
            and event.data.get("direction") == "in"
            and event.contact
        ):
            await self.customer_wrote(event.contact)

    async def customer_wrote(self, contact: str) -> None:
        """A customer message of the team's: record an opening, and give it out."""
        await self.conversations.opening(contact)
        await self.drain()

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Listen to the hub (inside the running event loop) until ``close()``."""
        if self._task is not None:
            raise RuntimeError("automatic assignment is running already")
        listener = self.hub.subscribe()
        self._task = asyncio.create_task(self._run(listener), name="inbox-assignment")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, listener: Listener) -> None:
        try:
            while True:
                event: InboxEvent | None = None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.tick_s):
                        event = await listener.get()
                try:
                    await self.handle(event)
                except Exception as exc:
                    # A failure (the database away for a moment) waits for the next event or
                    # tick; it never ends the listener or the gateway.
                    log.warning("automatic assignment failed", error=repr(exc))
        finally:
            listener.close()

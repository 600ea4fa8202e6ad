"""The inbox's conversations: one per customer, with a status, an assignee and unread messages.

Built on the gateway's own record of every message (``messages``, ``contacts``): the list
shows each customer's latest message, how many arrived since an agent last opened the
conversation, and how much of the 24-hour window is left for free-form answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.gateway.inbox.events import Hub, InboxEvent
from tresen.gateway.inbox.i18n import Refused
from tresen.gateway.schema import (
    activity,
    contacts,
    conversation_labels,
    conversations,
    labels,
    messages,
)

__all__ = [
    "MAX_NOTE",
    "WINDOW_MS",
    "Activity",
    "Conversation",
    "Conversations",
    "Mine",
    "Shown",
    "Status",
    "ThreadMessage",
    "preview",
]

WINDOW_MS = 24 * 3600 * 1000
PAGE = 50
MAX_NOTE = 4096
MAX_LABELS = 200
LABEL = re.compile(r"^[\w-]{1,32}$")


class Status(StrEnum):
    OPEN = "open"
    PENDING = "pending"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


class Mine(StrEnum):
    """Whose conversations a list shows."""

    MINE = "mine"
    UNASSIGNED = "unassigned"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Conversation:
    contact: str
    name: str
    phone: str | None
    status: Status
    snoozed_until_ms: int | None
    assignee: int | None
    last_ms: int
    preview: str
    unread: int
    window_left_ms: int
    labels: tuple[str, ...] = ()

    @property
    def window_open(self) -> bool:
        return self.window_left_ms > 0


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    wamid: str
    incoming: bool
    kind: str
    text: str
    status: str
    error: str | None
    at_ms: int


@dataclass(frozen=True, slots=True)
class Activity:
    """Something the team did in a conversation (a private note, an assignment, …)."""

    kind: str
    agent_id: int | None
    detail: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class Shown:
    """A conversation opened in the thread view: its messages and the team's activity, each
    oldest first."""

    conversation: Conversation
    messages: list[ThreadMessage]
    activity: list[Activity]

    def timeline(self) -> list[ThreadMessage | Activity]:
        """Messages and activity in one line of time."""
        both: list[ThreadMessage | Activity] = [*self.messages, *self.activity]
        return sorted(both, key=lambda item: item.at_ms)


def preview(kind: str, content: dict[str, Any], template_name: str | None = None) -> str:
    """One line of a message for people: its text, or what kind of message it is."""
    if kind == "text":
        return str(content.get("body", ""))
    if kind == "reaction":
        emoji = content.get("emoji")
        return f"Reacted {emoji}" if emoji else "Removed a reaction"
    if kind == "button":
        return str(content.get("text", ""))
    if kind == "interactive":
        answer = content.get(str(content.get("type", "")), {})
        if isinstance(answer, dict) and "title" in answer:
            return f"Chose “{answer['title']}”"
        body = content.get("body", {})
        return str(body.get("text", "")) if isinstance(body, dict) else ""
    if kind == "template":
        name = template_name or content.get("name") or "a template"
        return f"Template {name}"
    return "A message this inbox cannot show yet"


class Conversations:
    def __init__(self, db: Database, clock: Clock, hub: Hub | None = None) -> None:
        self.db = db
        self.clock = clock
        self.hub = hub or Hub()

    async def list(
        self,
        *,
        me: int,
        mine: Mine = Mine.ALL,
        status: Status | None = Status.OPEN,
        label: str | None = None,
        limit: int = PAGE,
    ) -> list[Conversation]:
        """The conversations, the latest message first."""
        last = (
            select(messages.c.contact, func.max(messages.c.created_ms).label("last_ms"))
            .group_by(messages.c.contact)
            .subquery()
        )
        query = (
            select(contacts, conversations, last.c.last_ms)
            .join(last, last.c.contact == contacts.c.account_id)
            .outerjoin(conversations, conversations.c.contact == contacts.c.account_id)
            .order_by(last.c.last_ms.desc())
            .limit(min(limit, 500))
        )
        if mine is Mine.MINE:
            query = query.where(conversations.c.assignee == me)
        elif mine is Mine.UNASSIGNED:
            query = query.where(conversations.c.assignee.is_(None))
        if label is not None:
            tagged = (
                select(conversation_labels.c.contact)
                .join(labels, labels.c.id == conversation_labels.c.label_id)
                .where(labels.c.name == label)
            )
            query = query.where(contacts.c.account_id.in_(tagged))
        reopened = self._reopened(self.clock.now_ms())
        if status is Status.OPEN:
            query = query.where(
                or_(
                    conversations.c.status.is_(None),
                    conversations.c.status == str(Status.OPEN),
                    reopened,
                )
            )
        elif status is not None:
            query = query.where(conversations.c.status == str(status), ~reopened)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
            return [await self._conversation(conn, row) for row in rows]

    @staticmethod
    def _reopened(now_ms: int) -> Any:
        """Conversations that are open again: snoozed until now, or waiting (pending, snoozed,
        resolved) when the customer wrote after the status was set."""
        waiting = conversations.c.status.in_(
            [str(Status.PENDING), str(Status.SNOOZED), str(Status.RESOLVED)]
        )
        return or_(
            and_(
                conversations.c.status == str(Status.SNOOZED),
                conversations.c.snoozed_until_ms <= now_ms,
            ),
            and_(waiting, contacts.c.last_inbound_ms > conversations.c.status_ms),
        )

    def _status(self, row: Any) -> Status:
        if not row.status:
            return Status.OPEN
        status = Status(row.status)
        if status is Status.OPEN:
            return status
        if status is Status.SNOOZED and (row.snoozed_until_ms or 0) <= self.clock.now_ms():
            return Status.OPEN
        if (row.last_inbound_ms or 0) > (row.status_ms or 0):
            return Status.OPEN
        return status

    async def _conversation(self, conn: AsyncConnection, row: Any) -> Conversation:
        read_ms = row.read_ms or 0
        latest = (
            await conn.execute(
                select(messages.c.type, messages.c.content, messages.c.template_name)
                .where(messages.c.contact == row.account_id)
                .order_by(messages.c.created_ms.desc())
                .limit(1)
            )
        ).first()
        unread = (
            await conn.execute(
                select(func.count())
                .select_from(messages)
                .where(
                    messages.c.contact == row.account_id,
                    messages.c.direction == "in",
                    messages.c.created_ms > read_ms,
                )
            )
        ).scalar_one()
        text = (
            ""
            if latest is None
            else preview(latest.type, json.loads(latest.content), latest.template_name)
        )
        tags = (
            (
                await conn.execute(
                    select(labels.c.name)
                    .join(conversation_labels, conversation_labels.c.label_id == labels.c.id)
                    .where(conversation_labels.c.contact == row.account_id)
                    .order_by(labels.c.name)
                )
            )
            .scalars()
            .all()
        )
        window_end = (row.last_inbound_ms or 0) + WINDOW_MS
        return Conversation(
            contact=row.account_id,
            name=row.profile_name or row.phone or row.user_id,
            phone=row.phone,
            status=self._status(row),
            snoozed_until_ms=row.snoozed_until_ms,
            assignee=row.assignee,
            last_ms=int(row.last_ms or 0),
            preview=text[:160],
            unread=int(unread),
            window_left_ms=max(0, window_end - self.clock.now_ms()),
            labels=tuple(str(t) for t in tags),
        )

    async def show(self, contact: str, *, limit: int = 200) -> Shown | None:
        """A conversation with its latest messages, oldest first; marked read."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        contacts, conversations, func.max(messages.c.created_ms).label("last_ms")
                    )
                    .outerjoin(conversations, conversations.c.contact == contacts.c.account_id)
                    .outerjoin(messages, messages.c.contact == contacts.c.account_id)
                    .where(contacts.c.account_id == contact)
                    .group_by(*contacts.c, *conversations.c)
                )
            ).first()
            if row is None:
                return None
            conversation = await self._conversation(conn, row)
            found = (
                await conn.execute(
                    select(messages)
                    .where(messages.c.contact == contact)
                    .order_by(messages.c.created_ms.desc())
                    .limit(limit)
                )
            ).all()
            done = (
                await conn.execute(
                    select(activity)
                    .where(activity.c.contact == contact)
                    .order_by(activity.c.at_ms.desc(), activity.c.id.desc())
                    .limit(limit)
                )
            ).all()
        thread = [
            ThreadMessage(
                wamid=m.wamid,
                incoming=m.direction == "in",
                kind=m.type,
                text=preview(m.type, json.loads(m.content), m.template_name),
                status=m.status,
                error=m.error,
                at_ms=int(m.created_ms),
            )
            for m in reversed(found)
        ]
        team = [
            Activity(str(a.kind), a.agent_id, str(a.detail), int(a.at_ms)) for a in reversed(done)
        ]
        await self.mark_read(contact)
        return Shown(conversation, thread, team)

    async def all_labels(self) -> tuple[str, ...]:
        """Every label of the business, by name."""
        async with self.db.read() as conn:
            names = await conn.execute(select(labels.c.name).order_by(labels.c.name))
            return tuple(str(n) for n in names.scalars())

    async def label(self, contact: str, name: str) -> str:
        """Put the label ``name`` on the conversation (made when it is new)."""
        name = name.strip().lower()
        if not LABEL.fullmatch(name):
            raise Refused("a label is 1 to 32 letters, digits, dashes or underscores")
        async with self.db.write() as conn:
            found = (
                await conn.execute(select(labels.c.id).where(labels.c.name == name))
            ).scalar_one_or_none()
            if found is None:
                count = (await conn.execute(select(func.count()).select_from(labels))).scalar_one()
                if count >= MAX_LABELS:
                    raise Refused("a business has at most {n} labels", n=MAX_LABELS)
                await conn.execute(insert(labels).values(name=name, created_ms=self.clock.now_ms()))
                found = (
                    await conn.execute(select(labels.c.id).where(labels.c.name == name))
                ).scalar_one()
            have = await conn.execute(
                select(conversation_labels.c.label_id).where(
                    conversation_labels.c.contact == contact,
                    conversation_labels.c.label_id == found,
                )
            )
            if have.first() is None:
                await conn.execute(
                    insert(conversation_labels).values(contact=contact, label_id=found)
                )
        return name

    async def unlabel(self, contact: str, name: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                delete(conversation_labels).where(
                    conversation_labels.c.contact == contact,
                    conversation_labels.c.label_id.in_(
                        select(labels.c.id).where(labels.c.name == name)
                    ),
                )
            )

    async def record(self, contact: str, agent_id: int, kind: str, detail: str) -> None:
        """Add to the conversation's activity line (a note is only ever kept here)."""
        async with self.db.write() as conn:
            await conn.execute(
                insert(activity).values(
                    contact=contact,
                    agent_id=agent_id,
                    kind=kind,
                    detail=detail[:MAX_NOTE],
                    at_ms=self.clock.now_ms(),
                )
            )
        self.hub.publish(InboxEvent("activity", contact, {"kind": kind, "agent_id": agent_id}))

    async def unread_count(self) -> int:
        """How many conversations have messages from the customer that no agent has read."""
        query = (
            select(func.count())
            .select_from(contacts)
            .outerjoin(conversations, conversations.c.contact == contacts.c.account_id)
            .where(contacts.c.last_inbound_ms > func.coalesce(conversations.c.read_ms, 0))
        )
        async with self.db.read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def mark_read(self, contact: str) -> None:
        await self._upsert(contact, read_ms=self.clock.now_ms())

    async def assign(self, contact: str, agent_id: int | None) -> None:
        await self._upsert(contact, assignee=agent_id)

    async def set_status(
        self, contact: str, status: Status, snoozed_until_ms: int | None = None
    ) -> None:
        if status is Status.SNOOZED and (
            snoozed_until_ms is None or snoozed_until_ms <= self.clock.now_ms()
        ):
            raise Refused("snooze until a time in the future")
        await self._upsert(
            contact,
            status=str(status),
            status_ms=self.clock.now_ms(),
            snoozed_until_ms=snoozed_until_ms if status is Status.SNOOZED else None,
        )

    async def _upsert(self, contact: str, **values: Any) -> None:
        now = self.clock.now_ms()
        row = {"contact": contact, "status": str(Status.OPEN), "read_ms": 0, "updated_ms": now}
        row.update(values)
        changes = {**values, "updated_ms": now}
        async with self.db.write() as conn:
            if self.db.is_sqlite:
                statement: Any = sqlite.insert(conversations).values(**row)
            else:
                statement = postgresql.insert(conversations).values(**row)
            await conn.execute(
                statement.on_conflict_do_update(index_elements=["contact"], set_=changes)
            )
        if set(values) - {"read_ms"}:
            self.hub.publish(InboxEvent("conversation", contact, dict(values)))

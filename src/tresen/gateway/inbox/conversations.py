"""The inbox's conversations: one per customer, with a status, an assignee and unread messages.

Built on the gateway's own record of every message (``messages``, ``contacts``): the list
shows each customer's latest message, how many arrived since an agent last opened the
conversation, and how much of the 24-hour window is left for free-form answers.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.gateway.inbox.events import Hub, InboxEvent
from tresen.gateway.inbox.i18n import Refused
from tresen.gateway.inbox.labels import Labels
from tresen.gateway.inbox.render import (
    Quote,
    Reacted,
    SignedTemplates,
    Stored,
    View,
    arrange,
    fill_template,
)
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
    "ConversationState",
    "Conversations",
    "Mine",
    "Shown",
    "Status",
    "ThreadMessage",
    "preview",
    "where_listed",
]

WINDOW_MS = 24 * 3600 * 1000
PAGE = 50
MEDIA_WORDS = {
    "image": "📷 Photo",
    "video": "🎥 Video",
    "audio": "🎵 Audio",
    "document": "📄 Document",
    "sticker": "Sticker",
}
STATES_CACHED = 4096
MAX_NOTE = 4096


class Status(StrEnum):
    OPEN = "open"
    PENDING = "pending"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"
    BOT = "bot"
    """The bot answers (the FAQ bot or the business's own); people take over on hand-over."""


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
class ConversationState:
    """A conversation's status as stored (``None``: no row yet) and who has it."""

    status: Status | None
    status_ms: int
    assignee: int | None


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    wamid: str
    incoming: bool
    kind: str
    text: str
    status: str
    error: str | None
    at_ms: int
    view: View | None = None
    """How the customer sees it (``None``: only ``text`` is known)."""
    quoted: Quote | None = None
    reactions: tuple[Reacted, ...] = ()
    business_reaction: str = ""
    """The emoji the business put on it (empty: none)."""


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
    if kind in MEDIA_WORDS:
        caption, filename = content.get("caption"), content.get("filename")
        said = caption if isinstance(caption, str) and caption else filename
        if kind == "audio" and content.get("voice") is True:
            return "🎤 Voice message"
        word = MEDIA_WORDS[kind]
        return f"{word}: {said}" if isinstance(said, str) and said else word
    return "A message this inbox cannot show yet"


_LISTED = (
    contacts.c.account_id,
    contacts.c.phone,
    contacts.c.user_id,
    contacts.c.profile_name,
    contacts.c.last_inbound_ms,
    conversations.c.status,
    conversations.c.assignee,
    conversations.c.snoozed_until_ms,
    conversations.c.status_ms,
    conversations.c.read_ms,
)
"""The columns of a conversation in the list, from ``contacts`` outer-joined with
``conversations``."""


def where_listed(
    query: Any,
    *,
    me: int,
    mine: Mine,
    status: Status | None,
    label: str | None,
    now_ms: int,
) -> Any:
    """``query`` (over ``contacts`` outer-joined with ``conversations``) narrowed to the
    conversations the list shows with these filters."""
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
    reopened = Conversations._reopened(now_ms)
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
    return query


class Conversations:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        hub: Hub | None = None,
        *,
        templates: SignedTemplates | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.hub = hub or Hub()
        self.labels = Labels(db, clock, self.hub)
        self.templates = templates
        # Read for every customer message the bot looks at; this object is the one writer
        # of these rows (a gateway is one process), so it drops a row's copy when it writes.
        self._states: OrderedDict[str, ConversationState] = OrderedDict()
        self._writes = 0

    async def state(self, contact: str) -> ConversationState:
        """The conversation's status and assignee as they are now."""
        cached = self._states.get(contact)
        if cached is not None:
            self._states.move_to_end(contact)
            return cached
        writes = self._writes
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        conversations.c.status,
                        conversations.c.status_ms,
                        conversations.c.assignee,
                    ).where(conversations.c.contact == contact)
                )
            ).first()
        state = ConversationState(None, 0, None)
        if row is not None:
            state = ConversationState(Status(row.status), int(row.status_ms or 0), row.assignee)
        if writes == self._writes:  # a write meanwhile may have made what was read stale
            self._states[contact] = state
            if len(self._states) > STATES_CACHED:
                self._states.popitem(last=False)
        return state

    def _written(self, contact: str) -> None:
        self._writes += 1
        self._states.pop(contact, None)

    async def list(
        self,
        *,
        me: int,
        mine: Mine = Mine.ALL,
        status: Status | None = Status.OPEN,
        label: str | None = None,
        limit: int = PAGE,
        after: tuple[int, str] | None = None,
    ) -> list[Conversation]:
        """The conversations, the latest message first; ``after`` the (``last_ms``,
        ``contact``) of the last one of the previous page."""
        # The latest message's time is kept on the contact (by the database's triggers), so
        # the first page is the first rows of its index.
        latest = contacts.c.last_message_ms
        query = (
            select(*_LISTED, latest.label("last_ms"))
            .select_from(contacts)
            .outerjoin(conversations, conversations.c.contact == contacts.c.account_id)
            .where(latest.is_not(None))
            .order_by(latest.desc(), contacts.c.account_id.desc())
            .limit(max(1, min(limit, 500)))
        )
        if after is not None:
            query = query.where(
                or_(
                    latest < after[0],
                    and_(latest == after[0], contacts.c.account_id < after[1]),
                )
            )
        query = where_listed(
            query, me=me, mine=mine, status=status, label=label, now_ms=self.clock.now_ms()
        )
        async with self.db.read() as conn:
            return list(await self._described(conn, query.subquery("page")))

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
        page = (
            select(*_LISTED, literal(int(row.last_ms or 0)).label("last_ms"))
            .select_from(contacts)
            .outerjoin(conversations, conversations.c.contact == contacts.c.account_id)
            .where(contacts.c.account_id == row.account_id)
            .subquery("page")
        )
        return (await self._described(conn, page))[0]

    async def _described(self, conn: AsyncConnection, page: Any) -> tuple[Conversation, ...]:
        """The conversations of ``page`` (a subquery of ``_LISTED`` and ``last_ms``), each with
        its latest message, unread count and labels: two queries, whatever the page's size."""
        latest = (
            select(messages.c.wamid)
            .where(messages.c.contact == page.c.account_id)
            .order_by(messages.c.created_ms.desc())
            .limit(1)
            .scalar_subquery()
        )
        unread = (
            select(func.count())
            .select_from(messages)
            .where(
                messages.c.contact == page.c.account_id,
                messages.c.direction == "in",
                messages.c.created_ms > func.coalesce(page.c.read_ms, 0),
            )
            .scalar_subquery()
        )
        rows_ = select(page, latest.label("latest"), unread.label("unread")).subquery("counted")
        query = (
            select(rows_, messages.c.type, messages.c.content, messages.c.template_name)
            .select_from(rows_)
            .outerjoin(messages, messages.c.wamid == rows_.c.latest)
            .order_by(rows_.c.last_ms.desc(), rows_.c.account_id.desc())
        )
        rows = (await conn.execute(query)).all()
        tags: dict[str, list[str]] = {}
        if rows:
            found = await conn.execute(
                select(conversation_labels.c.contact, labels.c.name)
                .join(labels, labels.c.id == conversation_labels.c.label_id)
                .where(conversation_labels.c.contact.in_([r.account_id for r in rows]))
                .order_by(labels.c.name)
            )
            for contact, name in found:
                tags.setdefault(str(contact), []).append(str(name))
        now = self.clock.now_ms()
        listed: list[Conversation] = []
        for row in rows:
            text = (
                ""
                if row.type is None
                else preview(row.type, json.loads(row.content), row.template_name)
            )
            window_end = (row.last_inbound_ms or 0) + WINDOW_MS
            listed.append(
                Conversation(
                    contact=row.account_id,
                    name=row.profile_name or row.phone or row.user_id,
                    phone=row.phone,
                    status=self._status(row),
                    snoozed_until_ms=row.snoozed_until_ms,
                    assignee=row.assignee,
                    last_ms=int(row.last_ms or 0),
                    preview=text[:160],
                    unread=int(row.unread),
                    window_left_ms=max(0, window_end - now),
                    labels=tuple(tags.get(row.account_id, ())),
                )
            )
        return tuple(listed)

    async def show(self, contact: str, *, limit: int = 200, mark_read: bool = True) -> Shown | None:
        """A conversation with its latest messages, oldest first; marked read (unless not
        ``mark_read``)."""
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
            rows = list(reversed(found))
            shown_ids = {m.wamid for m in rows}
            quoted_ids = {m.context_wamid for m in rows if m.context_wamid} - shown_ids
            earlier = (
                (
                    await conn.execute(
                        select(messages).where(
                            messages.c.contact == contact,
                            messages.c.wamid.in_(sorted(quoted_ids)[:limit]),
                        )
                    )
                ).all()
                if quoted_ids
                else []
            )
        stored = [await self._stored(m) for m in rows]
        threaded = {t.wamid: t for t in arrange(stored, [await self._stored(m) for m in earlier])}
        thread = [
            ThreadMessage(
                wamid=m.wamid,
                incoming=m.direction == "in",
                kind=m.type,
                text=preview(m.type, json.loads(m.content), m.template_name),
                status=m.status,
                error=m.error,
                at_ms=int(m.created_ms),
                view=threaded[m.wamid].view,
                quoted=threaded[m.wamid].quoted,
                reactions=threaded[m.wamid].reactions,
                business_reaction=threaded[m.wamid].business_reaction,
            )
            for m in rows
            if m.wamid in threaded
        ]
        team = [
            Activity(str(a.kind), a.agent_id, str(a.detail), int(a.at_ms)) for a in reversed(done)
        ]
        if mark_read:
            await self.mark_read(contact)
        return Shown(conversation, thread, team)

    async def _stored(self, row: Any) -> Stored:
        """A message row as :mod:`render` reads it; an outbound template filled in as its
        customer saw it, when its signed template is at hand."""
        content = json.loads(row.content)
        if not isinstance(content, dict):
            content = {}
        stored = Stored(
            row.wamid,
            row.direction == "in",
            row.type,
            content,
            row.context_wamid,
            error_code=row.error_code,
        )
        if row.type != "template" or row.direction == "in" or self.templates is None:
            return stored
        language = content.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        signed = await self.templates.signed(str(content.get("name", "")), str(code or ""))
        if signed is None:
            return stored
        try:
            rendered = fill_template(signed, content.get("components") or [])
        except (ValueError, TypeError, AttributeError):
            return stored  # sent by another device: its parameters are not kept here
        return Stored(
            stored.wamid, stored.incoming, stored.kind, content, stored.context_wamid, rendered
        )

    async def record(self, contact: str, agent_id: int | None, kind: str, detail: str) -> None:
        """Add to the conversation's activity line (a note is only ever kept here);
        ``agent_id`` ``None``: the inbox did it by itself."""
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
        try:
            async with self.db.write() as conn:
                if self.db.is_sqlite:
                    statement: Any = sqlite.insert(conversations).values(**row)
                else:
                    statement = postgresql.insert(conversations).values(**row)
                await conn.execute(
                    statement.on_conflict_do_update(index_elements=["contact"], set_=changes)
                )
        finally:
            self._written(contact)
        if set(values) - {"read_ms"}:
            self.hub.publish(InboxEvent("conversation", contact, dict(values)))

    # --- automatic assignment and reports ------------------------------------------------------

    def _is_open(self, now_ms: int) -> Any:
        """Open now, as the list shows it (needs ``contacts`` joined)."""
        return or_(
            conversations.c.status.is_(None),
            conversations.c.status == str(Status.OPEN),
            self._reopened(now_ms),
        )

    async def opening(self, contact: str) -> bool:
        """Record ``opened`` when the customer wrote into a new or resolved conversation (the
        start of what reports measure); whether it was one."""
        async with self.db.write() as conn:
            latest = (
                await conn.execute(
                    select(activity.c.kind)
                    .where(
                        activity.c.contact == contact,
                        or_(
                            activity.c.kind == "opened",
                            and_(activity.c.kind == "status", activity.c.detail == "resolved"),
                        ),
                    )
                    .order_by(activity.c.at_ms.desc(), activity.c.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if latest == "opened":
                return False
            await conn.execute(
                insert(activity).values(
                    contact=contact,
                    agent_id=None,
                    kind="opened",
                    detail="",
                    at_ms=self.clock.now_ms(),
                )
            )
        self.hub.publish(InboxEvent("activity", contact, {"kind": "opened", "agent_id": None}))
        return True

    async def take(self, contact: str, agent_id: int) -> bool:
        """Assign an open conversation to ``agent_id`` only if no one has it; whether it was
        assigned. One statement decides, so two racing assigners cannot both take it."""
        now = self.clock.now_ms()
        row = {"contact": contact, "status": str(Status.OPEN), "read_ms": 0, "updated_ms": now}
        last_inbound = (
            select(contacts.c.last_inbound_ms)
            .where(contacts.c.account_id == contact)
            .scalar_subquery()
        )
        waiting = conversations.c.status.in_(
            [str(Status.PENDING), str(Status.SNOOZED), str(Status.RESOLVED)]
        )
        still_open = or_(
            conversations.c.status == str(Status.OPEN),
            and_(
                conversations.c.status == str(Status.SNOOZED),
                conversations.c.snoozed_until_ms <= now,
            ),
            and_(waiting, last_inbound > func.coalesce(conversations.c.status_ms, 0)),
        )
        try:
            async with self.db.write() as conn:
                if self.db.is_sqlite:
                    made: Any = sqlite.insert(conversations).values(**row)
                else:
                    made = postgresql.insert(conversations).values(**row)
                await conn.execute(made.on_conflict_do_nothing(index_elements=["contact"]))
                result = await conn.execute(
                    update(conversations)
                    .where(
                        conversations.c.contact == contact,
                        conversations.c.assignee.is_(None),
                        still_open,
                    )
                    .values(assignee=agent_id, updated_ms=now)
                )
                taken = bool(result.rowcount)
        finally:
            self._written(contact)
        if taken:
            self.hub.publish(InboxEvent("conversation", contact, {"assignee": agent_id}))
        return taken

    async def open_counts(self) -> dict[int, int]:
        """How many open conversations each agent has."""
        query = (
            select(conversations.c.assignee, func.count())
            .select_from(
                conversations.join(contacts, contacts.c.account_id == conversations.c.contact)
            )
            .where(conversations.c.assignee.is_not(None), self._is_open(self.clock.now_ms()))
            .group_by(conversations.c.assignee)
        )
        async with self.db.read() as conn:
            return {int(a): int(n) for a, n in (await conn.execute(query)).all()}

    async def waiting(self, *, limit: int = 100) -> tuple[str, ...]:
        """Open conversations no one has, in which the customer wrote: the longest waiting
        (by their latest opening, else the customer's latest message) first."""
        opened = (
            select(activity.c.contact, func.max(activity.c.at_ms).label("at_ms"))
            .where(activity.c.kind == "opened")
            .group_by(activity.c.contact)
            .subquery()
        )
        since = func.coalesce(opened.c.at_ms, contacts.c.last_inbound_ms)
        query = (
            select(contacts.c.account_id)
            .outerjoin(conversations, conversations.c.contact == contacts.c.account_id)
            .outerjoin(opened, opened.c.contact == contacts.c.account_id)
            .where(
                contacts.c.last_inbound_ms.is_not(None),
                conversations.c.assignee.is_(None),
                self._is_open(self.clock.now_ms()),
            )
            .order_by(since, contacts.c.account_id)
            .limit(min(limit, 500))
        )
        async with self.db.read() as conn:
            return tuple(str(c) for c in (await conn.execute(query)).scalars())

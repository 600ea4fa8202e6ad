"""Labels: named tags on conversations, put on and taken off in the thread, managed (counted,
renamed, removed) in the settings. Renaming or removing a label records it in the activity
line of every conversation that carries it, so reports by label, which replay the activity
alone, follow it."""

from __future__ import annotations

import re

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.gateway.inbox.events import Hub, InboxEvent
from tresen.gateway.inbox.i18n import Refused
from tresen.gateway.schema import activity, conversation_labels, labels

__all__ = ["LABEL", "MAX_LABELS", "Labels"]

MAX_LABELS = 200
LABEL = re.compile(r"^[\w-]{1,32}$")


class Labels:
    def __init__(self, db: Database, clock: Clock, hub: Hub) -> None:
        self.db = db
        self.clock = clock
        self.hub = hub

    async def all(self) -> tuple[str, ...]:
        """Every label of the business, by name."""
        async with self.db.read() as conn:
            names = await conn.execute(select(labels.c.name).order_by(labels.c.name))
            return tuple(str(n) for n in names.scalars())

    async def put(self, contact: str, name: str) -> str:
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

    async def take_off(self, contact: str, name: str) -> None:
        """Take the label ``name`` off the conversation."""
        async with self.db.write() as conn:
            await conn.execute(
                delete(conversation_labels).where(
                    conversation_labels.c.contact == contact,
                    conversation_labels.c.label_id.in_(
                        select(labels.c.id).where(labels.c.name == name)
                    ),
                )
            )

    async def counts(self) -> list[tuple[str, int]]:
        """Every label by name, with how many conversations carry it."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(labels.c.name, func.count(conversation_labels.c.contact))
                .select_from(labels)
                .outerjoin(conversation_labels, conversation_labels.c.label_id == labels.c.id)
                .group_by(labels.c.id, labels.c.name)
                .order_by(labels.c.name)
            )
            return [(str(name), int(count)) for name, count in rows]

    async def rename(self, old: str, new: str, *, agent_id: int) -> str:
        """Give a label another name; the conversations that carry it keep it. Their
        activity lines record the change (``unlabel`` the old, ``label`` the new name), so
        reports by label, which replay the activity alone, follow it."""
        new = new.strip().lower()
        if not LABEL.fullmatch(new):
            raise Refused("a label is 1 to 32 letters, digits, dashes or underscores")
        async with self.db.write() as conn:
            found = await self._label_id(conn, old)
            if new == old:
                return new
            taken = await conn.execute(select(labels.c.id).where(labels.c.name == new))
            if taken.first() is not None:
                raise Refused("there is a label {name} already", name=new)
            await conn.execute(update(labels).where(labels.c.id == found).values(name=new))
            carriers = await self._carriers(conn, found)
            await self._record_all(conn, carriers, agent_id, [("unlabel", old), ("label", new)])
        self._tell_activity(carriers, agent_id, "label")
        return new

    async def remove(self, name: str, *, agent_id: int) -> None:
        """Take a label off every conversation (each activity line records it) and forget it."""
        async with self.db.write() as conn:
            found = await self._label_id(conn, name)
            carriers = await self._carriers(conn, found)
            await conn.execute(
                delete(conversation_labels).where(conversation_labels.c.label_id == found)
            )
            await conn.execute(delete(labels).where(labels.c.id == found))
            await self._record_all(conn, carriers, agent_id, [("unlabel", name)])
        self._tell_activity(carriers, agent_id, "unlabel")

    @staticmethod
    async def _label_id(conn: AsyncConnection, name: str) -> int:
        found = (
            await conn.execute(select(labels.c.id).where(labels.c.name == name))
        ).scalar_one_or_none()
        if found is None:
            raise Refused("there is no label {name}", name=name[:32])
        return int(found)

    @staticmethod
    async def _carriers(conn: AsyncConnection, label_id: int) -> list[str]:
        rows = await conn.execute(
            select(conversation_labels.c.contact).where(conversation_labels.c.label_id == label_id)
        )
        return [str(c) for c in rows.scalars()]

    async def _record_all(
        self,
        conn: AsyncConnection,
        contacts_: list[str],
        agent_id: int,
        entries: list[tuple[str, str]],
    ) -> None:
        if not contacts_:
            return
        now = self.clock.now_ms()
        await conn.execute(
            insert(activity),
            [
                {"contact": c, "agent_id": agent_id, "kind": kind, "detail": detail, "at_ms": now}
                for c in contacts_
                for kind, detail in entries
            ],
        )

    def _tell_activity(self, contacts_: list[str], agent_id: int, kind: str) -> None:
        for contact in contacts_:
            self.hub.publish(InboxEvent("activity", contact, {"kind": kind, "agent_id": agent_id}))

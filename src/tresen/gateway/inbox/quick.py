"""Quick replies: canned answers a reply expands from ``/shortcut``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.fields import TEXT_PATTERN
from tresen.gateway.inbox.i18n import Refused
from tresen.gateway.schema import quick_replies

__all__ = ["QuickReplies", "QuickReply", "QuickReplyError"]

SHORTCUT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_TEXT = re.compile(TEXT_PATTERN)
MAX_TEXT = 4096
MAX_QUICK_REPLIES = 500


class QuickReplyError(Refused):
    """A refused quick reply, with a sentence for the person who asked."""


@dataclass(frozen=True, slots=True)
class QuickReply:
    id: int
    shortcut: str
    text: str


class QuickReplies:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def all(self) -> list[QuickReply]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(quick_replies).order_by(quick_replies.c.shortcut))
            return [QuickReply(int(r.id), str(r.shortcut), str(r.text)) for r in rows]

    async def add(self, shortcut: str, text: str) -> QuickReply:
        shortcut = shortcut.strip().lstrip("/").lower()
        if not SHORTCUT.fullmatch(shortcut):
            raise QuickReplyError(
                "a shortcut is 1 to 32 letters a to z, digits, dashes or underscores"
            )
        text = text.replace("\r\n", "\n").strip()
        if not 1 <= len(text) <= MAX_TEXT or not _TEXT.fullmatch(text):
            raise QuickReplyError("a quick reply is 1 to {n} characters of text", n=MAX_TEXT)
        async with self.db.write() as conn:
            count = (
                await conn.execute(select(func.count()).select_from(quick_replies))
            ).scalar_one()
            if count >= MAX_QUICK_REPLIES:
                raise QuickReplyError(
                    "a business has at most {n} quick replies", n=MAX_QUICK_REPLIES
                )
            taken = await conn.execute(
                select(quick_replies.c.id).where(quick_replies.c.shortcut == shortcut)
            )
            if taken.first() is not None:
                raise QuickReplyError("/{shortcut} exists already", shortcut=shortcut)
            await conn.execute(
                insert(quick_replies).values(
                    shortcut=shortcut, text=text, created_ms=self.clock.now_ms()
                )
            )
        found = await self.expand("/" + shortcut)
        assert found is not None
        return QuickReply(0, shortcut, found)

    async def remove(self, reply_id: int) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(delete(quick_replies).where(quick_replies.c.id == reply_id))
        return bool(result.rowcount)

    async def expand(self, typed: str) -> str | None:
        """The text of ``/shortcut`` (the whole reply), or ``None`` if it is not one."""
        typed = typed.strip()
        if not typed.startswith("/") or not SHORTCUT.fullmatch(typed[1:].lower()):
            return None
        async with self.db.read() as conn:
            text = (
                await conn.execute(
                    select(quick_replies.c.text).where(
                        quick_replies.c.shortcut == typed[1:].lower()
                    )
                )
            ).scalar_one_or_none()
        return None if text is None else str(text)

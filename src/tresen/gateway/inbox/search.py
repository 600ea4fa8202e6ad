"""Search over every message of the business: which conversations said something, and where.

The database keeps the index itself (migration 0004): on SQLite an FTS5 table beside
``messages`` kept by triggers, on PostgreSQL a generated ``tsvector`` column with a GIN index,
both over the words of text bodies, captions, interactive bodies and chosen titles, button
texts and template names. Words are matched whole and without regard to case, the last one also
as the start of a word, so that a search finds while it is still being typed ("verspät" finds
"verspätet"). What a person types is never handed to the database's query syntax: only its
words are, each quoted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import column as sql_column
from sqlalchemy import func, literal_column, select, table

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.gateway.inbox.conversations import Mine, Status, preview, where_listed
from tresen.gateway.schema import contacts, conversations, messages

__all__ = [
    "MAX_QUERY",
    "Found",
    "Hit",
    "Search",
    "Terms",
]

MAX_QUERY = 200
MAX_WORDS = 8
MAX_WORD = 64
RESULTS = 50
PER_CONVERSATION = 3
# Matching messages read, newest first, to gather the conversations of one page of results.
SCANNED = 400
EXCERPT = 160
# A single letter as the start of a word matches most messages: only whole.
MIN_PREFIX = 2
WORD = re.compile(r"[^\W_]+")

_fts = table("message_search", sql_column("rowid"))


@dataclass(frozen=True, slots=True)
class Terms:
    """The words of a search, lower-cased; the last one also as the start of a word."""

    words: tuple[str, ...]
    prefix: bool

    @classmethod
    def parse(cls, text: str) -> Terms | None:
        """The words of ``text`` (anything a person typed), or None when it has none."""
        words = tuple(w.lower()[:MAX_WORD] for w in WORD.findall(text[:MAX_QUERY]))[:MAX_WORDS]
        if not words:
            return None
        return cls(words, prefix=len(words[-1]) >= MIN_PREFIX)

    def fts5(self) -> str:
        """An FTS5 query: every word as a quoted string (so nothing in it is syntax)."""
        quoted = ['"' + w.replace('"', '""') + '"' for w in self.words]
        if self.prefix:
            quoted[-1] += "*"
        return " ".join(quoted)

    def tsquery(self) -> str:
        """A PostgreSQL ``tsquery``: every word quoted, all of them required."""
        quoted = ["'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in self.words]
        if self.prefix:
            quoted[-1] += ":*"
        return " & ".join(quoted)

    def matches(self, word: str) -> bool:
        word = word.lower()
        if word in self.words:
            return True
        return self.prefix and word.startswith(self.words[-1])

    def marked(self, text: str, width: int = EXCERPT) -> tuple[tuple[str, bool], ...]:
        """An excerpt of ``text`` around its first match, as pieces each marked whether it
        is a matching word (the page highlights them)."""
        found = [m for m in WORD.finditer(text) if self.matches(m.group())]
        start = 0
        if found and found[0].start() > width // 3:
            start = found[0].start() - width // 3
            space = text.find(" ", start, found[0].start())
            start = space + 1 if space != -1 else start
        end = min(len(text), start + width)
        pieces: list[tuple[str, bool]] = [("…", False)] if start else []
        at = start
        for match in found:
            if match.start() < start or match.end() > end:
                continue
            if match.start() > at:
                pieces.append((text[at : match.start()], False))
            pieces.append((match.group(), True))
            at = match.end()
        if at < end:
            pieces.append((text[at:end], False))
        if end < len(text):
            pieces.append(("…", False))
        return tuple(pieces)


@dataclass(frozen=True, slots=True)
class Hit:
    """A message that matched, with its excerpt."""

    wamid: str
    incoming: bool
    kind: str
    excerpt: tuple[tuple[str, bool], ...]
    at_ms: int


@dataclass(frozen=True, slots=True)
class Found:
    """A conversation with its newest matching messages, newest first."""

    contact: str
    name: str
    hits: tuple[Hit, ...]

    @property
    def last_ms(self) -> int:
        return self.hits[0].at_ms


class Search:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def find(
        self,
        text: str,
        *,
        me: int,
        mine: Mine = Mine.ALL,
        status: Status | None = None,
        label: str | None = None,
        limit: int = RESULTS,
    ) -> list[Found]:
        """The conversations (of those the list shows with these filters) whose messages
        contain every word of ``text``, the newest match first."""
        terms = Terms.parse(text)
        if terms is None:
            return []
        source, matching, newest = self._matching(terms)
        query = (
            select(
                messages.c.wamid,
                messages.c.contact,
                messages.c.direction,
                messages.c.type,
                messages.c.content,
                messages.c.template_name,
                messages.c.created_ms,
                contacts.c.profile_name,
                contacts.c.phone,
                contacts.c.user_id,
            )
            .select_from(source)
            .where(matching)
            .join(contacts, contacts.c.account_id == messages.c.contact)
            .outerjoin(conversations, conversations.c.contact == messages.c.contact)
            .order_by(newest)
            .limit(SCANNED)
        )
        query = where_listed(
            query, me=me, mine=mine, status=status, label=label, now_ms=self.clock.now_ms()
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        newest_first = sorted(rows, key=lambda row: -int(row.created_ms))
        return _grouped(newest_first, terms, max(1, min(limit, RESULTS)))

    def _matching(self, terms: Terms) -> tuple[Any, Any, Any]:
        """What to select messages from, the condition that keeps the matching ones, and
        their order, newest first."""
        if self.db.is_sqlite:
            # FTS5's MATCH takes the index table's name on its left. Its rowid is the
            # message's, which grows as messages are stored: in that order FTS5 hands out
            # matches without sorting them all, and stops at the limit.
            joined = _fts.join(messages, literal_column("messages.rowid") == _fts.c.rowid)
            match = literal_column("message_search").op("MATCH")(terms.fts5())
            return joined, match, _fts.c.rowid.desc()
        # With an index on created_ms, PostgreSQL walks the newest messages for a common
        # word and takes the GIN index for a rare one.
        query = func.to_tsquery(literal_column("'simple'"), terms.tsquery())
        match = literal_column("messages.search").op("@@")(query)
        return messages, match, messages.c.created_ms.desc()


def _grouped(rows: Any, terms: Terms, limit: int) -> list[Found]:
    found: dict[str, tuple[str, list[Hit]]] = {}
    for row in rows:
        if row.contact not in found:
            if len(found) >= limit:
                continue
            found[row.contact] = (row.profile_name or row.phone or row.user_id, [])
        hits = found[row.contact][1]
        if len(hits) >= PER_CONVERSATION:
            continue
        text = preview(row.type, json.loads(row.content), row.template_name)
        hits.append(
            Hit(
                wamid=row.wamid,
                incoming=row.direction == "in",
                kind=row.type,
                excerpt=terms.marked(text),
                at_ms=int(row.created_ms),
            )
        )
    return [Found(contact, name, tuple(hits)) for contact, (name, hits) in found.items()]

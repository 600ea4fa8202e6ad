"""The gateway's database: API tokens, contacts, messages and their statuses.

Reads are plain functions of :class:`GatewayStore`. Writes that happen per message run
through :class:`Writer`, which commits many of them in one transaction (group commit), in
the order they were submitted; each is a function of the open connection, so a change and
the webhook events it causes land together.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.batching import GroupCommitter
from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.logging import get_logger
from tresen.gateway.schema import (
    api_tokens,
    contacts,
    message_statuses,
    messages,
    meta,
    template_states,
)

__all__ = [
    "TOKEN_PREFIX",
    "Contact",
    "GatewayStore",
    "StoredMessage",
    "TokenInfo",
    "Writer",
    "contact_of",
    "get_meta",
    "set_meta",
]

log = get_logger("tresen.gateway.store")

TOKEN_PREFIX = "tgw_"  # noqa: S105 (a prefix, not a secret)
TOKEN_CACHE_S = 5.0
TOKEN_USE_GRANULARITY_MS = 60_000
STATUS_RANK = {"sent": 1, "delivered": 2, "failed": 2, "read": 3}
"""A status moves a message forward only: ``failed`` only from ``sent``."""

R = TypeVar("R")
WriteOp = Callable[[AsyncConnection], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    hint: str
    created_ms: int
    last_used_ms: int | None
    revoked_ms: int | None


@dataclass(frozen=True, slots=True)
class Contact:
    account_id: str
    phone: str | None
    wa_id: str | None
    user_id: str
    profile_name: str | None
    last_inbound_ms: int | None

    @property
    def name(self) -> str:
        return self.profile_name or self.phone or self.user_id

    def webhook_contact(self) -> dict[str, Any]:
        """The ``contacts[0]`` of a webhook about this customer."""
        entry: dict[str, Any] = {"profile": {"name": self.name}, "user_id": self.user_id}
        if self.wa_id is not None:
            entry["wa_id"] = self.wa_id
        return entry


@dataclass(frozen=True, slots=True)
class StoredMessage:
    wamid: str
    relay_message_id: str | None
    contact: str
    direction: str
    type: str
    content: dict[str, Any]
    context_wamid: str | None
    status: str
    error_code: int | None
    callback_data: str | None
    created_ms: int
    pricing: str | None = None
    """How the relay priced a sent message (JSON), as it accepted it; ``delivered`` may
    correct it."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Writer:
    """Group commit of write functions: one transaction for whatever has queued up."""

    def __init__(self, db: Database, *, max_batch: int = 256) -> None:
        self.db = db
        self._committer: GroupCommitter[WriteOp, Any] = GroupCommitter(
            self._process, max_batch=max_batch
        )

    def start(self) -> None:
        self._committer.start()

    async def close(self) -> None:
        await self._committer.close()

    async def run(self, op: Callable[[AsyncConnection], Awaitable[R]]) -> R:
        result: R = await self._committer.submit(op)
        return result

    async def _process(self, ops: Sequence[WriteOp]) -> list[Any]:
        try:
            async with self.db.write() as conn:
                return [await op(conn) for op in ops]
        except Exception:
            if len(ops) == 1:
                raise
        # One of them failed: run each alone, so the others still land.
        results: list[Any] = []
        for op in ops:
            try:
                async with self.db.write() as conn:
                    results.append(await op(conn))
            except Exception as exc:
                results.append(exc)
        return results


class GatewayStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._valid_tokens: dict[str, float] = {}
        self._token_checks: dict[str, asyncio.Future[bool]] = {}
        self._contacts: dict[str, Contact] = {}
        self._by_user_id: dict[str, str] = {}

    # --- API tokens --------------------------------------------------------------------------

    async def create_token(self, name: str, *, max_tokens: int = 100) -> tuple[TokenInfo, str]:
        """A new bearer token (shown once) and its listing."""
        if not 1 <= len(name) <= 64:
            raise ValueError("a token name has 1 to 64 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now_ms()
        hint = token[: len(TOKEN_PREFIX) + 6]
        async with self.db.write() as conn:
            active = await conn.scalar(
                select(func.count())
                .select_from(api_tokens)
                .where(api_tokens.c.revoked_ms.is_(None))
            )
            if (active or 0) >= max_tokens:
                raise ValueError(f"at most {max_tokens} active tokens; revoke one first")
            token_id = await conn.scalar(
                insert(api_tokens)
                .values(name=name, token_hash=_hash(token), hint=hint, created_ms=now)
                .returning(api_tokens.c.id)
            )
        assert token_id is not None
        return TokenInfo(int(token_id), name, hint, now, None, None), token

    async def revoke_token(self, which: str) -> int:
        """Revoke tokens by id, name or hint; returns how many were revoked."""
        column = api_tokens.c.id if which.isdigit() else None
        async with self.db.write() as conn:
            condition = (
                (column == int(which))
                if column is not None
                else ((api_tokens.c.name == which) | (api_tokens.c.hint == which))
            )
            result = await conn.execute(
                update(api_tokens)
                .where(condition, api_tokens.c.revoked_ms.is_(None))
                .values(revoked_ms=self.clock.now_ms())
            )
        self._valid_tokens.clear()
        return int(result.rowcount or 0)

    async def tokens(self) -> list[TokenInfo]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(api_tokens).order_by(api_tokens.c.id))).all()
        return [
            TokenInfo(r.id, r.name, r.hint, r.created_ms, r.last_used_ms, r.revoked_ms)
            for r in rows
        ]

    async def token_valid(self, token: str) -> bool:
        """Whether ``token`` is a current API token.

        Answers are kept for a few seconds (a token revoked from another process stops working
        within that time), concurrent checks of one token share one lookup, and the token's
        last use is written at most once a minute.
        """
        digest = _hash(token)
        seen = self._valid_tokens.get(digest)
        now = time.monotonic()
        if seen is not None and now - seen < TOKEN_CACHE_S:
            return True
        pending = self._token_checks.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._check_token(digest))
            self._token_checks[digest] = pending
            pending.add_done_callback(lambda _: self._token_checks.pop(digest, None))
        return await asyncio.shield(pending)

    async def _check_token(self, digest: str) -> bool:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(api_tokens.c.id, api_tokens.c.last_used_ms).where(
                        api_tokens.c.token_hash == digest, api_tokens.c.revoked_ms.is_(None)
                    )
                )
            ).first()
        if row is None:
            self._valid_tokens.pop(digest, None)
            return False
        if len(self._valid_tokens) > 10_000:
            self._valid_tokens.clear()
        self._valid_tokens[digest] = time.monotonic()
        now_ms = self.clock.now_ms()
        if row.last_used_ms is None or now_ms - row.last_used_ms >= TOKEN_USE_GRANULARITY_MS:
            async with self.db.write() as conn:
                await conn.execute(
                    update(api_tokens).where(api_tokens.c.id == row.id).values(last_used_ms=now_ms)
                )
        return True

    # --- contacts ----------------------------------------------------------------------------

    def forget_contact(self, account_id: str) -> None:
        """Drop what is cached of a contact (it was erased)."""
        known = self._contacts.pop(account_id, None)
        if known is not None:
            self._by_user_id.pop(known.user_id, None)

    def _remember(self, contact: Contact) -> Contact:
        self._contacts[contact.account_id] = contact
        self._by_user_id[contact.user_id] = contact.account_id
        return contact

    async def contact(self, account_id: str) -> Contact | None:
        known = self._contacts.get(account_id)
        if known is not None:
            return known
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(contacts).where(contacts.c.account_id == account_id))
            ).first()
        return None if row is None else self._remember(contact_of(row))

    async def contact_by_user_id(self, user_id: str) -> Contact | None:
        account = self._by_user_id.get(user_id)
        if account is not None:
            return await self.contact(account)
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(contacts).where(contacts.c.user_id == user_id))
            ).first()
        return None if row is None else self._remember(contact_of(row))

    async def save_contact(self, conn: AsyncConnection, contact: Contact) -> None:
        """Insert or update a contact (inside a write)."""
        now = self.clock.now_ms()
        values = {
            "phone": contact.phone,
            "wa_id": contact.wa_id,
            "user_id": contact.user_id,
            "profile_name": contact.profile_name,
            "last_inbound_ms": contact.last_inbound_ms,
        }
        changed = await conn.execute(
            update(contacts).where(contacts.c.account_id == contact.account_id).values(**values)
        )
        if not changed.rowcount:
            await conn.execute(
                insert(contacts).values(account_id=contact.account_id, created_ms=now, **values)
            )
        self._remember(contact)

    async def known_contacts(self, account_ids: Sequence[str]) -> set[str]:
        """Which of ``account_ids`` are contacts already (one query for those not cached)."""
        known = {a for a in account_ids if a in self._contacts}
        asked = [a for a in account_ids if a not in known]
        if asked:
            async with self.db.read() as conn:
                for row in await conn.execute(
                    select(contacts).where(contacts.c.account_id.in_(asked))
                ):
                    known.add(self._remember(contact_of(row)).account_id)
        return known

    async def add_contacts(self, conn: AsyncConnection, batch: Sequence[Contact]) -> None:
        """Insert the contacts of ``batch`` that do not exist yet (inside a write); the ones
        that do are left as they are."""
        there = await _contact_ids(conn, [c.account_id for c in batch])
        new = [c for c in batch if c.account_id not in there]
        await self._insert_contacts(conn, new)
        for contact in new:
            self._remember(contact)

    async def save_contacts(self, conn: AsyncConnection, batch: list[Contact]) -> None:
        """Insert or update many contacts (inside a write): two statements for the lot."""
        known = await _contact_ids(conn, [c.account_id for c in batch])
        changed = [c for c in batch if c.account_id in known]
        if changed:
            await conn.execute(
                update(contacts)
                .where(contacts.c.account_id == bindparam("a"))
                .values(
                    phone=bindparam("phone"),
                    wa_id=bindparam("wa_id"),
                    user_id=bindparam("user_id"),
                    profile_name=bindparam("profile_name"),
                    last_inbound_ms=bindparam("last_inbound_ms"),
                ),
                [{"a": c.account_id, **_contact_values(c)} for c in changed],
            )
        await self._insert_contacts(conn, [c for c in batch if c.account_id not in known])
        for contact in batch:
            self._remember(contact)

    async def _insert_contacts(self, conn: AsyncConnection, new: Sequence[Contact]) -> None:
        if new:
            now = self.clock.now_ms()
            await conn.execute(
                insert(contacts),
                [
                    {"account_id": c.account_id, "created_ms": now, **_contact_values(c)}
                    for c in new
                ],
            )

    # --- messages ----------------------------------------------------------------------------

    async def message(self, wamid: str) -> StoredMessage | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(messages).where(messages.c.wamid == wamid))).first()
        return None if row is None else _message(row)

    async def unread_inbound(self, contact: str, up_to_ms: int) -> list[StoredMessage]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(messages)
                    .where(
                        messages.c.contact == contact,
                        messages.c.direction == "in",
                        messages.c.status == "received",
                        messages.c.created_ms <= up_to_ms,
                    )
                    .order_by(messages.c.created_ms)
                    .limit(256)
                )
            ).all()
        return [_message(r) for r in rows]

    async def mark_inbound_read(self, conn: AsyncConnection, wamids: list[str]) -> None:
        if wamids:
            await conn.execute(
                update(messages)
                .where(messages.c.wamid.in_(wamids), messages.c.direction == "in")
                .values(status="read", updated_ms=self.clock.now_ms())
            )

    # --- the webhook callback set through the API --------------------------------------------

    async def api_callback(self) -> str | None:
        """The callback URL the Cloud API routes last subscribed (the one a new one replaces)."""
        async with self.db.read() as conn:
            url = await get_meta(conn, "api_callback_url")
        return None if url is None else url.decode()

    async def save_api_callback(self, conn: AsyncConnection, url: str) -> None:
        await set_meta(conn, "api_callback_url", url.encode())

    # --- templates ---------------------------------------------------------------------------

    async def template_states(self, conn: AsyncConnection) -> dict[int, str]:
        rows = (
            await conn.execute(select(template_states.c.template_id, template_states.c.status))
        ).all()
        return {int(r.template_id): str(r.status) for r in rows}

    async def templates_seeded(self, conn: AsyncConnection) -> bool:
        return await get_meta(conn, "templates_seeded") is not None

    async def mark_templates_seeded(self, conn: AsyncConnection) -> None:
        await set_meta(conn, "templates_seeded", b"1")

    async def save_template_state(
        self,
        conn: AsyncConnection,
        template_id: int,
        name: str,
        language: str,
        category: str,
        status: str,
        reason: str,
        now_ms: int,
    ) -> None:
        values = {
            "name": name,
            "language": language,
            "category": category,
            "status": status,
            "reason": reason,
            "updated_ms": now_ms,
        }
        changed = await conn.execute(
            update(template_states)
            .where(template_states.c.template_id == template_id)
            .values(**values)
        )
        if not changed.rowcount:
            await conn.execute(insert(template_states).values(template_id=template_id, **values))

    async def statuses(self, wamid: str) -> list[tuple[str, int]]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(message_statuses.c.status, message_statuses.c.at_ms)
                    .where(message_statuses.c.wamid == wamid)
                    .order_by(message_statuses.c.id)
                )
            ).all()
        return [(r.status, r.at_ms) for r in rows]


async def get_meta(conn: AsyncConnection, key: str) -> bytes | None:
    value = await conn.scalar(select(meta.c.value).where(meta.c.key == key))
    return None if value is None else bytes(value)


async def set_meta(conn: AsyncConnection, key: str, value: bytes) -> None:
    changed = await conn.execute(update(meta).where(meta.c.key == key).values(value=value))
    if not changed.rowcount:
        await conn.execute(insert(meta).values(key=key, value=value))


async def _contact_ids(conn: AsyncConnection, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` are contacts."""
    rows = await conn.execute(select(contacts.c.account_id).where(contacts.c.account_id.in_(ids)))
    return {r.account_id for r in rows}


def _contact_values(contact: Contact) -> dict[str, Any]:
    return {
        "phone": contact.phone,
        "wa_id": contact.wa_id,
        "user_id": contact.user_id,
        "profile_name": contact.profile_name,
        "last_inbound_ms": contact.last_inbound_ms,
    }


def contact_of(row: Any) -> Contact:
    return Contact(
        account_id=row.account_id,
        phone=row.phone,
        wa_id=row.wa_id,
        user_id=row.user_id,
        profile_name=row.profile_name,
        last_inbound_ms=row.last_inbound_ms,
    )


def _message(row: Any) -> StoredMessage:
    return StoredMessage(
        wamid=row.wamid,
        relay_message_id=row.relay_message_id,
        contact=row.contact,
        direction=row.direction,
        type=row.type,
        content=json.loads(row.content),
        context_wamid=row.context_wamid,
        status=row.status,
        error_code=row.error_code,
        callback_data=row.callback_data,
        created_ms=row.created_ms,
    )

"""SQL of the blob store: one ``attachments`` row per blob."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.ids import AccountId, DevicePk
from tresen.relay.schema import accounts, attachments, devices

__all__ = [
    "AttachmentRow",
    "Holdings",
    "account_kind",
    "by_id",
    "delete_rows",
    "expired",
    "holdings",
    "insert_attachment",
    "lock_device",
    "set_complete",
    "set_received",
]

a = attachments


@dataclass(frozen=True, slots=True)
class AttachmentRow:
    id: str
    device_pk: DevicePk
    account_id: AccountId
    kind: str
    size: int
    received: int
    created_ms: int
    completed_ms: int | None
    expires_ms: int

    @property
    def complete(self) -> bool:
        return self.completed_ms is not None


@dataclass(frozen=True, slots=True)
class Holdings:
    """What one device holds that has not expired: bytes (complete blobs' sizes plus the
    declared sizes of unfinished uploads) and unfinished uploads."""

    bytes: int
    unfinished: int


def _row(row: Any) -> AttachmentRow:
    m = row._mapping
    return AttachmentRow(
        id=m["id"],
        device_pk=DevicePk(int(m["device_pk"])),
        account_id=AccountId(m["account_id"]),
        kind=m["kind"],
        size=int(m["size"]),
        received=int(m["received"]),
        created_ms=int(m["created_ms"]),
        completed_ms=None if m["completed_ms"] is None else int(m["completed_ms"]),
        expires_ms=int(m["expires_ms"]),
    )


async def account_kind(conn: AsyncConnection, account_id: AccountId) -> str:
    """``business`` or ``customer``."""
    value = (
        await conn.execute(select(accounts.c.kind).where(accounts.c.id == account_id))
    ).scalar_one_or_none()
    return str(value or "customer")


async def lock_device(conn: AsyncConnection, device_pk: DevicePk) -> None:
    """On PostgreSQL, the device's row stays locked until the transaction ends, so one
    device's creations are counted against its quota one after another (SQLite has one
    writer)."""
    if conn.dialect.name != "sqlite":
        await conn.execute(
            select(devices.c.pk).where(devices.c.pk == device_pk).with_for_update(key_share=True)
        )


async def holdings(conn: AsyncConnection, device_pk: DevicePk, now_ms: int) -> Holdings:
    row = (
        await conn.execute(
            select(
                func.coalesce(func.sum(a.c.size), 0),
                func.count().filter(a.c.completed_ms.is_(None)),
            ).where(a.c.device_pk == device_pk, a.c.expires_ms > now_ms)
        )
    ).one()
    return Holdings(bytes=int(row[0]), unfinished=int(row[1] or 0))


async def insert_attachment(
    conn: AsyncConnection,
    *,
    attachment_id: str,
    device_pk: DevicePk,
    account_id: AccountId,
    kind: str,
    size: int,
    now_ms: int,
    expires_ms: int,
) -> None:
    await conn.execute(
        insert(a).values(
            id=attachment_id,
            device_pk=device_pk,
            account_id=account_id,
            kind=kind,
            size=size,
            received=0,
            created_ms=now_ms,
            expires_ms=expires_ms,
        )
    )


async def by_id(conn: AsyncConnection, attachment_id: str) -> AttachmentRow | None:
    row = (await conn.execute(select(a).where(a.c.id == attachment_id))).first()
    return None if row is None else _row(row)


async def set_received(
    conn: AsyncConnection, attachment_id: str, *, previous: int, received: int, now_ms: int
) -> bool:
    """Record flushed bytes; False when the upload is gone, expired or moved on meanwhile
    (an expired row belongs to the sweeper)."""
    result = await conn.execute(
        update(a)
        .where(
            a.c.id == attachment_id,
            a.c.received == previous,
            a.c.completed_ms.is_(None),
            a.c.expires_ms > now_ms,
        )
        .values(received=received)
    )
    return bool(result.rowcount)


async def set_complete(
    conn: AsyncConnection,
    attachment_id: str,
    *,
    size: int,
    now_ms: int,
    expires_ms: int,
) -> bool:
    """Record every byte as flushed and the blob complete; False when the upload is gone,
    expired or complete already. One body at a time appends to an upload (the service's
    lock), so the offset recorded before is the one this body started from."""
    result = await conn.execute(
        update(a)
        .where(
            a.c.id == attachment_id,
            a.c.completed_ms.is_(None),
            a.c.size == size,
            a.c.expires_ms > now_ms,
        )
        .values(received=size, completed_ms=now_ms, expires_ms=expires_ms)
    )
    return bool(result.rowcount)


async def expired(conn: AsyncConnection, now_ms: int, limit: int) -> list[str]:
    rows = await conn.execute(
        select(a.c.id).where(a.c.expires_ms <= now_ms).order_by(a.c.expires_ms).limit(limit)
    )
    return [str(r[0]) for r in rows]


async def delete_rows(
    conn: AsyncConnection, ids: list[str], *, expired_at_ms: int | None = None
) -> None:
    """Delete these rows (with ``expired_at_ms``: only those expired by then)."""
    if ids:
        stmt = delete(a).where(a.c.id.in_(ids))
        if expired_at_ms is not None:
            stmt = stmt.where(a.c.expires_ms <= expired_at_ms)
        await conn.execute(stmt)

"""SQL of retention: each function deletes (or erases) at most ``limit`` rows that their rule
no longer needs, in the caller's transaction, and returns how many.

Every statement repeats its condition outside the sub-select that picks the rows: on
PostgreSQL a row that a concurrent transaction renewed meanwhile (a customer writing again,
a device connecting) is checked again on its new version and kept. Rows another transaction
holds are skipped and left for the next run.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    delete,
    exists,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.relay.schema import (
    accounts,
    consent_log,
    consents,
    delivery_counts,
    lookup_budgets,
    mailbox,
    message_pricing,
    messages,
    quality_events,
    rate_events,
    reach,
    recipients,
    service_windows,
    throttle_keys,
    verification_codes,
)

__all__ = [
    "delete_closed_windows",
    "delete_ended_consent_history",
    "delete_expired_codes",
    "delete_full_lookup_budgets",
    "delete_old_delivery_counts",
    "delete_old_rate_events",
    "delete_old_reach",
    "delete_old_recipients",
    "delete_old_throttle_keys",
    "delete_orphan_pricing",
    "delete_received_messages",
    "erase_ended_consents",
    "erase_quality_details",
]

_MESSAGE = 0  # mailbox.kind of a ciphertext (EntryKind.MESSAGE)


async def _delete_some(
    conn: AsyncConnection, table: Table, key: list[Any], condition: ColumnElement[bool], limit: int
) -> int:
    picked = select(*key).where(condition).limit(limit).with_for_update(skip_locked=True)
    target = key[0].in_(picked) if len(key) == 1 else tuple_(*key).in_(picked)
    result = await conn.execute(delete(table).where(condition, target))
    return int(result.rowcount or 0)


async def delete_received_messages(
    conn: AsyncConnection, accepted_before_ms: int, limit: int, *, customers_only: bool
) -> int:
    """Message records accepted at or before ``accepted_before_ms`` that reached their recipient
    (acked or read) and have no copy left in any mailbox, with their pricing facts; with
    ``customers_only`` those between accounts that are not businesses."""
    m = messages
    condition = and_(
        m.c.server_ms <= accepted_before_ms,
        or_(m.c.delivered_ms.is_not(None), m.c.read_ms.is_not(None)),
        ~exists().where(mailbox.c.message_id == m.c.message_id, mailbox.c.kind == _MESSAGE),
    )
    if customers_only:
        condition = and_(
            condition,
            ~exists().where(
                accounts.c.id.in_([m.c.sender_account, m.c.recipient_account]),
                accounts.c.kind == "business",
            ),
        )
    picked = select(m.c.message_id).where(condition).limit(limit)
    gone = await conn.execute(
        delete(m)
        .where(condition, m.c.message_id.in_(picked.with_for_update(skip_locked=True)))
        .returning(m.c.message_id)
    )
    ids = sorted(gone.scalars())
    if ids:
        await conn.execute(delete(message_pricing).where(message_pricing.c.message_id.in_(ids)))
    return len(ids)


async def delete_orphan_pricing(conn: AsyncConnection, limit: int) -> int:
    """Pricing facts of messages whose record is gone (expired and purged)."""
    p = message_pricing
    condition = ~exists().where(messages.c.message_id == p.c.message_id)
    return await _delete_some(conn, p, [p.c.message_id], condition, limit)


async def delete_old_rate_events(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    r = rate_events
    return await _delete_some(conn, r, [r.c.pk], r.c.at_ms <= before_ms, limit)


async def delete_old_throttle_keys(conn: AsyncConnection, before_slot: int) -> int:
    result = await conn.execute(delete(throttle_keys).where(throttle_keys.c.slot < before_slot))
    return int(result.rowcount or 0)


async def delete_expired_codes(conn: AsyncConnection, now_ms: int, limit: int) -> int:
    """Codes that no longer verify: the code and the one it replaced both expired."""
    v = verification_codes
    condition = and_(
        v.c.expires_ms <= now_ms,
        or_(v.c.previous_expires_ms.is_(None), v.c.previous_expires_ms <= now_ms),
    )
    return await _delete_some(conn, v, [v.c.phone], condition, limit)


async def delete_full_lookup_budgets(conn: AsyncConnection, now_ms: int, limit: int) -> int:
    """Budgets that are full again: the same as no row."""
    b = lookup_budgets
    return await _delete_some(conn, b, [b.c.account_id], b.c.tat_ms <= now_ms, limit)


def _pair(table: Table) -> list[Any]:
    return [table.c.business_account, table.c.customer_account]


async def delete_closed_windows(conn: AsyncConnection, closed_at_ms: int, limit: int) -> int:
    """Windows whose customer last wrote at or before ``closed_at_ms``: closed by now."""
    w = service_windows
    return await _delete_some(conn, w, _pair(w), w.c.last_customer_ms <= closed_at_ms, limit)


async def delete_old_reach(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    r = reach
    return await _delete_some(conn, r, _pair(r), r.c.at_ms <= before_ms, limit)


async def delete_old_recipients(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    r = recipients
    return await _delete_some(conn, r, _pair(r), r.c.delivered_ms < before_ms, limit)


async def erase_quality_details(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    """Blocks and reports made before ``before_ms`` lose their customer, the message named
    and the written detail; kind, reason, time and whether it counted stay."""
    q = quality_events
    condition = and_(
        q.c.at_ms < before_ms,
        or_(q.c.customer_account != "", q.c.detail != "", q.c.message_id.is_not(None)),
    )
    picked = select(q.c.pk).where(condition).limit(limit).with_for_update(skip_locked=True)
    result = await conn.execute(
        update(q)
        .where(condition, q.c.pk.in_(picked))
        .values(customer_account="", detail="", message_id=None)
    )
    return int(result.rowcount or 0)


async def delete_old_delivery_counts(conn: AsyncConnection, before_day: int, limit: int) -> int:
    d = delivery_counts
    key = [d.c.business_account, d.c.template_id, d.c.day]
    return await _delete_some(conn, d, key, d.c.day < before_day, limit)


async def erase_ended_consents(conn: AsyncConnection, ended_before_ms: int, limit: int) -> int:
    """Opt-outs older than ``ended_before_ms``: a customer's own stays (so that no business
    can attest an opt-in over it) without its signed statement; any other is deleted (no row
    means no consent)."""
    c = consents
    ended = and_(c.c.state == "opted_out", c.c.updated_ms < ended_before_ms)
    key = [c.c.business_account, c.c.customer_account, c.c.scope]
    deleted = await _delete_some(conn, c, key, and_(ended, c.c.source != "customer"), limit)
    signed = and_(
        ended,
        c.c.source == "customer",
        or_(c.c.statement.is_not(None), c.c.evidence.is_not(None)),
    )
    picked = select(*key).where(signed).limit(limit).with_for_update(skip_locked=True)
    result = await conn.execute(
        update(c)
        .where(signed, tuple_(*key).in_(picked))
        .values(statement=None, signature=None, device_id=None, evidence=None, evidence_ms=None)
    )
    return deleted + int(result.rowcount or 0)


async def delete_ended_consent_history(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    """Changes made before ``before_ms`` to a consent that is not in force now."""
    log, c = consent_log, consents
    condition = and_(
        log.c.at_ms < before_ms,
        ~exists().where(
            c.c.business_account == log.c.business_account,
            c.c.customer_account == log.c.customer_account,
            c.c.scope == log.c.scope,
            c.c.state == "opted_in",
        ),
    )
    return await _delete_some(conn, log, [log.c.pk], condition, limit)

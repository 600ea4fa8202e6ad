"""SQL of the gateway's retention: each function deletes (or reduces) at most ``limit`` rows
that their rule no longer needs, in the caller's transaction, and returns how many.

As at the relay (``relay/retention/repo.py``), every statement repeats its condition outside
the sub-select that picks the rows, so that a row changed meanwhile by another transaction is
checked again on its new version; rows another transaction holds are left for the next run.
"""

from __future__ import annotations

import json
from collections import Counter
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

from tresen.gateway.campaigns.cost import country_of
from tresen.gateway.campaigns.model import CampaignState
from tresen.gateway.schema import (
    agent_sessions,
    bot_log,
    campaign_recipients,
    campaigns,
    delivery_receipts,
    early_statuses,
    login_failures,
    subscriber_imports,
    subscribers,
)
from tresen.gateway.webhooks import repo as webhooks_repo

__all__ = [
    "clear_import_reports",
    "delete_dead_webhook_events",
    "delete_expired_sessions",
    "delete_old_bot_log",
    "delete_old_early_statuses",
    "delete_old_login_failures",
    "delete_reduced_recipients",
    "reduce_finished_campaigns",
    "reduce_unsubscribed",
]

_FINISHED = [str(CampaignState.DONE), str(CampaignState.CANCELLED)]


def _picked(key: list[Any], condition: ColumnElement[bool], limit: int) -> ColumnElement[bool]:
    picked = select(*key).where(condition).limit(limit).with_for_update(skip_locked=True)
    return key[0].in_(picked) if len(key) == 1 else tuple_(*key).in_(picked)


async def _delete_some(
    conn: AsyncConnection, table: Table, key: list[Any], condition: ColumnElement[bool], limit: int
) -> int:
    result = await conn.execute(delete(table).where(condition, _picked(key, condition, limit)))
    return int(result.rowcount or 0)


async def _update_some(
    conn: AsyncConnection,
    table: Table,
    key: list[Any],
    condition: ColumnElement[bool],
    limit: int,
    values: dict[str, Any],
) -> int:
    result = await conn.execute(
        update(table).where(condition, _picked(key, condition, limit)).values(**values)
    )
    return int(result.rowcount or 0)


async def delete_dead_webhook_events(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    """Dead letters made before ``before_ms`` (they hold message content)."""
    return await webhooks_repo.prune(
        conn, states=(webhooks_repo.DEAD,), before_ms=before_ms, limit=limit
    )


async def delete_old_early_statuses(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    """Statuses that arrived before ``before_ms`` for a message that was never recorded."""
    e = early_statuses
    return await _delete_some(conn, e, [e.c.id], e.c.at_ms < before_ms, limit)


async def clear_import_reports(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    """The per-row reports (the numbers as written) of imports made before ``before_ms``; the
    import's counts stay."""
    i = subscriber_imports
    condition = and_(i.c.created_ms < before_ms, i.c.rows != "[]")
    return await _update_some(conn, i, [i.c.id], condition, limit, {"rows": "[]"})


async def reduce_unsubscribed(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    """Subscribers who left a list before ``before_ms`` lose their attributes and the
    import's consent evidence; number, state, source, reason and times stay: they show the
    opt-out, and keep a later import from subscribing the number again unasked."""
    s = subscribers
    condition = and_(
        s.c.state == "unsubscribed",
        s.c.updated_ms < before_ms,
        or_(s.c.attributes != "{}", s.c.evidence.is_not(None)),
    )
    key = [s.c.list_id, s.c.account_id]
    return await _update_some(
        conn, s, key, condition, limit, {"attributes": "{}", "evidence": None}
    )


async def delete_old_bot_log(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    """Automation's log written before ``before_ms``, except unanswered questions (the
    business dismisses them, or turns them into examples; the newest 1,000 are kept)."""
    b = bot_log
    condition = and_(b.c.at_ms < before_ms, b.c.kind != "unanswered")
    return await _delete_some(conn, b, [b.c.id], condition, limit)


async def delete_old_delivery_receipts(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    """Delivery receipts that arrived before ``before_ms``: past the time a bill they prove
    can still be disputed."""
    r = delivery_receipts
    return await _delete_some(conn, r, [r.c.message_id], r.c.received_ms < before_ms, limit)


async def delete_old_login_failures(
    conn: AsyncConnection, window_started_before_ms: int, limit: int
) -> int:
    """Failed sign-ins whose counting window started at or before the given time: over, so
    the same as no row."""
    f = login_failures
    condition = f.c.window_start_ms <= window_started_before_ms
    return await _delete_some(conn, f, [f.c.key], condition, limit)


async def delete_expired_sessions(
    conn: AsyncConnection, now_ms: int, idle_ms: int, limit: int
) -> int:
    """Sessions past their end, or unused for ``idle_ms``: they no longer sign anyone in."""
    a = agent_sessions
    condition = or_(a.c.expires_ms <= now_ms, a.c.last_seen_ms <= now_ms - idle_ms)
    return await _delete_some(conn, a, [a.c.token_hash], condition, limit)


async def reduce_finished_campaigns(
    conn: AsyncConnection, finished_before_ms: int, limit: int
) -> int:
    """Store the figures of at most ``limit`` campaigns finished before
    ``finished_before_ms`` on the campaign (``campaigns.figures``), from which its results
    are read from then on; their recipients' rows go next
    (:func:`delete_reduced_recipients`). Returns how many campaigns."""
    c = campaigns
    condition = and_(
        c.c.state.in_(_FINISHED),
        c.c.finished_ms < finished_before_ms,
        c.c.figures.is_(None),
    )
    ids = (
        (await conn.execute(select(c.c.id).where(condition).order_by(c.c.id).limit(limit)))
        .scalars()
        .all()
    )
    reduced = 0
    for campaign_id in ids:
        figures = await _figures(conn, int(campaign_id))
        result = await conn.execute(
            update(c)
            .where(condition, c.c.id == campaign_id)
            .values(figures=json.dumps(figures, sort_keys=True))
        )
        reduced += int(result.rowcount or 0)
    return reduced


async def _figures(conn: AsyncConnection, campaign_id: int) -> dict[str, Any]:
    """What a campaign's results read from its recipients: counts by state; how many were
    sent, and of those delivered, read and replied to; billable deliveries by country (for
    the cost at the business's rate card)."""
    r = campaign_recipients
    rows = await conn.execute(
        select(
            r.c.state,
            r.c.phone,
            r.c.sent_ms,
            r.c.delivered_ms,
            r.c.read_ms,
            r.c.replied_ms,
            r.c.pricing,
        ).where(r.c.campaign_id == campaign_id)
    )
    counts: Counter[str] = Counter()
    billable: Counter[str] = Counter()
    sent = delivered = read = replied = 0
    for row in rows:
        counts[str(row.state)] += 1
        if row.sent_ms is None:
            continue
        sent += 1
        read += row.read_ms is not None
        replied += row.replied_ms is not None
        if row.delivered_ms is not None:
            delivered += 1
            if row.pricing and json.loads(row.pricing).get("billable"):
                billable[country_of(row.phone)] += 1
    return {
        "counts": dict(counts),
        "sent": sent,
        "delivered": delivered,
        "read": read,
        "replied": replied,
        "billable": dict(billable),
    }


async def delete_reduced_recipients(conn: AsyncConnection, limit: int) -> int:
    """Recipients' rows of campaigns whose figures are stored."""
    r = campaign_recipients
    condition = exists().where(campaigns.c.id == r.c.campaign_id, campaigns.c.figures.is_not(None))
    return await _delete_some(conn, r, [r.c.campaign_id, r.c.account_id], condition, limit)

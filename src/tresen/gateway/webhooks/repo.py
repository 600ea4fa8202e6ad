"""SQL of the webhook subscriptions and the outbox: one function per statement or transaction.

Invariant the dispatcher relies on: within a lane (one subscription and one conversation) only
the lowest-id pending event may wait for a later time (``next_attempt_ms`` in the future);
every other pending event of the lane is due. Only a lane's first event is ever tried, a new
event is due when it is made, and a replay makes the whole lane due again. So the lanes that
wait are those with a pending event that is not due, one row per waiting lane, and every
other pending event is ready to go in ``id`` order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, literal_column, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.gateway.schema import webhook_events, webhook_subscriptions

__all__ = [
    "DEAD",
    "DELIVERED",
    "PENDING",
    "active_subscriptions",
    "count_active",
    "count_by_state",
    "dead_events",
    "due_events",
    "insert_events",
    "kill_pending",
    "mark_dead",
    "mark_delivered",
    "mark_retry",
    "oldest_pending_created",
    "prune",
    "replay",
    "subscription_by_id",
    "subscription_by_url",
]

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"

_IN_CHUNK = 500

s = webhook_subscriptions
e = webhook_events


# --- subscriptions ---------------------------------------------------------------------------


async def active_subscriptions(conn: AsyncConnection) -> Sequence[Any]:
    result = await conn.execute(select(s).where(s.c.removed_ms.is_(None)).order_by(s.c.id))
    return result.all()


async def subscription_by_url(conn: AsyncConnection, url: str) -> Any:
    result = await conn.execute(select(s).where(s.c.url == url))
    return result.first()


async def subscription_by_id(conn: AsyncConnection, subscription_id: int) -> Any:
    result = await conn.execute(select(s).where(s.c.id == subscription_id))
    return result.first()


async def count_active(conn: AsyncConnection) -> int:
    result = await conn.execute(select(func.count()).select_from(s).where(s.c.removed_ms.is_(None)))
    return int(result.scalar_one())


async def kill_pending(conn: AsyncConnection, subscription_id: int, error: str) -> int:
    """Every pending event of a subscription becomes dead (it was removed)."""
    result = await conn.execute(
        update(e)
        .where(e.c.subscription_id == subscription_id, e.c.state == PENDING)
        .values(state=DEAD, last_error=error)
    )
    return int(result.rowcount)


# --- the outbox ------------------------------------------------------------------------------


async def insert_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(e.insert(), rows)


_DUE_COLUMNS = (
    e.c.id,
    e.c.event_id,
    e.c.subscription_id,
    e.c.conversation,
    e.c.body,
    e.c.attempts,
    e.c.created_ms,
)


async def due_events(
    conn: AsyncConnection, now_ms: int, *, exclude: Collection[int], limit: int
) -> Sequence[Any]:
    """Due pending events, lowest id first, of lanes that do not wait for a retry: for each
    lane, a prefix of its pending events in order. ``exclude`` names events the dispatcher
    holds already. Costs one pass over the pending events, never over the delivered ones."""
    pending: ColumnElement[bool] = e.c.state == PENDING
    later = e.alias("later")
    later_pending: ColumnElement[bool] = later.c.state == PENDING
    if conn.dialect.name == "sqlite":
        # Pending events are few beside the delivered ones: read them through
        # ix_webhook_events_pending, not by walking the table past every delivered event,
        # which SQLite would choose once ANALYZE has averaged the states.
        pending = func.likelihood(pending, literal_column("0.001"))
        later_pending = func.likelihood(later_pending, literal_column("0.001"))
    # By the lane invariant, a lane waits exactly when one of its pending events is not due.
    # Those lanes are few (one row each), so they are found once and looked up per event.
    waiting = select(later.c.subscription_id, later.c.conversation).where(
        later_pending, later.c.next_attempt_ms > now_ms
    )
    # The ids come from the index alone (no due test is needed outside the waiting lanes);
    # only the chosen rows are read whole.
    ready = (
        select(e.c.id)
        .where(pending, tuple_(e.c.subscription_id, e.c.conversation).not_in(waiting))
        .order_by(e.c.id)
        .limit(limit)
    )
    if exclude:
        ready = ready.where(e.c.id.not_in(list(exclude)))
    query = select(*_DUE_COLUMNS).where(e.c.id.in_(ready.scalar_subquery())).order_by(e.c.id)
    result = await conn.execute(query)
    return result.all()


async def mark_delivered(conn: AsyncConnection, ids: Sequence[int], now_ms: int) -> None:
    for i in range(0, len(ids), _IN_CHUNK):
        await conn.execute(
            update(e)
            .where(e.c.id.in_(ids[i : i + _IN_CHUNK]))
            .values(state=DELIVERED, delivered_ms=now_ms, attempts=e.c.attempts + 1)
        )


_RETRY = (
    update(e)
    .where(e.c.id == bindparam("b_id"), e.c.state == PENDING)
    .values(
        attempts=bindparam("b_attempts"),
        next_attempt_ms=bindparam("b_next"),
        last_error=bindparam("b_error"),
    )
)
_DEAD = (
    update(e)
    .where(e.c.id == bindparam("b_id"), e.c.state == PENDING)
    .values(state=DEAD, attempts=bindparam("b_attempts"), last_error=bindparam("b_error"))
)


async def mark_retry(conn: AsyncConnection, rows: Iterable[tuple[int, int, int, str]]) -> None:
    """``(id, attempts, next_attempt_ms, error)`` per event that failed and waits."""
    params = [
        {"b_id": i, "b_attempts": a, "b_next": n, "b_error": err[:512]} for i, a, n, err in rows
    ]
    if params:
        await conn.execute(_RETRY, params)


async def mark_dead(conn: AsyncConnection, rows: Iterable[tuple[int, int, str]]) -> None:
    """``(id, attempts, error)`` per event given up."""
    params = [{"b_id": i, "b_attempts": a, "b_error": err[:512]} for i, a, err in rows]
    if params:
        await conn.execute(_DEAD, params)


async def prune(
    conn: AsyncConnection, *, states: Collection[str], before_ms: int, limit: int
) -> int:
    """Delete up to ``limit`` events in ``states`` made before ``before_ms``."""
    doomed = (
        select(e.c.id)
        .where(e.c.state.in_(list(states)), e.c.created_ms < before_ms)
        .limit(limit)
        .scalar_subquery()
    )
    result = await conn.execute(e.delete().where(e.c.id.in_(doomed)))
    return int(result.rowcount)


# --- dead letters and figures ----------------------------------------------------------------


async def dead_events(conn: AsyncConnection, *, limit: int, after: int | None) -> Sequence[Any]:
    query = (
        select(
            e.c.id,
            e.c.event_id,
            e.c.subscription_id,
            s.c.url,
            e.c.field,
            e.c.conversation,
            e.c.attempts,
            e.c.created_ms,
            e.c.last_error,
        )
        .select_from(e.outerjoin(s, s.c.id == e.c.subscription_id))
        .where(e.c.state == DEAD)
        .order_by(e.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(e.c.id > after)
    result = await conn.execute(query)
    return result.all()


async def replay(conn: AsyncConnection, event_ids: Collection[str] | None, now_ms: int) -> int:
    """Dead events (those named, or all) of active subscriptions become pending again, due
    now, with their attempts reset and ``created_ms`` restarted so that they get a whole
    ``give_up_s`` again; the other pending events of their lanes become due now too, which
    keeps the lane invariant. Returns how many were replayed."""
    dead_query = (
        select(e.c.id, e.c.subscription_id, e.c.conversation)
        .select_from(e.join(s, s.c.id == e.c.subscription_id))
        .where(e.c.state == DEAD, s.c.removed_ms.is_(None))
    )
    chosen: list[Any] = []
    if event_ids is None:
        chosen = list((await conn.execute(dead_query)).all())
    else:
        names = list(event_ids)
        for i in range(0, len(names), _IN_CHUNK):
            part = dead_query.where(e.c.event_id.in_(names[i : i + _IN_CHUNK]))
            chosen.extend((await conn.execute(part)).all())
    if not chosen:
        return 0
    ids = [row.id for row in chosen]
    for i in range(0, len(ids), _IN_CHUNK):
        await conn.execute(
            update(e)
            .where(e.c.id.in_(ids[i : i + _IN_CHUNK]))
            .values(
                state=PENDING,
                attempts=0,
                next_attempt_ms=now_ms,
                created_ms=now_ms,
                last_error=None,
            )
        )
    lanes = sorted({(row.subscription_id, row.conversation) for row in chosen})
    for i in range(0, len(lanes), _IN_CHUNK):
        await conn.execute(
            update(e)
            .where(
                e.c.state == PENDING,
                e.c.next_attempt_ms > now_ms,
                tuple_(e.c.subscription_id, e.c.conversation).in_(lanes[i : i + _IN_CHUNK]),
            )
            .values(next_attempt_ms=now_ms)
        )
    return len(ids)


async def count_by_state(conn: AsyncConnection) -> dict[str, int]:
    result = await conn.execute(select(e.c.state, func.count()).group_by(e.c.state))
    return {str(state): int(n) for state, n in result.all()}


async def count_pending(conn: AsyncConnection) -> int:
    result = await conn.execute(select(func.count()).select_from(e).where(e.c.state == PENDING))
    return int(result.scalar_one())


async def oldest_pending_created(conn: AsyncConnection) -> int | None:
    result = await conn.execute(select(func.min(e.c.created_ms)).where(e.c.state == PENDING))
    value = result.scalar_one()
    return None if value is None else int(value)

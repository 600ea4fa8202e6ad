"""SQL of billing: rate card rows (``''`` is the operator's default card) and the ledger seen
by month. Every function runs in the caller's transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.db import hold_lock
from tresen.relay.schema import ledger, ledger_months, rate_cards

__all__ = [
    "DEFAULT_CARD",
    "LedgerItem",
    "LedgerTotal",
    "RateRow",
    "delete_rates",
    "ledger_items",
    "ledger_items_after",
    "ledger_totals",
    "lock_card",
    "month_totals",
    "rates_of",
    "reduce_ledger",
    "upsert_rates",
]

DEFAULT_CARD = ""  # the owner of the operator's default rows in ``rate_cards``


@dataclass(frozen=True, slots=True)
class RateRow:
    category: str
    country: str
    price_micros: int
    currency: str
    updated_ms: int


async def lock_card(conn: AsyncConnection, owner: str) -> None:
    """PostgreSQL: hold one card until the transaction ends, so that two edits of it (a
    replacement deletes rows the other may be adding) apply one after the other. SQLite has a
    single writer and needs no lock."""
    await hold_lock(conn, f"rate_card:{owner}")


async def rates_of(conn: AsyncConnection, owner: str) -> list[RateRow]:
    rows = await conn.execute(
        select(rate_cards)
        .where(rate_cards.c.business_account == owner)
        .order_by(rate_cards.c.category, rate_cards.c.country)
    )
    return [
        RateRow(r.category, r.country, r.price_micros, r.currency, r.updated_ms) for r in rows.all()
    ]


async def upsert_rates(conn: AsyncConnection, owner: str, rows: Sequence[RateRow]) -> None:
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(rate_cards).values(
        [
            {
                "business_account": owner,
                "category": r.category,
                "country": r.country,
                "price_micros": r.price_micros,
                "currency": r.currency,
                "updated_ms": r.updated_ms,
            }
            for r in rows
        ]
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["business_account", "category", "country"],
            set_={
                "price_micros": statement.excluded.price_micros,
                "currency": statement.excluded.currency,
                "updated_ms": statement.excluded.updated_ms,
            },
        )
    )


async def delete_rates(
    conn: AsyncConnection, owner: str, keys: Sequence[tuple[str, str]] | None = None
) -> int:
    """Delete the owner's rows with these (category, country) keys, or all of them."""
    statement = delete(rate_cards).where(rate_cards.c.business_account == owner)
    if keys is not None:
        if not keys:
            return 0
        statement = statement.where(
            or_(
                *(
                    and_(rate_cards.c.category == category, rate_cards.c.country == country)
                    for category, country in keys
                )
            )
        )
    result = await conn.execute(statement)
    return int(result.rowcount)


@dataclass(frozen=True, slots=True)
class LedgerTotal:
    category: str
    country: str
    currency: str
    count: int
    amount_micros: int


async def ledger_totals(
    conn: AsyncConnection, business: str, start_ms: int, end_ms: int
) -> list[LedgerTotal]:
    """Charges of a business in ``[start_ms, end_ms)`` per (category, country, currency)."""
    rows = await conn.execute(
        select(
            ledger.c.category,
            ledger.c.country,
            ledger.c.currency,
            func.count(),
            func.coalesce(func.sum(ledger.c.price_micros), 0),
        )
        .where(
            ledger.c.business_account == business,
            ledger.c.charged_ms >= start_ms,
            ledger.c.charged_ms < end_ms,
        )
        .group_by(ledger.c.category, ledger.c.country, ledger.c.currency)
    )
    return [LedgerTotal(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows.all()]


@dataclass(frozen=True, slots=True)
class LedgerItem:
    pk: int
    charged_ms: int
    message_id: str
    recipient_account: str
    template_id: int | None
    category: str
    country: str
    price_micros: int
    currency: str


def _after(start_ms: int, after: tuple[int, int] | None) -> ColumnElement[bool]:
    """Rows after the cursor (charged_ms, pk) in the order (charged_ms, pk)."""
    if after is None:
        return ledger.c.charged_ms >= start_ms
    charged_ms, pk = after
    return or_(
        ledger.c.charged_ms > charged_ms,
        and_(ledger.c.charged_ms == charged_ms, ledger.c.pk > pk),
    )


async def ledger_items(
    conn: AsyncConnection,
    business: str,
    start_ms: int,
    end_ms: int,
    after: tuple[int, int] | None,
    limit: int,
) -> list[LedgerItem]:
    """Up to ``limit`` charges in ``[start_ms, end_ms)`` after the cursor, by charge time."""
    rows = await conn.execute(
        select(ledger)
        .where(
            ledger.c.business_account == business,
            ledger.c.charged_ms >= start_ms,
            ledger.c.charged_ms < end_ms,
            _after(start_ms, after),
        )
        .order_by(ledger.c.charged_ms, ledger.c.pk)
        .limit(limit)
    )
    return [
        LedgerItem(
            r.pk,
            r.charged_ms,
            r.message_id,
            r.recipient_account,
            r.template_id,
            r.category,
            r.country,
            r.price_micros,
            r.currency,
        )
        for r in rows.all()
    ]


async def ledger_items_after(
    conn: AsyncConnection, business: str, start_ms: int, end_ms: int, after: tuple[int, int]
) -> int:
    """How many charges in ``[start_ms, end_ms)`` come after the cursor."""
    value = (
        await conn.execute(
            select(func.count()).where(
                ledger.c.business_account == business,
                ledger.c.charged_ms >= start_ms,
                ledger.c.charged_ms < end_ms,
                _after(start_ms, after),
            )
        )
    ).scalar_one()
    return int(value)


async def month_totals(conn: AsyncConnection, business: str, month_ms: int) -> list[LedgerTotal]:
    """The totals of a month whose line items were reduced (``reduce_ledger``)."""
    m = ledger_months
    rows = await conn.execute(
        select(m.c.category, m.c.country, m.c.currency, m.c.count, m.c.amount_micros).where(
            m.c.business_account == business, m.c.month_ms == month_ms
        )
    )
    return [LedgerTotal(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows.all()]


async def reduce_ledger(
    conn: AsyncConnection, before_ms: int, limit: int, month_of: Callable[[int], int]
) -> int:
    """Fold up to ``limit`` charges made before ``before_ms`` into their month's totals per
    (business, category, country, currency), and delete them; ``month_of`` gives the first
    millisecond of a time's month. Returns how many charges were folded."""
    rows = (
        await conn.execute(
            select(
                ledger.c.pk,
                ledger.c.business_account,
                ledger.c.category,
                ledger.c.country,
                ledger.c.currency,
                ledger.c.price_micros,
                ledger.c.charged_ms,
            )
            .where(ledger.c.charged_ms < before_ms)
            .order_by(ledger.c.charged_ms)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        return 0
    sums: dict[tuple[str, int, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        total = sums[
            (r.business_account, month_of(r.charged_ms), r.category, r.country, r.currency)
        ]
        total[0] += 1
        total[1] += int(r.price_micros)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    values = [
        {
            "business_account": business,
            "month_ms": month_ms,
            "category": category,
            "country": country,
            "currency": currency,
            "count": count,
            "amount_micros": amount,
        }
        for (business, month_ms, category, country, currency), (count, amount) in sorted(
            sums.items()
        )
    ]
    for start in range(0, len(values), _WRITE_CHUNK):
        statement = dialect.insert(ledger_months).values(values[start : start + _WRITE_CHUNK])
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["business_account", "month_ms", "category", "country", "currency"],
                set_={
                    "count": ledger_months.c.count + statement.excluded.count,
                    "amount_micros": ledger_months.c.amount_micros
                    + statement.excluded.amount_micros,
                },
            )
        )
    pks = [r.pk for r in rows]
    for start in range(0, len(pks), _WRITE_CHUNK):
        await conn.execute(delete(ledger).where(ledger.c.pk.in_(pks[start : start + _WRITE_CHUNK])))
    return len(rows)


# Rows per statement: far below the limits on bound parameters (SQLite 32,766, asyncpg 32,767).
_WRITE_CHUNK = 500

"""SQL of the platform rules: every function reads or writes a batch in the caller's
transaction (the mailbox's group commit, or a route's own)."""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Select,
    String,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.db import key_pair_params, key_pairs
from tresen.relay.policy.rules import DAY_MS, country_of
from tresen.relay.schema import (
    accounts,
    blocks,
    business_limits,
    business_profiles,
    consents,
    delivery_counts,
    ledger,
    message_pricing,
    messages,
    quality_events,
    rate_cards,
    reach,
    recipients,
    service_windows,
    templates,
)

__all__ = [
    "AccountFacts",
    "LimitsRow",
    "PricingRow",
    "TemplateFacts",
    "account_facts",
    "add_block",
    "add_quality_event",
    "blocked_pairs",
    "blockers_among",
    "blocks_and_windows",
    "blocks_of",
    "charge",
    "consent_states",
    "count_deliveries",
    "delivered_since",
    "insert_pricing",
    "last_counted_negative",
    "limits_of",
    "message_parties",
    "negatives_since",
    "pricing_of",
    "rate_rows",
    "reach_count",
    "reached",
    "received_at",
    "record_reach",
    "record_recipients",
    "remove_block",
    "save_limits",
    "template_facts",
    "touch_windows",
    "uncounted_since",
    "windows",
]

Pair = tuple[str, str]


def _upsert(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    updates: dict[str, Any] | None,
) -> Any:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET updates (or DO NOTHING)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(list(rows))
    if updates is None:
        return statement.on_conflict_do_nothing(index_elements=list(keys))
    values = {k: (v(statement.excluded) if callable(v) else v) for k, v in updates.items()}
    return statement.on_conflict_do_update(index_elements=list(keys), set_=values)


def _params(conn: AsyncConnection, pairs: Iterable[Pair]) -> dict[str, Any]:
    return key_pair_params(conn.dialect.name, sorted(pairs))


def _of_pairs(dialect: str, table: Table, first: str, second: str) -> Select[Any]:
    """``SELECT * FROM table`` where (first, second) is one of the bound pairs
    (:func:`_params`); built once per dialect and statement by its caller."""
    keys = key_pairs(dialect, String(), String())
    return select(table).select_from(
        keys.join(table, and_(table.c[first] == keys.c.a, table.c[second] == keys.c.b))
    )


@functools.cache
def _blocked_pairs(dialect: str) -> Select[Any]:
    return _of_pairs(dialect, blocks, "blocker_account", "blocked_account")


@functools.cache
def _windows(dialect: str) -> Select[Any]:
    return _of_pairs(dialect, service_windows, "business_account", "customer_account")


@functools.cache
def _reached(dialect: str) -> Select[Any]:
    return _of_pairs(dialect, reach, "business_account", "customer_account").where(
        reach.c.at_ms > bindparam("since_ms")
    )


@functools.cache
def _consent_states(dialect: str) -> Select[Any]:
    return _of_pairs(dialect, consents, "business_account", "customer_account").with_only_columns(
        consents.c.business_account,
        consents.c.customer_account,
        consents.c.scope,
        consents.c.state,
        consents.c.source,
    )


# --- accounts ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountFacts:
    kind: str
    phone: str
    verified: bool
    country: str
    """ISO 3166-1 alpha-2 region of the phone number, parsed once."""


async def account_facts(
    conn: AsyncConnection, account_ids: Collection[str]
) -> dict[str, AccountFacts]:
    if not account_ids:
        return {}
    rows = await conn.execute(
        select(accounts.c.id, accounts.c.kind, accounts.c.phone, business_profiles.c.verification)
        .select_from(
            accounts.outerjoin(business_profiles, business_profiles.c.account_id == accounts.c.id)
        )
        .where(accounts.c.id.in_(sorted(account_ids)))
    )
    return {
        r.id: AccountFacts(r.kind, r.phone, r.verification == "verified", country_of(r.phone))
        for r in rows.all()
    }


# --- blocks and quality ------------------------------------------------------------------------


async def blocked_pairs(conn: AsyncConnection, pairs: Collection[Pair]) -> set[Pair]:
    """Those (blocker, blocked) pairs that are blocks now."""
    if not pairs:
        return set()
    rows = await conn.execute(_blocked_pairs(conn.dialect.name), _params(conn, pairs))
    return {(r.blocker_account, r.blocked_account) for r in rows.all()}


async def blockers_among(conn: AsyncConnection, account_ids: Collection[str]) -> set[str]:
    """Those of ``account_ids`` that block anyone (most block nobody)."""
    if not account_ids:
        return set()
    rows = await conn.execute(_blockers_among(), {"accounts": sorted(account_ids)})
    return {r.blocker_account for r in rows.all()}


@functools.cache
def _blockers_among() -> Select[Any]:
    return (
        select(blocks.c.blocker_account)
        .where(blocks.c.blocker_account.in_(bindparam("accounts", expanding=True)))
        .group_by(blocks.c.blocker_account)
    )


async def add_block(conn: AsyncConnection, blocker: str, blocked: str, now_ms: int) -> bool:
    """True if the block is new."""
    result = await conn.execute(
        _upsert(
            conn,
            blocks,
            [{"blocker_account": blocker, "blocked_account": blocked, "created_ms": now_ms}],
            ["blocker_account", "blocked_account"],
            None,
        )
    )
    return bool(result.rowcount)


async def remove_block(conn: AsyncConnection, blocker: str, blocked: str) -> bool:
    result = await conn.execute(
        delete(blocks).where(
            blocks.c.blocker_account == blocker, blocks.c.blocked_account == blocked
        )
    )
    return bool(result.rowcount)


async def blocks_of(conn: AsyncConnection, blocker: str) -> list[tuple[str, int]]:
    rows = await conn.execute(
        select(blocks.c.blocked_account, blocks.c.created_ms)
        .where(blocks.c.blocker_account == blocker)
        .order_by(blocks.c.created_ms)
    )
    return [(r.blocked_account, r.created_ms) for r in rows.all()]


async def add_quality_event(
    conn: AsyncConnection,
    *,
    business: str,
    customer: str,
    kind: str,
    reason: str,
    detail: str,
    message_id: str | None,
    template_id: int | None,
    now_ms: int,
    counted: bool,
) -> None:
    await conn.execute(
        insert(quality_events).values(
            counted=int(counted),
            business_account=business,
            customer_account=customer,
            kind=kind,
            reason=reason,
            detail=detail,
            message_id=message_id,
            template_id=template_id,
            at_ms=now_ms,
        )
    )


async def negatives_since(conn: AsyncConnection, business: str, since_ms: int) -> dict[str, int]:
    """Blocks and reports of a business since ``since_ms`` that count, by kind."""
    rows = await conn.execute(
        select(quality_events.c.kind, func.count())
        .where(
            quality_events.c.business_account == business,
            quality_events.c.at_ms >= since_ms,
            quality_events.c.counted == 1,
        )
        .group_by(quality_events.c.kind)
    )
    return {r[0]: int(r[1]) for r in rows.all()}


async def uncounted_since(conn: AsyncConnection, business: str, since_ms: int) -> int:
    """Blocks and reports of a business since ``since_ms`` kept but not rated."""
    value = (
        await conn.execute(
            select(func.count()).where(
                quality_events.c.business_account == business,
                quality_events.c.at_ms >= since_ms,
                quality_events.c.counted == 0,
            )
        )
    ).scalar_one()
    return int(value)


async def last_counted_negative(conn: AsyncConnection, business: str, customer: str) -> int | None:
    """When the customer's last block or report of the business that counted was made."""
    value = (
        await conn.execute(
            select(func.max(quality_events.c.at_ms)).where(
                quality_events.c.business_account == business,
                quality_events.c.customer_account == customer,
                quality_events.c.counted == 1,
            )
        )
    ).scalar_one()
    return None if value is None else int(value)


async def received_at(conn: AsyncConnection, business: str, customer: str) -> int | None:
    """When the customer last received a message from the business (first delivery)."""
    value = (
        await conn.execute(
            select(recipients.c.delivered_ms).where(
                recipients.c.business_account == business,
                recipients.c.customer_account == customer,
            )
        )
    ).scalar_one_or_none()
    return None if value is None else int(value)


async def record_recipients(conn: AsyncConnection, pairs: Collection[Pair], now_ms: int) -> None:
    """(business, customer) pairs whose message was delivered now."""
    await _stamp_pairs(conn, recipients, "delivered_ms", pairs, now_ms)


async def delivered_since(conn: AsyncConnection, business: str, since_ms: int) -> int:
    """Messages of a business delivered to others on the UTC days from ``since_ms``'s on
    (``delivery_counts``: the message records themselves are gone soon after delivery)."""
    value = (
        await conn.execute(
            select(func.coalesce(func.sum(delivery_counts.c.delivered), 0)).where(
                delivery_counts.c.business_account == business,
                delivery_counts.c.day >= since_ms // DAY_MS,
            )
        )
    ).scalar_one()
    return int(value)


async def count_deliveries(conn: AsyncConnection, counts: dict[tuple[str, int, int], int]) -> None:
    """Add delivered messages per (business, template id or 0, day)."""
    if not counts:
        return
    rows = [
        {"business_account": b, "template_id": t, "day": d, "delivered": n}
        for (b, t, d), n in sorted(counts.items())
    ]
    await conn.execute(
        _upsert(
            conn,
            delivery_counts,
            rows,
            ["business_account", "template_id", "day"],
            {"delivered": lambda excluded: delivery_counts.c.delivered + excluded.delivered},
        )
    )


# --- windows, reach and tiers ------------------------------------------------------------------


async def blocks_and_windows(
    conn: AsyncConnection, pairs: Collection[Pair], window_pairs: Collection[Pair]
) -> tuple[set[Pair], dict[Pair, int]]:
    """:func:`blocked_pairs` of ``pairs`` and :func:`windows` of ``window_pairs`` in one
    round trip (the send path asks both for every batch)."""
    if not window_pairs:
        return await blocked_pairs(conn, pairs), {}
    if not pairs:
        return set(), await windows(conn, window_pairs)
    # Plain IN lists (a superset of the pairs, narrowed below) keep both lookups on their
    # primary keys; pair-wise conditions cost the planners more than the extra rows do.
    accounts = sorted({a for p in pairs for a in p})
    businesses = sorted({b for b, _ in window_pairs})
    customers = sorted({c for _, c in window_pairs})
    blocked = select(
        literal("b").label("what"),
        blocks.c.blocker_account.label("a"),
        blocks.c.blocked_account.label("b"),
        literal(0, BigInteger).label("at"),
    ).where(blocks.c.blocker_account.in_(accounts), blocks.c.blocked_account.in_(accounts))
    opened = select(
        literal("w").label("what"),
        service_windows.c.business_account,
        service_windows.c.customer_account,
        service_windows.c.last_customer_ms,
    ).where(
        service_windows.c.business_account.in_(businesses),
        service_windows.c.customer_account.in_(customers),
    )
    rows = (await conn.execute(union_all(blocked, opened))).all()
    wanted_blocks, wanted_windows = set(pairs), set(window_pairs)
    return (
        {(r[1], r[2]) for r in rows if r[0] == "b" and (r[1], r[2]) in wanted_blocks},
        {(r[1], r[2]): int(r[3]) for r in rows if r[0] == "w" and (r[1], r[2]) in wanted_windows},
    )


async def windows(conn: AsyncConnection, pairs: Collection[Pair]) -> dict[Pair, int]:
    """The customer's last message time per (business, customer)."""
    if not pairs:
        return {}
    rows = await conn.execute(_windows(conn.dialect.name), _params(conn, pairs))
    return {(r.business_account, r.customer_account): r.last_customer_ms for r in rows.all()}


async def touch_windows(conn: AsyncConnection, pairs: Collection[Pair], now_ms: int) -> None:
    await _stamp_pairs(conn, service_windows, "last_customer_ms", pairs, now_ms)


async def _stamp_pairs(
    conn: AsyncConnection, table: Table, column: str, pairs: Collection[Pair], now_ms: int
) -> None:
    """Set ``column`` to ``now_ms`` on each (business, customer) row, creating missing rows."""
    if not pairs:
        return
    rows = [
        {"business_account": b, "customer_account": c, column: now_ms} for b, c in sorted(pairs)
    ]
    await conn.execute(
        _upsert(
            conn,
            table,
            rows,
            ["business_account", "customer_account"],
            {column: lambda excluded: getattr(excluded, column)},
        )
    )


async def reached(conn: AsyncConnection, pairs: Collection[Pair], since_ms: int) -> set[Pair]:
    """Pairs whose customer the business already reached after ``since_ms``."""
    if not pairs:
        return set()
    rows = await conn.execute(
        _reached(conn.dialect.name), {**_params(conn, pairs), "since_ms": since_ms}
    )
    return {(r.business_account, r.customer_account) for r in rows.all()}


async def reach_count(conn: AsyncConnection, business: str, since_ms: int) -> int:
    value = (
        await conn.execute(
            select(func.count()).where(
                reach.c.business_account == business, reach.c.at_ms > since_ms
            )
        )
    ).scalar_one()
    return int(value)


async def record_reach(conn: AsyncConnection, pairs: Collection[Pair], now_ms: int) -> None:
    if not pairs:
        return
    rows = [
        {"business_account": b, "customer_account": c, "at_ms": now_ms} for b, c in sorted(pairs)
    ]
    await conn.execute(
        _upsert(
            conn,
            reach,
            rows,
            ["business_account", "customer_account"],
            {"at_ms": lambda excluded: excluded.at_ms},
        )
    )


@dataclass(frozen=True, slots=True)
class LimitsRow:
    business_account: str
    tier: int
    evaluated_ms: int
    throughput_mps: int | None


async def limits_of(conn: AsyncConnection, businesses: Collection[str]) -> dict[str, LimitsRow]:
    if not businesses:
        return {}
    rows = await conn.execute(
        select(business_limits).where(business_limits.c.business_account.in_(sorted(businesses)))
    )
    return {
        r.business_account: LimitsRow(r.business_account, r.tier, r.evaluated_ms, r.throughput_mps)
        for r in rows.all()
    }


async def save_limits(conn: AsyncConnection, row: LimitsRow, now_ms: int) -> None:
    await conn.execute(
        _upsert(
            conn,
            business_limits,
            [
                {
                    "business_account": row.business_account,
                    "tier": row.tier,
                    "evaluated_ms": row.evaluated_ms,
                    "throughput_mps": row.throughput_mps,
                    "updated_ms": now_ms,
                }
            ],
            ["business_account"],
            {
                "tier": row.tier,
                "evaluated_ms": row.evaluated_ms,
                "throughput_mps": row.throughput_mps,
                "updated_ms": now_ms,
            },
        )
    )


# --- consent -----------------------------------------------------------------------------------


async def consent_states(
    conn: AsyncConnection, pairs: Collection[Pair]
) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(state, source) per (business, customer, scope)."""
    if not pairs:
        return {}
    rows = await conn.execute(_consent_states(conn.dialect.name), _params(conn, pairs))
    return {
        (r.business_account, r.customer_account, r.scope): (r.state, r.source) for r in rows.all()
    }


# --- pricing and billing -----------------------------------------------------------------------


async def rate_rows(
    conn: AsyncConnection, businesses: Collection[str]
) -> dict[tuple[str, str, str], tuple[int, str]]:
    """(price micros, currency) per (business or '' for the default card, category, country)."""
    rows = await conn.execute(
        select(rate_cards).where(rate_cards.c.business_account.in_(sorted({"", *businesses})))
    )
    return {
        (r.business_account, r.category, r.country): (r.price_micros, r.currency)
        for r in rows.all()
    }


@dataclass(frozen=True, slots=True)
class PricingRow:
    message_id: str
    business_account: str
    recipient_account: str
    template_id: int | None
    category: str
    billable: bool
    pricing_type: str
    country: str
    price_micros: int
    currency: str
    server_ms: int


async def insert_pricing(conn: AsyncConnection, rows: Iterable[PricingRow]) -> None:
    values = [
        {
            "message_id": r.message_id,
            "business_account": r.business_account,
            "recipient_account": r.recipient_account,
            "template_id": r.template_id,
            "category": r.category,
            "billable": int(r.billable),
            "pricing_type": r.pricing_type,
            "country": r.country,
            "price_micros": r.price_micros,
            "currency": r.currency,
            "server_ms": r.server_ms,
        }
        for r in rows
    ]
    if values:
        await conn.execute(insert(message_pricing), values)


async def pricing_of(conn: AsyncConnection, message_ids: Collection[str]) -> dict[str, PricingRow]:
    if not message_ids:
        return {}
    rows = await conn.execute(
        select(message_pricing).where(message_pricing.c.message_id.in_(sorted(message_ids)))
    )
    return {
        r.message_id: PricingRow(
            r.message_id,
            r.business_account,
            r.recipient_account,
            r.template_id,
            r.category,
            bool(r.billable),
            r.pricing_type,
            r.country,
            r.price_micros,
            r.currency,
            r.server_ms,
        )
        for r in rows.all()
    }


async def charge(conn: AsyncConnection, rows: Iterable[PricingRow], now_ms: int) -> None:
    """One ledger row per billable message; a message already charged is skipped."""
    values = [
        {
            "business_account": r.business_account,
            "message_id": r.message_id,
            "recipient_account": r.recipient_account,
            "template_id": r.template_id,
            "category": r.category,
            "country": r.country,
            "price_micros": r.price_micros,
            "currency": r.currency,
            "charged_ms": now_ms,
        }
        for r in rows
        if r.billable
    ]
    if values:
        await conn.execute(_upsert(conn, ledger, values, ["message_id"], None))


async def message_parties(conn: AsyncConnection, message_id: str) -> tuple[str, str] | None:
    """Sender and recipient account of a message the relay still knows."""
    row = (
        await conn.execute(
            select(messages.c.sender_account, messages.c.recipient_account).where(
                messages.c.message_id == message_id
            )
        )
    ).one_or_none()
    return None if row is None else (row.sender_account, row.recipient_account)


# --- templates (what the send check needs) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateFacts:
    id: int
    business_account: str
    category: str
    status: str
    paused_until_ms: int | None


async def template_facts(conn: AsyncConnection, ids: Collection[int]) -> dict[int, TemplateFacts]:
    if not ids:
        return {}
    rows = await conn.execute(
        select(
            templates.c.id,
            templates.c.business_account,
            templates.c.category,
            templates.c.status,
            templates.c.paused_until_ms,
        ).where(templates.c.id.in_(sorted(ids)))
    )
    return {
        r.id: TemplateFacts(r.id, r.business_account, r.category, r.status, r.paused_until_ms)
        for r in rows.all()
    }

"""SQL of consent: the current state per business, customer and scope (``consents``) and the
append-only history of every change (``consent_log``).

Every function runs inside a transaction the caller opened (``db.read()`` or ``db.write()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import desc, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.db import hold_lock
from tresen.core.ids import AccountId
from tresen.relay.schema import business_profiles, consent_log, consents

__all__ = [
    "ConsentRow",
    "LoggedConsent",
    "business_names",
    "current",
    "for_customer",
    "history",
    "lock_pair",
    "put",
]


@dataclass(frozen=True, slots=True)
class ConsentRow:
    """One scope's consent between a business and a customer.

    ``source`` is ``customer`` (then ``statement``, ``signature`` and ``device_id`` hold the
    signed statement) or ``business`` (then ``evidence`` and ``evidence_ms`` hold what the
    business attested)."""

    business_account: AccountId
    customer_account: AccountId
    scope: str
    state: str
    source: str
    statement: bytes | None
    signature: str | None
    device_id: int | None
    evidence: str | None
    evidence_ms: int | None
    updated_ms: int


@dataclass(frozen=True, slots=True)
class LoggedConsent:
    """A change as the history keeps it: the row as it was written, and when."""

    row: ConsentRow
    at_ms: int


_FIELDS = (
    "business_account",
    "customer_account",
    "scope",
    "state",
    "source",
    "statement",
    "signature",
    "device_id",
    "evidence",
    "evidence_ms",
)


def _row(m: object, updated_ms: int) -> ConsentRow:
    values = {name: getattr(m, name) for name in _FIELDS}
    statement = values["statement"]
    return ConsentRow(
        business_account=AccountId(values["business_account"]),
        customer_account=AccountId(values["customer_account"]),
        scope=str(values["scope"]),
        state=str(values["state"]),
        source=str(values["source"]),
        statement=None if statement is None else bytes(statement),
        signature=values["signature"],
        device_id=values["device_id"],
        evidence=values["evidence"],
        evidence_ms=values["evidence_ms"],
        updated_ms=updated_ms,
    )


async def lock_pair(conn: AsyncConnection, business: AccountId, customer: AccountId) -> None:
    """PostgreSQL: hold the pair until the transaction ends, so that two changes of one
    pair's consent are checked against the stored one in turn (a row lock would not cover a
    scope that has no row yet). SQLite has a single writer and needs no lock."""
    await hold_lock(conn, f"consent:{business}:{customer}")


async def current(
    conn: AsyncConnection, business: AccountId, customer: AccountId
) -> dict[str, ConsentRow]:
    """The pair's consent by scope."""
    rows = await conn.execute(
        select(consents).where(
            consents.c.business_account == business, consents.c.customer_account == customer
        )
    )
    return {str(r.scope): _row(r, r.updated_ms) for r in rows}


async def put(conn: AsyncConnection, row: ConsentRow, *, existed: bool) -> None:
    """Make ``row`` the pair's consent in its scope and append it to the history."""
    values = {name: getattr(row, name) for name in _FIELDS}
    if existed:
        await conn.execute(
            update(consents)
            .where(
                consents.c.business_account == row.business_account,
                consents.c.customer_account == row.customer_account,
                consents.c.scope == row.scope,
            )
            .values(**values, updated_ms=row.updated_ms)
        )
    else:
        await conn.execute(insert(consents).values(**values, updated_ms=row.updated_ms))
    await conn.execute(insert(consent_log).values(**values, at_ms=row.updated_ms))


async def for_customer(conn: AsyncConnection, customer: AccountId) -> list[ConsentRow]:
    """Every consent of ``customer``, by business and scope."""
    rows = await conn.execute(
        select(consents)
        .where(consents.c.customer_account == customer)
        .order_by(consents.c.business_account, consents.c.scope)
    )
    return [_row(r, r.updated_ms) for r in rows]


async def business_names(
    conn: AsyncConnection, accounts: Sequence[AccountId]
) -> dict[AccountId, str]:
    """Display names of those of ``accounts`` that have a business profile."""
    if not accounts:
        return {}
    rows = await conn.execute(
        select(business_profiles.c.account_id, business_profiles.c.display_name).where(
            business_profiles.c.account_id.in_(sorted(set(accounts)))
        )
    )
    return {AccountId(r.account_id): str(r.display_name) for r in rows}


async def history(
    conn: AsyncConnection, business: AccountId, customer: AccountId, limit: int
) -> list[LoggedConsent]:
    """The pair's changes, newest first."""
    rows = await conn.execute(
        select(consent_log)
        .where(
            consent_log.c.business_account == business,
            consent_log.c.customer_account == customer,
        )
        .order_by(desc(consent_log.c.pk))
        .limit(limit)
    )
    return [LoggedConsent(_row(r, r.at_ms), r.at_ms) for r in rows]

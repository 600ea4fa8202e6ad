"""SQL of message templates and of the quality signals that judge them.

:func:`templates_by_ids` is the send path's lookup (the policy checks read it); everything
else serves :mod:`tresen.relay.templates.service`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, desc, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.ids import AccountId
from tresen.relay.schema import delivery_counts, quality_events, templates
from tresen.wire.templates import (
    AnyComponent,
    ParameterFormat,
    TemplateCategory,
    TemplateQuality,
    TemplateStatus,
    decode_components,
    encode_components,
)

__all__ = [
    "TemplateRecord",
    "TemplateRow",
    "delete_template_row",
    "delivered_since",
    "find_by_name",
    "insert_template",
    "list_templates",
    "mark_deleted",
    "negative_counts",
    "record_by_id",
    "set_quality_state",
    "set_signed",
    "set_status",
    "templates_by_ids",
    "templates_to_judge",
]

t = templates

_ROW_COLUMNS = (
    t.c.id,
    t.c.business_account,
    t.c.name,
    t.c.language,
    t.c.category,
    t.c.parameter_format,
    t.c.status,
    t.c.rejected_reason,
    t.c.quality,
    t.c.pauses,
    t.c.paused_until_ms,
    t.c.created_ms,
    t.c.updated_ms,
)


@dataclass(frozen=True, slots=True)
class TemplateRow:
    """A template's state, without its components (what the send path needs)."""

    id: int
    business_account: AccountId
    name: str
    language: str
    category: TemplateCategory
    parameter_format: ParameterFormat
    status: TemplateStatus
    rejected_reason: str | None
    quality: TemplateQuality
    pauses: int
    paused_until_ms: int | None
    created_ms: int
    updated_ms: int

    def status_at(self, now_ms: int) -> TemplateStatus:
        """The status as senders meet it: a pause that has ended counts as APPROVED even
        before the relay writes so (quality evaluation does, lazily)."""
        if (
            self.status is TemplateStatus.PAUSED
            and self.paused_until_ms is not None
            and now_ms >= self.paused_until_ms
        ):
            return TemplateStatus.APPROVED
        return self.status


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    """A whole template: its state, its components and, once approved, its signed form."""

    row: TemplateRow
    components: list[AnyComponent]
    signed_body: bytes | None
    signature: str | None


def _row(row: Any) -> TemplateRow:
    m = row._mapping
    return TemplateRow(
        id=int(m["id"]),
        business_account=AccountId(m["business_account"]),
        name=m["name"],
        language=m["language"],
        category=TemplateCategory(m["category"]),
        parameter_format=ParameterFormat(m["parameter_format"]),
        status=TemplateStatus(m["status"]),
        rejected_reason=m["rejected_reason"],
        quality=TemplateQuality(m["quality"]),
        pauses=int(m["pauses"]),
        paused_until_ms=m["paused_until_ms"],
        created_ms=m["created_ms"],
        updated_ms=m["updated_ms"],
    )


def _record(row: Any) -> TemplateRecord:
    m = row._mapping
    signed = m["signed_body"]
    return TemplateRecord(
        row=_row(row),
        components=decode_components(m["components"]),
        signed_body=None if signed is None else bytes(signed),
        signature=m["signature"],
    )


def _locked(stmt: Select[Any], conn: AsyncConnection, lock: bool) -> Select[Any]:
    # SQLite has one writer; PostgreSQL locks the row until the transaction ends.
    if lock and conn.dialect.name != "sqlite":
        return stmt.with_for_update()
    return stmt


async def templates_by_ids(conn: AsyncConnection, ids: Collection[int]) -> dict[int, TemplateRow]:
    """The templates with these ids (unknown ids are left out), for the send-path checks.

    A row's ``status`` is as stored: a PAUSED template whose ``paused_until_ms`` has passed
    is sendable again (:meth:`TemplateRow.status_at`). Only APPROVED templates may be sent;
    otherwise 132001 (PENDING, REJECTED, DELETED or unknown), 132015 (PAUSED) or 132016
    (DISABLED).
    """
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return {}
    rows = await conn.execute(select(*_ROW_COLUMNS).where(t.c.id.in_(wanted)))
    return {r.id: r for r in map(_row, rows)}


async def record_by_id(
    conn: AsyncConnection, template_id: int, *, lock: bool = False
) -> TemplateRecord | None:
    stmt = _locked(select(t).where(t.c.id == template_id), conn, lock)
    row = (await conn.execute(stmt)).first()
    return None if row is None else _record(row)


async def find_by_name(
    conn: AsyncConnection, business_account: AccountId, name: str, language: str | None = None
) -> list[TemplateRow]:
    """The business's templates of that name (in one language, or in all), by id."""
    stmt = select(*_ROW_COLUMNS).where(t.c.business_account == business_account, t.c.name == name)
    if language is not None:
        stmt = stmt.where(t.c.language == language)
    rows = await conn.execute(stmt.order_by(t.c.id))
    return [_row(r) for r in rows]


async def insert_template(
    conn: AsyncConnection,
    *,
    business_account: AccountId,
    name: str,
    language: str,
    category: TemplateCategory,
    parameter_format: ParameterFormat,
    components: list[AnyComponent],
    now_ms: int,
) -> int:
    """A new PENDING template; returns its id. Raises ``IntegrityError`` when the business
    has a template of that name and language already."""
    new_id = (
        await conn.execute(
            insert(t)
            .values(
                business_account=business_account,
                name=name,
                language=language,
                category=category.value,
                parameter_format=parameter_format.value,
                components=encode_components(components),
                status=TemplateStatus.PENDING.value,
                quality=TemplateQuality.UNKNOWN.value,
                pauses=0,
                created_ms=now_ms,
                updated_ms=now_ms,
            )
            .returning(t.c.id)
        )
    ).scalar_one()
    return int(new_id)


async def delete_template_row(conn: AsyncConnection, template_id: int) -> None:
    """Remove a row for good (a rejected template submitted again, or a deleted one whose
    name is free again)."""
    await conn.execute(delete(t).where(t.c.id == template_id))


async def list_templates(
    conn: AsyncConnection,
    *,
    business_account: AccountId | None,
    statuses: Collection[TemplateStatus] | None,
    name: str | None,
    after_id: int,
    limit: int,
    newest_first: bool = False,
) -> list[TemplateRecord]:
    """Templates by id (from ``after_id`` on), optionally of one business, in some statuses,
    with a name containing ``name``."""
    stmt = select(t)
    if business_account is not None:
        stmt = stmt.where(t.c.business_account == business_account)
    if statuses is not None:
        stmt = stmt.where(t.c.status.in_(sorted(s.value for s in statuses)))
    if name:
        stmt = stmt.where(t.c.name.contains(name, autoescape=True))
    if newest_first:
        if after_id:
            stmt = stmt.where(t.c.id < after_id)
        stmt = stmt.order_by(desc(t.c.id))
    else:
        stmt = stmt.where(t.c.id > after_id).order_by(t.c.id)
    rows = await conn.execute(stmt.limit(limit))
    return [_record(r) for r in rows]


async def set_status(
    conn: AsyncConnection,
    template_id: int,
    status: TemplateStatus,
    now_ms: int,
    *,
    rejected_reason: str | None = None,
) -> None:
    await conn.execute(
        update(t)
        .where(t.c.id == template_id)
        .values(status=status.value, rejected_reason=rejected_reason, updated_ms=now_ms)
    )


async def mark_deleted(conn: AsyncConnection, ids: Collection[int], now_ms: int) -> None:
    if ids:
        await conn.execute(
            update(t)
            .where(t.c.id.in_(sorted(ids)))
            .values(status=TemplateStatus.DELETED.value, updated_ms=now_ms)
        )


async def set_signed(
    conn: AsyncConnection,
    template_id: int,
    *,
    body: bytes,
    signature: str,
    status: TemplateStatus | None,
    now_ms: int,
) -> None:
    """Store the signed form (and, on approval, the new status)."""
    values: dict[str, Any] = {"signed_body": body, "signature": signature}
    if status is not None:
        values.update(status=status.value, rejected_reason=None, updated_ms=now_ms)
    await conn.execute(update(t).where(t.c.id == template_id).values(**values))


async def set_quality_state(
    conn: AsyncConnection,
    template_id: int,
    *,
    status: TemplateStatus,
    quality: TemplateQuality,
    pauses: int,
    paused_until_ms: int | None,
    now_ms: int,
) -> None:
    await conn.execute(
        update(t)
        .where(t.c.id == template_id)
        .values(
            status=status.value,
            quality=quality.value,
            pauses=pauses,
            paused_until_ms=paused_until_ms,
            updated_ms=now_ms,
        )
    )


# --- quality signals -------------------------------------------------------------------------


async def templates_to_judge(
    conn: AsyncConnection, business_account: AccountId | None
) -> list[TemplateRow]:
    """Templates whose quality counts: approved (sendable) or paused ones."""
    stmt = select(*_ROW_COLUMNS).where(
        t.c.status.in_([TemplateStatus.APPROVED.value, TemplateStatus.PAUSED.value])
    )
    if business_account is not None:
        stmt = stmt.where(t.c.business_account == business_account)
    rows = await conn.execute(stmt.order_by(t.c.id))
    return [_row(r) for r in rows]


async def negative_counts(
    conn: AsyncConnection, ids: Collection[int], since_ms: int
) -> dict[int, int]:
    """Customers who blocked or reported after each template since ``since_ms``.

    Distinct customers: one customer reporting the same template again and again is one
    unhappy customer, as for the business's own rating.
    """
    if not ids:
        return {}
    q = quality_events
    rows = await conn.execute(
        select(q.c.template_id, func.count(q.c.customer_account.distinct()))
        .where(q.c.template_id.in_(sorted(ids)), q.c.at_ms >= since_ms)
        .group_by(q.c.template_id)
    )
    return {int(r[0]): int(r[1]) for r in rows}


async def delivered_since(
    conn: AsyncConnection, ids: Collection[int], since_day: int
) -> dict[int, int]:
    """Delivered messages of each template on the UTC days from ``since_day`` on."""
    if not ids:
        return {}
    d = delivery_counts
    rows = await conn.execute(
        select(d.c.template_id, func.sum(d.c.delivered))
        .where(d.c.template_id.in_(sorted(ids)), d.c.day >= since_day)
        .group_by(d.c.template_id)
    )
    return {int(r[0]): int(r[1] or 0) for r in rows}

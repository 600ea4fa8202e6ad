"""SQL of business profiles, their pictures and verification requests.

The operator's SQL (``relay/operator/repo.py``) reads and decides the same profiles and
requests; the queries both sides need live here, once: the administrative view of a profile
(:func:`business`), its row lock, the verification state, and request rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.db import hold_lock
from tresen.core.ids import AccountId
from tresen.relay.schema import accounts, business_profiles, verification_requests
from tresen.wire.business import BusinessCategory, Verification, WeeklyHours

__all__ = [
    "BusinessRow",
    "ProfileRow",
    "RequestRow",
    "RequestState",
    "business",
    "get_picture",
    "get_profile",
    "insert_profile",
    "insert_request",
    "last_decided_request",
    "lock_account",
    "lock_name",
    "mark_business",
    "pending_request",
    "request_row",
    "search",
    "set_picture",
    "set_verification",
    "update_profile",
    "verified_with_skeleton",
]

bp = business_profiles
vr = verification_requests


class RequestState(StrEnum):
    """States of a verification request (``verification_requests.state``)."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class ProfileRow:
    account_id: AccountId
    display_name: str
    name_skeleton: str
    about: str
    description: str
    address: str
    email: str
    websites: tuple[str, ...]
    category: BusinessCategory
    timezone: str
    hours: WeeklyHours
    closed_dates: tuple[date, ...]
    has_picture: bool
    verification: Verification
    suspended_ms: int | None
    suspend_reason: str | None
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class BusinessRow:
    """The administrative fields of a profile, with the account's phone number and kind."""

    account_id: AccountId
    phone: str
    kind: str
    display_name: str
    name_skeleton: str
    verification: str
    suspended_ms: int | None
    suspend_reason: str | None
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class RequestRow:
    """A verification request; the last three fields are filled by the operator's listings,
    which join the profile and the account."""

    id: int
    account_id: AccountId
    state: str
    note: str
    reason: str | None
    requested_ms: int
    decided_ms: int | None
    decided_by: str | None = None
    display_name: str | None = None
    phone: str | None = None
    verification: str | None = None


# Every column but the picture itself, which only its own route reads.
_PROFILE_COLUMNS = [c for c in bp.c if c.name not in ("picture", "picture_type")] + [
    bp.c.picture_type.is_not(None).label("has_picture")
]


def _profile(row: Any) -> ProfileRow:
    m = row._mapping
    try:
        category = BusinessCategory(m["category"])
    except ValueError:
        category = BusinessCategory.OTHER
    return ProfileRow(
        account_id=AccountId(m["account_id"]),
        display_name=m["display_name"],
        name_skeleton=m["name_skeleton"],
        about=m["about"],
        description=m["description"],
        address=m["address"],
        email=m["email"],
        websites=tuple(json.loads(m["websites"])),
        category=category,
        timezone=m["timezone"],
        hours=WeeklyHours.parse(json.loads(m["hours"])),
        closed_dates=tuple(date.fromisoformat(d) for d in json.loads(m["closed_dates"])),
        has_picture=bool(m["has_picture"]),
        verification=Verification(m["verification"]),
        suspended_ms=m["suspended_ms"],
        suspend_reason=m["suspend_reason"],
        created_ms=m["created_ms"],
        updated_ms=m["updated_ms"],
    )


def request_row(row: Any) -> RequestRow:
    """A request from a row of ``verification_requests``, joined or not."""
    m = row._mapping
    return RequestRow(
        id=int(m["id"]),
        account_id=AccountId(m["account_id"]),
        state=m["state"],
        note=m["note"],
        reason=m["reason"],
        requested_ms=m["requested_ms"],
        decided_ms=m["decided_ms"],
        decided_by=m.get("decided_by"),
        display_name=m.get("display_name"),
        phone=m.get("phone"),
        verification=m.get("verification"),
    )


_S = TypeVar("_S", bound=Select[Any])


def _locking_profile(stmt: _S, conn: AsyncConnection) -> _S:
    """``stmt`` locking the profile row it reads until the transaction ends (PostgreSQL;
    SQLite has one writer and no row locks)."""
    if conn.dialect.name == "sqlite":
        return stmt
    return stmt.with_for_update(of=bp)


def encode_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Column values for profile fields: lists and schedules as JSON text."""
    out = dict(values)
    if "websites" in out:
        out["websites"] = json.dumps(list(out["websites"]))
    if "hours" in out:
        out["hours"] = json.dumps(out["hours"].to_json(), separators=(",", ":"))
    if "closed_dates" in out:
        out["closed_dates"] = json.dumps([d.isoformat() for d in out["closed_dates"]])
    if "category" in out:
        out["category"] = str(out["category"])
    if "verification" in out:
        out["verification"] = str(out["verification"])
    return out


async def lock_account(conn: AsyncConnection, account_id: AccountId) -> str | None:
    """The account's kind; on PostgreSQL its row stays locked until the transaction ends, so
    the saves and requests of one account run one after another (SQLite has one writer).

    ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: rows that merely reference the account (the
    operator's certificates, verification requests) can still be inserted meanwhile, so a
    transaction that holds a profile row and inserts such a row never waits for this one.
    """
    value = (
        await conn.execute(
            select(accounts.c.kind)
            .where(accounts.c.id == account_id)
            .with_for_update(key_share=True)
        )
    ).scalar_one_or_none()
    return None if value is None else str(value)


async def lock_name(conn: AsyncConnection, skeleton: str) -> None:
    """PostgreSQL: hold a name skeleton until the transaction ends, so that whoever checks
    it against the verified names (a rename, a verification) does so one at a time. SQLite
    has a single writer and needs no lock."""
    await hold_lock(conn, "business-name:" + skeleton)


async def mark_business(conn: AsyncConnection, account_id: AccountId) -> None:
    await conn.execute(update(accounts).where(accounts.c.id == account_id).values(kind="business"))


async def get_profile(
    conn: AsyncConnection, account_id: AccountId, *, lock: bool = False
) -> ProfileRow | None:
    """The profile of ``account_id``; with ``lock`` its row stays locked (PostgreSQL) until
    the transaction ends, so the operator cannot verify a name that is being changed."""
    stmt = select(*_PROFILE_COLUMNS).where(bp.c.account_id == account_id)
    if lock:
        stmt = _locking_profile(stmt, conn)
    row = (await conn.execute(stmt)).first()
    return None if row is None else _profile(row)


async def business(
    conn: AsyncConnection, account_id: AccountId, *, for_update: bool = False
) -> BusinessRow | None:
    """The profile's administrative fields, with the account's phone number; ``for_update``
    locks the profile row as :func:`get_profile` does."""
    stmt = (
        select(
            bp.c.account_id,
            accounts.c.phone,
            accounts.c.kind,
            bp.c.display_name,
            bp.c.name_skeleton,
            bp.c.verification,
            bp.c.suspended_ms,
            bp.c.suspend_reason,
            bp.c.created_ms,
            bp.c.updated_ms,
        )
        .select_from(bp.join(accounts, accounts.c.id == bp.c.account_id))
        .where(bp.c.account_id == account_id)
    )
    if for_update:
        stmt = _locking_profile(stmt, conn)
    row = (await conn.execute(stmt)).first()
    if row is None:
        return None
    m = row._mapping
    return BusinessRow(
        account_id=AccountId(m["account_id"]),
        phone=m["phone"],
        kind=m["kind"],
        display_name=m["display_name"],
        name_skeleton=m["name_skeleton"],
        verification=m["verification"],
        suspended_ms=m["suspended_ms"],
        suspend_reason=m["suspend_reason"],
        created_ms=m["created_ms"],
        updated_ms=m["updated_ms"],
    )


async def insert_profile(
    conn: AsyncConnection, account_id: AccountId, fields: dict[str, Any], now_ms: int
) -> None:
    await conn.execute(
        insert(bp).values(
            account_id=account_id, created_ms=now_ms, updated_ms=now_ms, **encode_fields(fields)
        )
    )


async def update_profile(
    conn: AsyncConnection, account_id: AccountId, fields: dict[str, Any], now_ms: int
) -> None:
    await conn.execute(
        update(bp)
        .where(bp.c.account_id == account_id)
        .values(updated_ms=now_ms, **encode_fields(fields))
    )


async def set_verification(
    conn: AsyncConnection, account_id: AccountId, verification: str, now_ms: int
) -> None:
    await conn.execute(
        update(bp)
        .where(bp.c.account_id == account_id)
        .values(verification=str(verification), updated_ms=now_ms)
    )


async def verified_with_skeleton(
    conn: AsyncConnection, skeleton: str, other_than: AccountId
) -> tuple[AccountId, str] | None:
    """A verified business, other than ``other_than``, whose name has this skeleton."""
    row = (
        await conn.execute(
            select(bp.c.account_id, bp.c.display_name)
            .where(
                bp.c.name_skeleton == skeleton,
                bp.c.verification == Verification.VERIFIED.value,
                bp.c.account_id != other_than,
            )
            .order_by(bp.c.account_id)
            .limit(1)
        )
    ).first()
    return None if row is None else (AccountId(row[0]), str(row[1]))


async def set_picture(
    conn: AsyncConnection,
    account_id: AccountId,
    picture: bytes | None,
    picture_type: str | None,
    now_ms: int,
) -> bool:
    """Store (or with ``None`` remove) the picture; false when there is no profile."""
    result = await conn.execute(
        update(bp)
        .where(bp.c.account_id == account_id)
        .values(picture=picture, picture_type=picture_type, updated_ms=now_ms)
    )
    return bool(result.rowcount)


async def get_picture(
    conn: AsyncConnection, account_id: AccountId
) -> tuple[bytes, str, int | None] | None:
    """(bytes, MIME type, suspended_ms) of a business's picture, if it has one."""
    row = (
        await conn.execute(
            select(bp.c.picture, bp.c.picture_type, bp.c.suspended_ms).where(
                bp.c.account_id == account_id, bp.c.picture.is_not(None)
            )
        )
    ).first()
    if row is None:
        return None
    return bytes(row[0]), str(row[1]), row[2]


async def pending_request(conn: AsyncConnection, account_id: AccountId) -> RequestRow | None:
    row = (
        await conn.execute(
            select(vr)
            .where(vr.c.account_id == account_id, vr.c.state == RequestState.PENDING.value)
            .order_by(vr.c.id.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else request_row(row)


async def last_decided_request(conn: AsyncConnection, account_id: AccountId) -> RequestRow | None:
    row = (
        await conn.execute(
            select(vr)
            .where(vr.c.account_id == account_id, vr.c.decided_ms.is_not(None))
            .order_by(vr.c.id.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else request_row(row)


async def insert_request(
    conn: AsyncConnection, account_id: AccountId, note: str, now_ms: int
) -> RequestRow:
    request_id = (
        await conn.execute(
            insert(vr)
            .values(
                account_id=account_id,
                state=RequestState.PENDING.value,
                note=note,
                requested_ms=now_ms,
            )
            .returning(vr.c.id)
        )
    ).scalar_one()
    return RequestRow(
        int(request_id), account_id, RequestState.PENDING.value, note, None, now_ms, None
    )


async def search(
    conn: AsyncConnection,
    *,
    skeleton: str,
    text: str,
    category: BusinessCategory | None,
    limit: int,
) -> list[ProfileRow]:
    """Listed businesses whose name matches: verified ones first, then by name.

    ``skeleton`` is matched as a substring of the name skeletons, ``text`` (lower case) of
    the lower-cased display names; a business matching either is found. With neither, every
    listed business matches.
    """
    stmt = select(*_PROFILE_COLUMNS).where(bp.c.suspended_ms.is_(None))
    if category is not None:
        stmt = stmt.where(bp.c.category == category.value)
    matches: list[ColumnElement[bool]] = []
    if skeleton:
        matches.append(bp.c.name_skeleton.contains(skeleton, autoescape=True))
    if text:
        matches.append(func.lower(bp.c.display_name).contains(text, autoescape=True))
    if matches:
        stmt = stmt.where(or_(*matches))
    by_name: ColumnElement[str] = func.lower(bp.c.display_name)
    if conn.dialect.name == "postgresql":
        # Code-point order, as SQLite compares: the same list on both databases.
        by_name = by_name.collate("C")
    stmt = stmt.order_by(
        case((bp.c.verification == Verification.VERIFIED.value, 0), else_=1),
        by_name,
        bp.c.account_id,
    ).limit(limit)
    return [_profile(row) for row in await conn.execute(stmt)]

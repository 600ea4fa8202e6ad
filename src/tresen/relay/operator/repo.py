"""SQL of the operator: signing keys, certificates, operator tokens, the audit log, and the
verification fields of business profiles and requests.

Queries of profiles and requests that the business directory shares (the administrative view
of a profile and its lock, the verification state, request rows) are defined once in
``relay/businesses/repo.py`` and re-exported here.

Every function runs inside a transaction the caller opened (``db.read()`` or ``db.write()``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, desc, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.db import hold_lock
from tresen.core.ids import AccountId
from tresen.relay.audit import add_audit
from tresen.relay.businesses.repo import (
    BusinessRow,
    RequestRow,
    business,
    pending_request,
    request_row,
    set_verification,
)
from tresen.relay.schema import (
    accounts,
    admin_audit,
    business_profiles,
    certificates,
    devices,
    operator_keys,
    operator_tokens,
    verification_requests,
)

__all__ = [
    "AccountRow",
    "AuditRow",
    "BusinessRow",
    "CertificateRow",
    "OperatorKeyRow",
    "RequestRow",
    "TokenRow",
    "account_by_phone",
    "add_audit",
    "allocate_certificate",
    "audit_entries",
    "business",
    "certificates_due",
    "certificates_of",
    "current_certificates",
    "current_operator_key",
    "decide_request",
    "device_keys",
    "insert_operator_key",
    "insert_token",
    "list_operator_keys",
    "list_requests",
    "list_tokens",
    "lock_operator_keys",
    "pending_request",
    "reissuable_certificates",
    "requests_of",
    "retire_operator_key",
    "revoke_certificates",
    "revoke_token",
    "revoked_serials",
    "set_suspension",
    "set_verification",
    "store_certificate",
    "token_by_hash",
    "token_by_name",
    "unrevoked_serials",
]


# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperatorKeyRow:
    key_id: str
    public_key: str
    private_sealed: bytes
    endorsement: str | None
    created_ms: int
    signs_from_ms: int
    retires_ms: int | None


@dataclass(frozen=True, slots=True)
class TokenRow:
    name: str
    token_hash: bytes
    created_ms: int
    revoked_ms: int | None


@dataclass(frozen=True, slots=True)
class AccountRow:
    account_id: AccountId
    phone: str
    kind: str
    business: bool


@dataclass(frozen=True, slots=True)
class CertificateRow:
    serial: int
    account_id: AccountId
    body: bytes
    signature: str
    key_id: str
    issued_ms: int
    expires_ms: int
    revoked_ms: int | None
    revoke_reason: str | None


@dataclass(frozen=True, slots=True)
class AuditRow:
    at_ms: int
    operator: str
    action: str
    account_id: AccountId | None
    details: dict[str, Any]


def _m(row: Any) -> Any:
    return row._mapping


def _key(row: Any) -> OperatorKeyRow:
    m = _m(row)
    return OperatorKeyRow(
        key_id=m["key_id"],
        public_key=m["public_key"],
        private_sealed=bytes(m["private_sealed"]),
        endorsement=m["endorsement"],
        created_ms=m["created_ms"],
        signs_from_ms=m["signs_from_ms"],
        retires_ms=m["retires_ms"],
    )


def _certificate(row: Any) -> CertificateRow:
    m = _m(row)
    return CertificateRow(
        serial=int(m["serial"]),
        account_id=AccountId(m["account_id"]),
        body=bytes(m["body"]),
        signature=m["signature"],
        key_id=m["key_id"],
        issued_ms=m["issued_ms"],
        expires_ms=m["expires_ms"],
        revoked_ms=m["revoked_ms"],
        revoke_reason=m["revoke_reason"],
    )


# --- operator keys ---------------------------------------------------------------------------


async def lock_operator_keys(conn: AsyncConnection, *, shared: bool = False) -> None:
    """PostgreSQL: hold the operator keys still until the transaction ends.

    Creation and rotation take the lock exclusively (two processes starting on an empty
    database would otherwise both create a first key); issuing a certificate takes it shared,
    so a certificate is never signed with a key that a rotation is replacing (it would miss
    the rotation's re-issue). SQLite has a single writer and needs no lock.
    """
    await hold_lock(conn, "operator_keys", shared=shared)


async def list_operator_keys(conn: AsyncConnection) -> list[OperatorKeyRow]:
    rows = await conn.execute(
        select(operator_keys).order_by(operator_keys.c.signs_from_ms, operator_keys.c.key_id)
    )
    return [_key(r) for r in rows]


async def current_operator_key(conn: AsyncConnection) -> OperatorKeyRow | None:
    """The signing key: the newest key that has not been rotated away."""
    row = (
        await conn.execute(
            select(operator_keys)
            .where(operator_keys.c.retires_ms.is_(None))
            .order_by(desc(operator_keys.c.signs_from_ms))
            .limit(1)
        )
    ).first()
    return None if row is None else _key(row)


async def insert_operator_key(conn: AsyncConnection, key: OperatorKeyRow) -> None:
    await conn.execute(
        insert(operator_keys).values(
            key_id=key.key_id,
            public_key=key.public_key,
            private_sealed=key.private_sealed,
            endorsement=key.endorsement,
            created_ms=key.created_ms,
            signs_from_ms=key.signs_from_ms,
            retires_ms=key.retires_ms,
        )
    )


async def retire_operator_key(conn: AsyncConnection, key_id: str, retires_ms: int) -> None:
    await conn.execute(
        update(operator_keys).where(operator_keys.c.key_id == key_id).values(retires_ms=retires_ms)
    )


# --- operator tokens -------------------------------------------------------------------------


def _token(row: Any) -> TokenRow:
    m = _m(row)
    return TokenRow(m["name"], bytes(m["token_hash"]), m["created_ms"], m["revoked_ms"])


async def insert_token(conn: AsyncConnection, name: str, token_hash: bytes, now_ms: int) -> None:
    await conn.execute(
        insert(operator_tokens).values(name=name, token_hash=token_hash, created_ms=now_ms)
    )


async def token_by_name(conn: AsyncConnection, name: str) -> TokenRow | None:
    row = (
        await conn.execute(select(operator_tokens).where(operator_tokens.c.name == name))
    ).first()
    return None if row is None else _token(row)


async def token_by_hash(conn: AsyncConnection, token_hash: bytes) -> TokenRow | None:
    row = (
        await conn.execute(
            select(operator_tokens).where(operator_tokens.c.token_hash == token_hash)
        )
    ).first()
    return None if row is None else _token(row)


async def revoke_token(conn: AsyncConnection, name: str, now_ms: int) -> bool:
    result = await conn.execute(
        update(operator_tokens)
        .where(operator_tokens.c.name == name, operator_tokens.c.revoked_ms.is_(None))
        .values(revoked_ms=now_ms)
    )
    return bool(result.rowcount)


async def list_tokens(conn: AsyncConnection) -> list[TokenRow]:
    rows = await conn.execute(select(operator_tokens).order_by(operator_tokens.c.name))
    return [_token(r) for r in rows]


# --- accounts and business profiles (read; verification fields written) ---------------------


async def account_by_phone(conn: AsyncConnection, phone: str) -> AccountRow | None:
    row = (
        await conn.execute(
            select(
                accounts.c.id,
                accounts.c.phone,
                accounts.c.kind,
                business_profiles.c.account_id.label("profile"),
            )
            .select_from(
                accounts.outerjoin(
                    business_profiles, business_profiles.c.account_id == accounts.c.id
                )
            )
            .where(accounts.c.phone == phone)
        )
    ).first()
    if row is None:
        return None
    m = _m(row)
    return AccountRow(AccountId(m["id"]), m["phone"], m["kind"], m["profile"] is not None)


async def set_suspension(
    conn: AsyncConnection,
    account_id: AccountId,
    suspended_ms: int | None,
    reason: str | None,
    now_ms: int,
) -> None:
    await conn.execute(
        update(business_profiles)
        .where(business_profiles.c.account_id == account_id)
        .values(suspended_ms=suspended_ms, suspend_reason=reason, updated_ms=now_ms)
    )


async def device_keys(conn: AsyncConnection, account_id: AccountId) -> list[tuple[int, str]]:
    """(device id, Ed25519 identity key) of the account's devices that have keys."""
    rows = await conn.execute(
        select(devices.c.device_id, devices.c.identity_ed25519)
        .where(devices.c.account_id == account_id, devices.c.identity_ed25519.is_not(None))
        .order_by(devices.c.device_id)
    )
    return [(int(r[0]), str(r[1])) for r in rows]


# --- verification requests -------------------------------------------------------------------


def _requests_view() -> Select[Any]:
    return select(
        verification_requests,
        business_profiles.c.display_name,
        business_profiles.c.verification,
        accounts.c.phone,
    ).select_from(
        verification_requests.join(
            accounts, accounts.c.id == verification_requests.c.account_id
        ).outerjoin(
            business_profiles,
            business_profiles.c.account_id == verification_requests.c.account_id,
        )
    )


async def list_requests(conn: AsyncConnection, state: str | None, limit: int) -> list[RequestRow]:
    stmt = _requests_view()
    if state is not None:
        stmt = stmt.where(verification_requests.c.state == state)
    stmt = stmt.order_by(verification_requests.c.requested_ms, verification_requests.c.id)
    return [request_row(r) for r in await conn.execute(stmt.limit(limit))]


async def requests_of(conn: AsyncConnection, account_id: AccountId) -> list[RequestRow]:
    stmt = (
        _requests_view()
        .where(verification_requests.c.account_id == account_id)
        .order_by(verification_requests.c.requested_ms, verification_requests.c.id)
    )
    return [request_row(r) for r in await conn.execute(stmt)]


async def decide_request(
    conn: AsyncConnection,
    request_id: int,
    state: str,
    *,
    reason: str | None,
    now_ms: int,
    decided_by: str,
) -> None:
    await conn.execute(
        update(verification_requests)
        .where(verification_requests.c.id == request_id)
        .values(state=state, reason=reason, decided_ms=now_ms, decided_by=decided_by)
    )


# --- certificates ----------------------------------------------------------------------------


async def allocate_certificate(
    conn: AsyncConnection, account_id: AccountId, key_id: str, issued_ms: int, expires_ms: int
) -> int:
    """A new certificate row without its body yet; returns the serial that the body embeds
    (:func:`store_certificate` fills it in the same transaction)."""
    serial = (
        await conn.execute(
            insert(certificates)
            .values(
                account_id=account_id,
                body=b"",
                signature="",
                key_id=key_id,
                issued_ms=issued_ms,
                expires_ms=expires_ms,
            )
            .returning(certificates.c.serial)
        )
    ).scalar_one()
    return int(serial)


async def store_certificate(
    conn: AsyncConnection, serial: int, body: bytes, signature: str
) -> None:
    await conn.execute(
        update(certificates)
        .where(certificates.c.serial == serial)
        .values(body=body, signature=signature)
    )


async def certificates_of(conn: AsyncConnection, account_id: AccountId) -> list[CertificateRow]:
    rows = await conn.execute(
        select(certificates)
        .where(certificates.c.account_id == account_id)
        .order_by(certificates.c.serial)
    )
    return [_certificate(r) for r in rows]


async def current_certificates(
    conn: AsyncConnection, account_id: AccountId, now_ms: int
) -> list[CertificateRow]:
    """Unrevoked, unexpired certificates of the account whose signing key has not retired,
    oldest first."""
    rows = await conn.execute(
        select(certificates)
        .select_from(
            certificates.join(operator_keys, operator_keys.c.key_id == certificates.c.key_id)
        )
        .where(
            certificates.c.account_id == account_id,
            certificates.c.revoked_ms.is_(None),
            certificates.c.expires_ms > now_ms,
            or_(operator_keys.c.retires_ms.is_(None), operator_keys.c.retires_ms > now_ms),
        )
        .order_by(certificates.c.serial)
    )
    return [_certificate(r) for r in rows]


async def unrevoked_serials(conn: AsyncConnection, account_id: AccountId, now_ms: int) -> list[int]:
    """Serials of the account's certificates that are neither revoked nor expired (whatever
    their key): what a revocation has to name."""
    rows = await conn.execute(
        select(certificates.c.serial)
        .where(
            certificates.c.account_id == account_id,
            certificates.c.revoked_ms.is_(None),
            certificates.c.expires_ms > now_ms,
        )
        .order_by(certificates.c.serial)
    )
    return [int(r[0]) for r in rows]


async def revoke_certificates(
    conn: AsyncConnection, serials: Sequence[int], now_ms: int, reason: str
) -> None:
    if not serials:
        return
    await conn.execute(
        update(certificates)
        .where(certificates.c.serial.in_(list(serials)), certificates.c.revoked_ms.is_(None))
        .values(revoked_ms=now_ms, revoke_reason=reason)
    )


async def revoked_serials(conn: AsyncConnection, now_ms: int) -> list[int]:
    """Revoked certificates that would otherwise still be valid: the revocation list.

    Expired certificates fail on their own, so the list stays as small as the revocations
    of one certificate lifetime.
    """
    rows = await conn.execute(
        select(certificates.c.serial)
        .where(certificates.c.revoked_ms.is_not(None), certificates.c.expires_ms > now_ms)
        .order_by(certificates.c.serial)
    )
    return [int(r[0]) for r in rows]


async def reissuable_certificates(conn: AsyncConnection, now_ms: int) -> list[CertificateRow]:
    """The newest unrevoked, unexpired certificate of every verified business."""
    rows = await conn.execute(
        select(certificates)
        .select_from(
            certificates.join(
                business_profiles, business_profiles.c.account_id == certificates.c.account_id
            )
        )
        .where(
            and_(
                business_profiles.c.verification == "verified",
                certificates.c.revoked_ms.is_(None),
                certificates.c.expires_ms > now_ms,
            )
        )
        .order_by(certificates.c.serial)
    )
    newest: dict[AccountId, CertificateRow] = {}
    for row in rows:
        cert = _certificate(row)
        newest[cert.account_id] = cert
    return list(newest.values())


async def certificates_due(conn: AsyncConnection, now_ms: int, until_ms: int) -> list[AccountId]:
    """Verified, unsuspended businesses whose current certificates (unrevoked, unexpired, by
    a key that has not retired) all expire by ``until_ms``; the most urgent first.

    A business without any current certificate is not listed: an expired tick comes back
    only through the operator's verification.
    """
    latest = func.max(certificates.c.expires_ms)
    rows = await conn.execute(
        select(certificates.c.account_id)
        .select_from(
            certificates.join(operator_keys, operator_keys.c.key_id == certificates.c.key_id).join(
                business_profiles, business_profiles.c.account_id == certificates.c.account_id
            )
        )
        .where(
            business_profiles.c.verification == "verified",
            business_profiles.c.suspended_ms.is_(None),
            certificates.c.revoked_ms.is_(None),
            certificates.c.expires_ms > now_ms,
            or_(operator_keys.c.retires_ms.is_(None), operator_keys.c.retires_ms > now_ms),
        )
        .group_by(certificates.c.account_id)
        .having(latest <= until_ms)
        .order_by(latest, certificates.c.account_id)
    )
    return [AccountId(r[0]) for r in rows]


# --- audit -----------------------------------------------------------------------------------


async def audit_entries(
    conn: AsyncConnection, account_id: AccountId | None, limit: int
) -> list[AuditRow]:
    stmt = select(admin_audit)
    if account_id is not None:
        stmt = stmt.where(admin_audit.c.account_id == account_id)
    rows = await conn.execute(stmt.order_by(desc(admin_audit.c.pk)).limit(limit))
    entries = []
    for row in rows:
        m = _m(row)
        entries.append(
            AuditRow(
                at_ms=m["at_ms"],
                operator=m["operator"],
                action=m["action"],
                account_id=None if m["account_id"] is None else AccountId(m["account_id"]),
                details=json.loads(m["details"] or "{}"),
            )
        )
    return entries

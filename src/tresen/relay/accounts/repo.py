"""SQL of accounts, devices, registration codes and rate events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import day_start_ms
from tresen.core.db import hold_lock
from tresen.core.ids import AccountId, DeviceId, DevicePk
from tresen.relay.schema import (
    accounts,
    devices,
    lookup_budgets,
    mailbox,
    rate_events,
    throttle_keys,
    verification_codes,
)

__all__ = [
    "DeviceRow",
    "PendingCode",
    "account_by_phone",
    "account_entry",
    "account_phone",
    "add_rate_events",
    "clear_rate_events",
    "count_devices",
    "create_account",
    "create_device",
    "delete_code",
    "delete_device",
    "device_by_token_hash",
    "get_code",
    "list_devices",
    "lock_buckets",
    "lookup_arrival",
    "put_code",
    "rate_event_times",
    "save_lookup_arrival",
    "throttle_key",
    "touch_device",
]


@dataclass(frozen=True, slots=True)
class DeviceRow:
    pk: DevicePk
    account_id: AccountId
    device_id: DeviceId
    registration_id: int
    token_hash: bytes
    name: str
    identity_curve25519: str | None
    identity_ed25519: str | None
    created_ms: int
    last_seen_ms: int


@dataclass(frozen=True, slots=True)
class PendingCode:
    phone: str
    code: str
    expires_ms: int
    previous_code: str | None = None
    previous_expires_ms: int | None = None

    def valid_codes(self, now_ms: int) -> list[str]:
        """The codes that still verify: the current one and the one it replaced."""
        codes = [self.code] if now_ms < self.expires_ms else []
        if self.previous_code and now_ms < (self.previous_expires_ms or 0):
            codes.append(self.previous_code)
        return codes


def _device(row: object) -> DeviceRow:
    m = row._mapping  # type: ignore[attr-defined]
    return DeviceRow(
        pk=DevicePk(m["pk"]),
        account_id=AccountId(m["account_id"]),
        device_id=DeviceId(m["device_id"]),
        registration_id=m["registration_id"],
        token_hash=bytes(m["token_hash"]),
        name=m["name"],
        identity_curve25519=m["identity_curve25519"],
        identity_ed25519=m["identity_ed25519"],
        created_ms=m["created_ms"],
        last_seen_ms=m["last_seen_ms"],
    )


async def rate_event_times(
    conn: AsyncConnection, bucket: Sequence[str], since_ms: int
) -> list[int]:
    """When the events of one bucket (stored under any of these names) after ``since_ms``
    happened, oldest first."""
    stmt = (
        select(rate_events.c.at_ms)
        .where(rate_events.c.bucket.in_(sorted(set(bucket))), rate_events.c.at_ms > since_ms)
        .order_by(rate_events.c.at_ms)
    )
    return [int(t) for t in (await conn.execute(stmt)).scalars()]


async def add_rate_events(conn: AsyncConnection, buckets: list[str], now_ms: int) -> None:
    await conn.execute(insert(rate_events), [{"bucket": b, "at_ms": now_ms} for b in buckets])


async def clear_rate_events(conn: AsyncConnection, buckets: list[str]) -> None:
    await conn.execute(delete(rate_events).where(rate_events.c.bucket.in_(buckets)))


async def throttle_key(conn: AsyncConnection, slot: int, candidate: bytes) -> bytes:
    """The key of throttle window ``slot``: ``candidate`` if there was none yet."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    await conn.execute(
        dialect.insert(throttle_keys)
        .values(slot=slot, key=candidate)
        .on_conflict_do_nothing(index_elements=["slot"])
    )
    stored = (
        await conn.execute(select(throttle_keys.c.key).where(throttle_keys.c.slot == slot))
    ).scalar_one()
    return bytes(stored)


async def lock_buckets(conn: AsyncConnection, buckets: list[str]) -> None:
    """PostgreSQL: serialize work on the same rate buckets until the transaction ends.

    Without it, simultaneous requests would all count the same events and all pass.
    SQLite has a single writer and needs no lock.
    """
    for bucket in sorted(set(buckets)):
        await hold_lock(conn, bucket)


async def get_code(conn: AsyncConnection, phone: str) -> PendingCode | None:
    """The pending code of ``phone``, locked for the rest of the transaction."""
    row = (
        await conn.execute(
            select(verification_codes).where(verification_codes.c.phone == phone).with_for_update()
        )
    ).first()
    if row is None:
        return None
    m = row._mapping
    return PendingCode(
        phone=m["phone"],
        code=m["code"],
        expires_ms=m["expires_ms"],
        previous_code=m["previous_code"],
        previous_expires_ms=m["previous_expires_ms"],
    )


async def put_code(conn: AsyncConnection, pending: PendingCode, now_ms: int) -> None:
    await conn.execute(
        delete(verification_codes).where(verification_codes.c.phone == pending.phone)
    )
    await conn.execute(
        insert(verification_codes).values(
            phone=pending.phone,
            code=pending.code,
            created_ms=now_ms,
            expires_ms=pending.expires_ms,
            previous_code=pending.previous_code,
            previous_expires_ms=pending.previous_expires_ms,
        )
    )


async def delete_code(conn: AsyncConnection, phone: str) -> None:
    await conn.execute(delete(verification_codes).where(verification_codes.c.phone == phone))


async def lookup_arrival(conn: AsyncConnection, account_id: AccountId) -> int | None:
    """The account's lookup budget (its theoretical arrival time), locked."""
    value = (
        await conn.execute(
            select(lookup_budgets.c.tat_ms)
            .where(lookup_budgets.c.account_id == account_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    return None if value is None else int(value)


async def save_lookup_arrival(conn: AsyncConnection, account_id: AccountId, tat_ms: int) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(lookup_budgets).values(account_id=account_id, tat_ms=tat_ms)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["account_id"], set_={"tat_ms": stmt.excluded.tat_ms}
        )
    )


async def account_by_phone(conn: AsyncConnection, phone: str) -> tuple[AccountId, str] | None:
    """The account id and kind (``customer``, ``business``) registered for ``phone``."""
    row = (
        await conn.execute(select(accounts.c.id, accounts.c.kind).where(accounts.c.phone == phone))
    ).one_or_none()
    return None if row is None else (AccountId(row.id), str(row.kind))


async def account_phone(conn: AsyncConnection, account_id: AccountId) -> str | None:
    value = (
        await conn.execute(select(accounts.c.phone).where(accounts.c.id == account_id))
    ).scalar_one_or_none()
    return None if value is None else str(value)


async def account_entry(conn: AsyncConnection, account_id: AccountId) -> tuple[str, str] | None:
    """The phone number and kind of an account."""
    row = (
        await conn.execute(
            select(accounts.c.phone, accounts.c.kind).where(accounts.c.id == account_id)
        )
    ).one_or_none()
    return None if row is None else (str(row.phone), str(row.kind))


async def create_account(
    conn: AsyncConnection, account_id: AccountId, phone: str, now_ms: int
) -> None:
    await conn.execute(
        insert(accounts).values(id=account_id, phone=phone, created_ms=day_start_ms(now_ms))
    )


async def count_devices(conn: AsyncConnection, account_id: AccountId) -> int:
    stmt = select(func.count()).where(devices.c.account_id == account_id)
    return int((await conn.execute(stmt)).scalar_one())


async def create_device(
    conn: AsyncConnection,
    account_id: AccountId,
    *,
    token_hash: bytes,
    registration_id: int,
    name: str,
    now_ms: int,
) -> DeviceRow:
    # Device ids are never reused, so a peer's stale session can never meet a new device
    # under an old number; the account row update also serializes concurrent additions.
    device_id = (
        await conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(last_device_id=accounts.c.last_device_id + 1)
            .returning(accounts.c.last_device_id)
        )
    ).scalar_one()
    await conn.execute(
        insert(devices).values(
            account_id=account_id,
            device_id=device_id,
            registration_id=registration_id,
            token_hash=token_hash,
            name=name,
            created_ms=day_start_ms(now_ms),
            last_seen_ms=day_start_ms(now_ms),
        )
    )
    row = (
        await conn.execute(
            select(devices).where(
                devices.c.account_id == account_id, devices.c.device_id == device_id
            )
        )
    ).one()
    return _device(row)


async def device_by_token_hash(conn: AsyncConnection, token_hash: bytes) -> DeviceRow | None:
    row = (await conn.execute(select(devices).where(devices.c.token_hash == token_hash))).first()
    return None if row is None else _device(row)


async def list_devices(conn: AsyncConnection, account_id: AccountId) -> list[DeviceRow]:
    rows = await conn.execute(
        select(devices).where(devices.c.account_id == account_id).order_by(devices.c.device_id)
    )
    return [_device(row) for row in rows]


async def delete_device(conn: AsyncConnection, device_pk: DevicePk) -> None:
    await conn.execute(delete(mailbox).where(mailbox.c.device_pk == device_pk))
    await conn.execute(delete(devices).where(devices.c.pk == device_pk))


async def touch_device(conn: AsyncConnection, device_pk: DevicePk, now_ms: int) -> None:
    """Record that the device connected today (the day only: only its owner reads it)."""
    day = day_start_ms(now_ms)
    await conn.execute(
        update(devices)
        .where(devices.c.pk == device_pk, devices.c.last_seen_ms != day)
        .values(last_seen_ms=day)
    )

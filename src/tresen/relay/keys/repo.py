"""SQL of the key directory: identity keys on ``devices``, ``one_time_keys``, ``fallback_keys``.

Every function runs inside a transaction the caller opened (``db.read()`` or ``db.write()``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.ids import AccountId, DeviceId, DevicePk
from tresen.relay.schema import accounts, devices, fallback_keys, one_time_keys

__all__ = [
    "AsyncConnection",
    "DeviceIdentity",
    "DeviceKeys",
    "IdentityKeys",
    "SignedKey",
    "account_exists",
    "claim_one_time_key",
    "count_one_time_keys",
    "delete_device_keys",
    "device_directory",
    "device_identity",
    "get_fallback_key",
    "insert_one_time_keys",
    "put_fallback_key",
    "set_identity_keys",
    "stored_one_time_keys",
]


@dataclass(frozen=True, slots=True)
class IdentityKeys:
    """A device's long-term keys, unpadded base64 as vodozemac writes them."""

    curve25519: str
    ed25519: str


@dataclass(frozen=True, slots=True)
class SignedKey:
    """A Curve25519 one-time or fallback key and its Ed25519 signature (both base64)."""

    key_id: str
    public_key: str
    signature: str


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What the relay knows about one device's keys, as stored on its ``devices`` row."""

    pk: DevicePk
    registration_id: int
    identity: IdentityKeys | None


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """One entry of an account's device directory (only devices with identity keys)."""

    device_pk: DevicePk
    device_id: DeviceId
    registration_id: int
    identity: IdentityKeys


def _locks_rows(conn: AsyncConnection) -> bool:
    # SQLite has no row locks (and no FOR UPDATE); its writes are serialized by core.db.
    return conn.dialect.name != "sqlite"


async def account_exists(conn: AsyncConnection, account_id: AccountId) -> bool:
    stmt = select(accounts.c.id).where(accounts.c.id == account_id)
    return (await conn.execute(stmt)).first() is not None


async def device_identity(
    conn: AsyncConnection, device_pk: DevicePk, *, for_update: bool = False
) -> DeviceIdentity | None:
    """The device's identity keys; ``for_update`` locks the row until the transaction ends."""
    stmt = select(
        devices.c.pk,
        devices.c.registration_id,
        devices.c.identity_curve25519,
        devices.c.identity_ed25519,
    ).where(devices.c.pk == device_pk)
    if for_update and _locks_rows(conn):
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    if row is None:
        return None
    m = row._mapping
    curve, ed = m["identity_curve25519"], m["identity_ed25519"]
    identity = IdentityKeys(curve, ed) if curve is not None and ed is not None else None
    return DeviceIdentity(DevicePk(m["pk"]), m["registration_id"], identity)


async def set_identity_keys(
    conn: AsyncConnection, device_pk: DevicePk, identity: IdentityKeys, registration_id: int
) -> None:
    await conn.execute(
        update(devices)
        .where(devices.c.pk == device_pk)
        .values(
            identity_curve25519=identity.curve25519,
            identity_ed25519=identity.ed25519,
            registration_id=registration_id,
        )
    )


async def delete_device_keys(conn: AsyncConnection, device_pk: DevicePk) -> None:
    """Forget the device's one-time and fallback keys."""
    await conn.execute(delete(one_time_keys).where(one_time_keys.c.device_pk == device_pk))
    await conn.execute(delete(fallback_keys).where(fallback_keys.c.device_pk == device_pk))


async def count_one_time_keys(conn: AsyncConnection, device_pk: DevicePk) -> int:
    stmt = select(func.count()).where(one_time_keys.c.device_pk == device_pk)
    return int((await conn.execute(stmt)).scalar_one())


async def stored_one_time_keys(
    conn: AsyncConnection, device_pk: DevicePk, key_ids: Iterable[str]
) -> dict[str, str]:
    """``key_id -> public_key`` of those of ``key_ids`` the device has stored."""
    wanted = list(key_ids)
    if not wanted:
        return {}
    rows = await conn.execute(
        select(one_time_keys.c.key_id, one_time_keys.c.public_key).where(
            one_time_keys.c.device_pk == device_pk, one_time_keys.c.key_id.in_(wanted)
        )
    )
    return {row.key_id: row.public_key for row in rows}


async def insert_one_time_keys(
    conn: AsyncConnection, device_pk: DevicePk, keys: Sequence[SignedKey]
) -> None:
    if not keys:
        return
    await conn.execute(
        insert(one_time_keys),
        [
            {
                "device_pk": device_pk,
                "key_id": k.key_id,
                "public_key": k.public_key,
                "signature": k.signature,
            }
            for k in keys
        ],
    )


async def put_fallback_key(
    conn: AsyncConnection, device_pk: DevicePk, key: SignedKey, now_ms: int
) -> None:
    """Store ``key`` as the device's fallback key, replacing the previous one."""
    await conn.execute(delete(fallback_keys).where(fallback_keys.c.device_pk == device_pk))
    await conn.execute(
        insert(fallback_keys).values(
            device_pk=device_pk,
            key_id=key.key_id,
            public_key=key.public_key,
            signature=key.signature,
            uploaded_ms=now_ms,
        )
    )


async def get_fallback_key(conn: AsyncConnection, device_pk: DevicePk) -> SignedKey | None:
    row = (
        await conn.execute(
            select(
                fallback_keys.c.key_id, fallback_keys.c.public_key, fallback_keys.c.signature
            ).where(fallback_keys.c.device_pk == device_pk)
        )
    ).first()
    return None if row is None else SignedKey(row.key_id, row.public_key, row.signature)


async def device_directory(conn: AsyncConnection, account_id: AccountId) -> list[DeviceKeys]:
    """The account's devices that have uploaded identity keys, by device id."""
    rows = await conn.execute(
        select(
            devices.c.pk,
            devices.c.device_id,
            devices.c.registration_id,
            devices.c.identity_curve25519,
            devices.c.identity_ed25519,
        )
        .where(
            devices.c.account_id == account_id,
            devices.c.identity_curve25519.is_not(None),
            devices.c.identity_ed25519.is_not(None),
        )
        .order_by(devices.c.device_id)
    )
    return [
        DeviceKeys(
            device_pk=DevicePk(row.pk),
            device_id=DeviceId(row.device_id),
            registration_id=row.registration_id,
            identity=IdentityKeys(row.identity_curve25519, row.identity_ed25519),
        )
        for row in rows
    ]


async def claim_one_time_key(conn: AsyncConnection, device_pk: DevicePk) -> SignedKey | None:
    """Delete and return the device's oldest one-time key, or ``None`` if it has none left.

    On PostgreSQL the inner SELECT takes the row lock with SKIP LOCKED, so concurrent claims
    each get a different row without waiting on one another; on SQLite the whole write
    transaction holds the database's single write lock, which makes the statement atomic.
    """
    oldest = (
        select(one_time_keys.c.pk)
        .where(one_time_keys.c.device_pk == device_pk)
        .order_by(one_time_keys.c.pk)
        .limit(1)
    )
    if _locks_rows(conn):
        oldest = oldest.with_for_update(skip_locked=True)
    stmt = (
        delete(one_time_keys)
        .where(one_time_keys.c.pk == oldest.scalar_subquery())
        .returning(one_time_keys.c.key_id, one_time_keys.c.public_key, one_time_keys.c.signature)
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else SignedKey(row.key_id, row.public_key, row.signature)

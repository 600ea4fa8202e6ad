"""SQL of key transparency: log and map nodes, logged leaves, epochs and pending changes.

Every function runs inside a transaction the caller opened. :func:`queue_devices_change` and
:func:`queue_certificate` are called by the key directory, the accounts and the operator in
the transaction that makes the change, so no change can be committed without being queued.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.db import hold_lock, key_pair_params, key_pairs
from tresen.crypto.transparency import DeviceEntry, MapNode
from tresen.relay.schema import (
    devices,
    kt_accounts,
    kt_certificates,
    kt_epochs,
    kt_log_nodes,
    kt_map_nodes,
    kt_pending_accounts,
    kt_pending_certificates,
)

__all__ = [
    "EpochRow",
    "LoggedLeaf",
    "PendingCertificate",
    "account_leaf",
    "certificate_leaf",
    "certificate_pending",
    "count_pending",
    "delete_pending",
    "device_sets",
    "epoch",
    "epochs_after",
    "has_pending",
    "insert_epoch",
    "latest_epoch",
    "lock_log",
    "log_nodes",
    "map_nodes",
    "oldest_pending_ms",
    "pending_accounts",
    "pending_certificates",
    "put_account_leaves",
    "put_certificate_leaves",
    "put_log_nodes",
    "queue_certificate",
    "queue_devices_change",
    "write_map_nodes",
]

_CHUNK = 500
_BULK = 20_000


@dataclass(frozen=True, slots=True)
class EpochRow:
    epoch: int
    tree_size: int
    published_ms: int
    body: bytes
    signature: str


@dataclass(frozen=True, slots=True)
class LoggedLeaf:
    leaf_idx: int
    leaf: bytes


@dataclass(frozen=True, slots=True)
class PendingCertificate:
    serial: int
    account_id: str
    digest: bytes


def _insert_ignore(conn: AsyncConnection, table: Table, row: dict[str, Any], key: str) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).values(row).on_conflict_do_nothing(index_elements=[key])


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


# --- the queue of changes --------------------------------------------------------------------


async def queue_devices_change(conn: AsyncConnection, account_id: str, now_ms: int) -> None:
    """The device set of ``account_id`` changed: log it in the next epoch."""
    await conn.execute(
        _insert_ignore(
            conn, kt_pending_accounts, {"account_id": account_id, "queued_ms": now_ms}, "account_id"
        )
    )


async def queue_certificate(
    conn: AsyncConnection, account_id: str, serial: int, digest: bytes, now_ms: int
) -> None:
    """A certificate was issued: log it in the next epoch."""
    await conn.execute(
        _insert_ignore(
            conn,
            kt_pending_certificates,
            {"serial": serial, "account_id": account_id, "digest": digest, "queued_ms": now_ms},
            "serial",
        )
    )


async def pending_accounts(conn: AsyncConnection, limit: int) -> list[str]:
    rows = await conn.execute(
        select(kt_pending_accounts.c.account_id)
        .order_by(kt_pending_accounts.c.queued_ms, kt_pending_accounts.c.account_id)
        .limit(limit)
    )
    return [r.account_id for r in rows]


async def pending_certificates(conn: AsyncConnection, limit: int) -> list[PendingCertificate]:
    rows = await conn.execute(
        select(
            kt_pending_certificates.c.serial,
            kt_pending_certificates.c.account_id,
            kt_pending_certificates.c.digest,
        )
        .order_by(kt_pending_certificates.c.serial)
        .limit(limit)
    )
    return [PendingCertificate(r.serial, r.account_id, bytes(r.digest)) for r in rows]


async def delete_pending(
    conn: AsyncConnection, account_ids: Sequence[str], serials: Sequence[int]
) -> None:
    for chunk in _chunks(account_ids):
        await conn.execute(
            delete(kt_pending_accounts).where(kt_pending_accounts.c.account_id.in_(chunk))
        )
    for chunk in _chunks(serials):
        await conn.execute(
            delete(kt_pending_certificates).where(kt_pending_certificates.c.serial.in_(chunk))
        )


async def has_pending(conn: AsyncConnection, account_id: str) -> bool:
    stmt = select(kt_pending_accounts.c.account_id).where(
        kt_pending_accounts.c.account_id == account_id
    )
    return (await conn.execute(stmt)).first() is not None


async def certificate_pending(conn: AsyncConnection, serial: int) -> bool:
    stmt = select(kt_pending_certificates.c.serial).where(
        kt_pending_certificates.c.serial == serial
    )
    return (await conn.execute(stmt)).first() is not None


async def count_pending(conn: AsyncConnection) -> int:
    accounts = (
        await conn.execute(select(func.count()).select_from(kt_pending_accounts))
    ).scalar_one()
    certificates = (
        await conn.execute(select(func.count()).select_from(kt_pending_certificates))
    ).scalar_one()
    return int(accounts) + int(certificates)


async def oldest_pending_ms(conn: AsyncConnection) -> int | None:
    first = (await conn.execute(select(func.min(kt_pending_accounts.c.queued_ms)))).scalar()
    second = (await conn.execute(select(func.min(kt_pending_certificates.c.queued_ms)))).scalar()
    found = [int(v) for v in (first, second) if v is not None]
    return min(found) if found else None


async def device_sets(
    conn: AsyncConnection, account_ids: Sequence[str]
) -> dict[str, list[DeviceEntry]]:
    """The devices with identity keys of each account, by device id (empty: none)."""
    found: dict[str, list[DeviceEntry]] = {a: [] for a in account_ids}
    for chunk in _chunks(account_ids):
        rows = await conn.execute(
            select(
                devices.c.account_id,
                devices.c.device_id,
                devices.c.identity_curve25519,
                devices.c.identity_ed25519,
            )
            .where(
                devices.c.account_id.in_(chunk),
                devices.c.identity_curve25519.is_not(None),
                devices.c.identity_ed25519.is_not(None),
            )
            .order_by(devices.c.account_id, devices.c.device_id)
        )
        for r in rows:
            found[r.account_id].append(
                DeviceEntry(r.device_id, r.identity_curve25519, r.identity_ed25519)
            )
    return found


# --- the log ---------------------------------------------------------------------------------


async def lock_log(conn: AsyncConnection) -> None:
    """PostgreSQL: one publisher at a time across relay nodes (SQLite has one writer)."""
    await hold_lock(conn, "kt_log")


async def log_nodes(
    conn: AsyncConnection, wanted: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    keys = list(dict.fromkeys(wanted))
    if not keys:
        return {}
    dialect = conn.dialect.name
    pairs = key_pairs(dialect, kt_log_nodes.c.level.type, kt_log_nodes.c.idx.type)
    stmt = select(kt_log_nodes.c.level, kt_log_nodes.c.idx, kt_log_nodes.c.hash).join(
        pairs, (kt_log_nodes.c.level == pairs.c.a) & (kt_log_nodes.c.idx == pairs.c.b)
    )
    found: dict[tuple[int, int], bytes] = {}
    for chunk in _chunks(keys):
        rows = await conn.execute(stmt, key_pair_params(dialect, chunk))
        found.update({(r.level, r.idx): bytes(r.hash) for r in rows})
    return found


@functools.cache
def _upsert_sql(dialect: str, table: str, columns: tuple[str, ...]) -> str:
    """``INSERT`` of one row in the driver's own parameter style; a row whose key (the first
    column) exists is overwritten. SQLite and PostgreSQL share the ``ON CONFLICT`` form."""
    if dialect == "sqlite":
        marks = ", ".join("?" for _ in columns)
    else:
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    # Names of this schema's tables and columns, never input.
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "  # noqa: S608
        f"ON CONFLICT ({columns[0]}) DO UPDATE SET {updates}"
    )


@functools.cache
def _delete_sql(dialect: str, table: str, column: str) -> str:
    mark = "?" if dialect == "sqlite" else "$1"
    return f"DELETE FROM {table} WHERE {column} = {mark}"  # noqa: S608


async def _driver_many(conn: AsyncConnection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """``sql`` once per row, handed to the driver as tuples: an epoch writes hundreds of
    thousands of nodes at its largest, and SQLAlchemy's per-row parameter processing would
    cost more than the database's work."""
    for start in range(0, len(rows), _BULK):
        await conn.exec_driver_sql(sql, list(rows[start : start + _BULK]))


async def put_log_nodes(conn: AsyncConnection, nodes: Mapping[tuple[int, int], bytes]) -> None:
    """Store new perfect subtrees (they never change; the key is (level, idx))."""
    if conn.dialect.name == "sqlite":
        sql = "INSERT INTO kt_log_nodes (level, idx, hash) VALUES (?, ?, ?)"
    else:
        sql = "INSERT INTO kt_log_nodes (level, idx, hash) VALUES ($1, $2, $3)"
    await _driver_many(conn, sql, [(level, idx, h) for (level, idx), h in nodes.items()])


# --- the map ---------------------------------------------------------------------------------


async def map_nodes(conn: AsyncConnection, positions: Sequence[bytes]) -> dict[bytes, MapNode]:
    found: dict[bytes, MapNode] = {}
    for chunk in _chunks(list(dict.fromkeys(positions))):
        rows = await conn.execute(
            select(
                kt_map_nodes.c.pos,
                kt_map_nodes.c.hash,
                kt_map_nodes.c.leaf_key,
                kt_map_nodes.c.leaf_value,
            ).where(kt_map_nodes.c.pos.in_(chunk))
        )
        for r in rows:
            found[bytes(r.pos)] = MapNode(
                bytes(r.hash),
                None if r.leaf_key is None else bytes(r.leaf_key),
                None if r.leaf_value is None else bytes(r.leaf_value),
            )
    return found


async def write_map_nodes(
    conn: AsyncConnection, writes: Mapping[bytes, MapNode], deletes: Iterable[bytes]
) -> None:
    dialect, table = conn.dialect.name, kt_map_nodes.name
    await _driver_many(conn, _delete_sql(dialect, table, "pos"), [(p,) for p in deletes])
    await _driver_many(
        conn,
        _upsert_sql(dialect, table, ("pos", "hash", "leaf_key", "leaf_value")),
        [(pos, n.hash, n.key, n.value) for pos, n in writes.items()],
    )


# --- logged leaves ---------------------------------------------------------------------------


async def account_leaf(conn: AsyncConnection, account_id: str) -> LoggedLeaf | None:
    row = (
        await conn.execute(
            select(kt_accounts.c.leaf_idx, kt_accounts.c.leaf).where(
                kt_accounts.c.account_id == account_id
            )
        )
    ).first()
    return None if row is None else LoggedLeaf(row.leaf_idx, bytes(row.leaf))


async def put_account_leaves(conn: AsyncConnection, leaves: Mapping[str, LoggedLeaf]) -> None:
    await _driver_many(
        conn,
        _upsert_sql(conn.dialect.name, kt_accounts.name, ("account_id", "leaf_idx", "leaf")),
        [(a, leaf.leaf_idx, leaf.leaf) for a, leaf in leaves.items()],
    )


async def certificate_leaf(conn: AsyncConnection, serial: int) -> tuple[str, LoggedLeaf] | None:
    row = (
        await conn.execute(
            select(
                kt_certificates.c.account_id, kt_certificates.c.leaf_idx, kt_certificates.c.leaf
            ).where(kt_certificates.c.serial == serial)
        )
    ).first()
    return None if row is None else (row.account_id, LoggedLeaf(row.leaf_idx, bytes(row.leaf)))


async def put_certificate_leaves(
    conn: AsyncConnection, leaves: Sequence[tuple[int, str, LoggedLeaf]]
) -> None:
    if leaves:
        await conn.execute(
            insert(kt_certificates),
            [
                {"serial": s, "account_id": a, "leaf_idx": leaf.leaf_idx, "leaf": leaf.leaf}
                for s, a, leaf in leaves
            ],
        )


# --- epochs ----------------------------------------------------------------------------------


def _epoch(row: Any) -> EpochRow:
    return EpochRow(row.epoch, row.tree_size, row.published_ms, bytes(row.body), row.signature)


_EPOCH_COLUMNS = (
    kt_epochs.c.epoch,
    kt_epochs.c.tree_size,
    kt_epochs.c.published_ms,
    kt_epochs.c.body,
    kt_epochs.c.signature,
)


async def latest_epoch(conn: AsyncConnection) -> EpochRow | None:
    row = (
        await conn.execute(select(*_EPOCH_COLUMNS).order_by(kt_epochs.c.epoch.desc()).limit(1))
    ).first()
    return None if row is None else _epoch(row)


async def epoch(conn: AsyncConnection, number: int) -> EpochRow | None:
    row = (await conn.execute(select(*_EPOCH_COLUMNS).where(kt_epochs.c.epoch == number))).first()
    return None if row is None else _epoch(row)


async def epochs_after(conn: AsyncConnection, after: int, limit: int) -> list[EpochRow]:
    rows = await conn.execute(
        select(*_EPOCH_COLUMNS)
        .where(kt_epochs.c.epoch > after)
        .order_by(kt_epochs.c.epoch)
        .limit(limit)
    )
    return [_epoch(r) for r in rows]


async def insert_epoch(conn: AsyncConnection, row: EpochRow) -> None:
    await conn.execute(
        insert(kt_epochs).values(
            epoch=row.epoch,
            tree_size=row.tree_size,
            published_ms=row.published_ms,
            body=row.body,
            signature=row.signature,
        )
    )

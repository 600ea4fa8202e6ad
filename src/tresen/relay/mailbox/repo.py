"""SQL of messages and per-device mailboxes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.ids import AccountId, DeviceId, DevicePk, MessageId
from tresen.relay.schema import devices, mailbox, messages

__all__ = [
    "EntryKind",
    "MailboxEntry",
    "NewEntry",
    "RecipientDevice",
    "SentMessage",
    "account_device_pks",
    "delete_entries",
    "enqueue",
    "find_message",
    "insert_message",
    "mark_delivered",
    "mark_read",
    "pending_entries",
    "purge_expired",
    "queue_length",
    "recipient_devices",
]


class EntryKind(IntEnum):
    MESSAGE = 0
    DELIVERED = 1
    READ = 2


@dataclass(frozen=True, slots=True)
class RecipientDevice:
    pk: DevicePk
    device_id: DeviceId
    registration_id: int


@dataclass(frozen=True, slots=True)
class SentMessage:
    message_id: MessageId
    sender_account: AccountId
    sender_device_pk: DevicePk
    recipient_account: AccountId
    klass: int
    server_ms: int


@dataclass(frozen=True, slots=True)
class NewEntry:
    device_pk: DevicePk
    kind: EntryKind
    message_id: MessageId
    peer_account: AccountId
    peer_device: int
    klass: int
    olm_type: int
    payload: bytes
    server_ms: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class MailboxEntry:
    seq: int
    kind: EntryKind
    message_id: MessageId
    peer_account: AccountId
    peer_device: int
    klass: int
    olm_type: int
    payload: bytes
    server_ms: int


async def recipient_devices(conn: AsyncConnection, account_id: AccountId) -> list[RecipientDevice]:
    """Devices of ``account_id`` that can receive ciphertext (their identity keys are known)."""
    rows = await conn.execute(
        select(devices.c.pk, devices.c.device_id, devices.c.registration_id)
        .where(devices.c.account_id == account_id, devices.c.identity_curve25519.is_not(None))
        .order_by(devices.c.device_id)
    )
    return [RecipientDevice(DevicePk(r.pk), DeviceId(r.device_id), r.registration_id) for r in rows]


async def account_device_pks(conn: AsyncConnection, account_id: AccountId) -> list[DevicePk]:
    rows = await conn.execute(select(devices.c.pk).where(devices.c.account_id == account_id))
    return [DevicePk(r.pk) for r in rows]


async def find_message(
    conn: AsyncConnection, sender_device_pk: DevicePk, client_msg_id: str
) -> SentMessage | None:
    row = (
        await conn.execute(
            select(messages).where(
                messages.c.sender_device_pk == sender_device_pk,
                messages.c.client_msg_id == client_msg_id,
            )
        )
    ).first()
    return None if row is None else _message(row)


def _message(row: object) -> SentMessage:
    m = row._mapping  # type: ignore[attr-defined]
    return SentMessage(
        MessageId(m["message_id"]),
        AccountId(m["sender_account"]),
        DevicePk(m["sender_device_pk"]),
        AccountId(m["recipient_account"]),
        m["klass"],
        m["server_ms"],
    )


async def queue_length(conn: AsyncConnection, device_pk: DevicePk, cap: int) -> int:
    """Entries waiting for ``device_pk``, counted up to ``cap`` (cheap for long queues)."""
    capped = select(mailbox.c.seq).where(mailbox.c.device_pk == device_pk).limit(cap).subquery()
    return int((await conn.execute(select(func.count()).select_from(capped))).scalar_one())


async def insert_message(
    conn: AsyncConnection,
    message: SentMessage,
    *,
    client_msg_id: str,
    expires_ms: int,
) -> None:
    await conn.execute(
        insert(messages).values(
            message_id=message.message_id,
            sender_account=message.sender_account,
            sender_device_pk=message.sender_device_pk,
            client_msg_id=client_msg_id,
            recipient_account=message.recipient_account,
            klass=message.klass,
            server_ms=message.server_ms,
            expires_ms=expires_ms,
        )
    )


async def enqueue(conn: AsyncConnection, entries: Sequence[NewEntry], *, lock: bool) -> None:
    """Append entries to their devices' mailboxes.

    With ``lock`` (PostgreSQL) the target device rows are locked first, in primary-key order,
    so that entries for one device are committed in ``seq`` order: a delivery loop that reads
    past its last ``seq`` then never misses an entry committed late by a slower transaction.
    """
    if not entries:
        return
    if lock:
        targets = sorted({e.device_pk for e in entries})
        await conn.execute(
            select(devices.c.pk)
            .where(devices.c.pk.in_(targets))
            .order_by(devices.c.pk)
            .with_for_update()
        )
    await conn.execute(
        insert(mailbox),
        [
            {
                "device_pk": e.device_pk,
                "kind": int(e.kind),
                "message_id": e.message_id,
                "peer_account": e.peer_account,
                "peer_device": e.peer_device,
                "klass": e.klass,
                "olm_type": e.olm_type,
                "payload": e.payload,
                "server_ms": e.server_ms,
                "expires_ms": e.expires_ms,
            }
            for e in entries
        ],
    )


async def pending_entries(
    conn: AsyncConnection, device_pk: DevicePk, *, after_seq: int, now_ms: int, limit: int
) -> list[MailboxEntry]:
    rows = await conn.execute(
        select(
            mailbox.c.seq,
            mailbox.c.kind,
            mailbox.c.message_id,
            mailbox.c.peer_account,
            mailbox.c.peer_device,
            mailbox.c.klass,
            mailbox.c.olm_type,
            mailbox.c.payload,
            mailbox.c.server_ms,
        )
        .where(
            mailbox.c.device_pk == device_pk,
            mailbox.c.seq > after_seq,
            mailbox.c.expires_ms > now_ms,
        )
        .order_by(mailbox.c.seq)
        .limit(limit)
    )
    return [
        MailboxEntry(
            r.seq,
            EntryKind(r.kind),
            MessageId(r.message_id),
            AccountId(r.peer_account),
            r.peer_device,
            r.klass,
            r.olm_type,
            bytes(r.payload),
            r.server_ms,
        )
        for r in rows
    ]


async def delete_entries(
    conn: AsyncConnection, device_pk: DevicePk, seqs: Sequence[int]
) -> list[tuple[int, EntryKind, MessageId]]:
    """Delete this device's entries among ``seqs``; returns what was deleted."""
    rows = await conn.execute(
        delete(mailbox)
        .where(mailbox.c.device_pk == device_pk, mailbox.c.seq.in_(list(seqs)))
        .returning(mailbox.c.seq, mailbox.c.kind, mailbox.c.message_id)
    )
    return [(r.seq, EntryKind(r.kind), MessageId(r.message_id)) for r in rows]


async def mark_delivered(
    conn: AsyncConnection, message_ids: Sequence[MessageId], now_ms: int
) -> list[SentMessage]:
    """Set ``delivered_ms`` where unset; returns the messages delivered for the first time."""
    rows = await conn.execute(
        update(messages)
        .where(messages.c.message_id.in_(list(message_ids)), messages.c.delivered_ms.is_(None))
        .values(delivered_ms=now_ms)
        .returning(*messages.c)
    )
    return [_message(r) for r in rows]


async def mark_read(
    conn: AsyncConnection,
    message_ids: Sequence[MessageId],
    reader_account: AccountId,
    now_ms: int,
) -> list[SentMessage]:
    """Set ``read_ms`` on messages addressed to ``reader_account``, first read only."""
    rows = await conn.execute(
        update(messages)
        .where(
            messages.c.message_id.in_(list(message_ids)),
            messages.c.recipient_account == reader_account,
            messages.c.read_ms.is_(None),
        )
        .values(read_ms=now_ms)
        .returning(*messages.c)
    )
    return [_message(r) for r in rows]


async def purge_expired(conn: AsyncConnection, now_ms: int) -> tuple[int, int]:
    envelopes = await conn.execute(delete(mailbox).where(mailbox.c.expires_ms <= now_ms))
    sent = await conn.execute(delete(messages).where(messages.c.expires_ms <= now_ms))
    return envelopes.rowcount or 0, sent.rowcount or 0

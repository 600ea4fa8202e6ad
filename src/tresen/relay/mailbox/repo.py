"""SQL of messages and per-device mailboxes.

The write path works on whole batches (see ``MailboxService``): every function here takes
many keys at once, so one batch of sends and acks costs a handful of statements.
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import IntEnum
from typing import Any, TypeVar

import msgspec
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Select,
    String,
    and_,
    any_,
    bindparam,
    delete,
    func,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningDelete, ReturningUpdate

from tresen.core.db import (
    DriverStatement,
    Newest,
    driver_insert,
    driver_insert_numbered,
    key_list,
    key_list_param,
    key_pair_params,
    key_pairs,
)
from tresen.core.ids import AccountId, DeviceId, DevicePk, MessageId
from tresen.relay.schema import business_profiles, devices, mailbox, messages

__all__ = [
    "Deleted",
    "EntryKind",
    "ExpiredMessage",
    "MailboxEntry",
    "NewEntry",
    "NewMessage",
    "RecipientDevice",
    "SendChecks",
    "SentMessage",
    "Stored",
    "StoredMessage",
    "count_resends",
    "delete_acked",
    "delete_entries",
    "device_pks_of",
    "devices_with_entries_after",
    "expire_entries",
    "expire_messages",
    "lock_devices",
    "mark_delivered",
    "mark_read",
    "messages_to_resend",
    "newest_seq",
    "pending_entries",
    "send_checks",
    "store",
]

# Keeps every statement far below SQLite's limit on bound parameters.
CHUNK = 400

K = TypeVar("K")


def _chunks(items: Sequence[K]) -> Iterator[Sequence[K]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


class EntryKind(IntEnum):
    MESSAGE = 0
    DELIVERED = 1
    READ = 2
    FAILED = 3  # a message of this device's account expired undelivered


_ENTRY_KINDS = tuple(EntryKind)
"""Each kind at its value's index: a row's kind without the enum's look-up."""
assert all(kind == i for i, kind in enumerate(_ENTRY_KINDS))


class RecipientDevice(msgspec.Struct, frozen=True):
    pk: DevicePk
    device_id: DeviceId
    registration_id: int
    queued: int = 0
    """Entries waiting in its mailbox when it was read (for the queue limit)."""


class SentMessage(msgspec.Struct, frozen=True):
    message_id: MessageId
    sender_account: AccountId
    sender_device_pk: DevicePk
    recipient_account: AccountId
    klass: int
    server_ms: int


class NewMessage(msgspec.Struct, frozen=True):
    message: SentMessage
    client_msg_id: str
    expires_ms: int
    template_id: int | None = None


class StoredMessage(msgspec.Struct, frozen=True):
    """A message record as a resend needs it."""

    message: SentMessage
    template_id: int | None
    resends: int
    expires_ms: int


class NewEntry(msgspec.Struct, frozen=True):
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
    template_id: int | None = None

    def stored_as(self, seq: int) -> MailboxEntry:
        return MailboxEntry(
            seq,
            self.kind,
            self.message_id,
            self.peer_account,
            self.peer_device,
            self.klass,
            self.olm_type,
            self.payload,
            self.server_ms,
            self.template_id,
        )


class MailboxEntry(msgspec.Struct, frozen=True):
    seq: int
    kind: EntryKind
    message_id: MessageId
    peer_account: AccountId
    peer_device: int
    klass: int
    olm_type: int
    payload: bytes
    server_ms: int
    template_id: int | None = None
    """The template a template-class message was sent (and billed) as."""


class Stored(msgspec.Struct, frozen=True):
    """What :func:`store` appended: the entries' ``seq`` in the order given, and for each
    device appended to, the newest ``seq`` its mailbox held before (0 if none)."""

    seqs: list[int]
    after: dict[DevicePk, int]


# Statements of every group commit, run on the driver (core.db.DriverStatement); ``keys`` is
# bound to a list of keys (core.db.key_list_param).
# What a batch's sends are checked against, in one statement: a round trip less each. Rows
# of three shapes, told apart by their NULLs: a suspended sender (its account alone); a
# recipient device that can receive ciphertext (account, pk, device id, registration id,
# queue length); an earlier send by one of the (sender device, client message id) keys
# (message id, sender device, class, NULL, server time, sender, recipient, client id).
_SEND_CHECKS = DriverStatement(
    lambda dialect: union_all(
        select(business_profiles.c.account_id, *[null()] * 7).where(
            business_profiles.c.account_id.in_(key_list(dialect, String(), "senders")),
            business_profiles.c.suspended_ms.is_not(None),
        ),
        select(
            devices.c.account_id,
            devices.c.pk,
            devices.c.device_id,
            devices.c.registration_id,
            select(func.count())
            .where(mailbox.c.device_pk == devices.c.pk)
            .scalar_subquery()
            .label("queued"),
            *[null()] * 3,
        ).where(
            devices.c.account_id.in_(key_list(dialect, String(), "recipients")),
            devices.c.identity_curve25519.is_not(None),
        ),
        _earlier_sends(dialect),
    )
)


def _earlier_sends(dialect: str) -> Select[Any]:
    keys = key_pairs(dialect, BigInteger(), String())
    return select(
        messages.c.message_id,
        messages.c.sender_device_pk,
        messages.c.klass,
        null(),
        messages.c.server_ms,
        messages.c.sender_account,
        messages.c.recipient_account,
        messages.c.client_msg_id,
    ).select_from(
        keys.join(
            messages,
            and_(messages.c.sender_device_pk == keys.c.a, messages.c.client_msg_id == keys.c.b),
        )
    )


_DEVICE_PKS = DriverStatement(
    lambda dialect: select(devices.c.account_id, devices.c.pk).where(
        devices.c.account_id.in_(key_list(dialect, String()))
    )
)
_MAILBOX_HEADS = DriverStatement(
    lambda dialect: (
        select(mailbox.c.device_pk, func.max(mailbox.c.seq))
        .where(mailbox.c.device_pk.in_(key_list(dialect, BigInteger())))
        .group_by(mailbox.c.device_pk)
    )
)
# The columns of a SentMessage, in _sent_message's order.
_SENT = (
    messages.c.message_id,
    messages.c.sender_account,
    messages.c.sender_device_pk,
    messages.c.recipient_account,
    messages.c.klass,
    messages.c.server_ms,
)
_MARK_DELIVERED = DriverStatement(
    lambda dialect: (
        update(messages)
        .where(
            messages.c.message_id.in_(key_list(dialect, String())),
            messages.c.delivered_ms.is_(None),
        )
        .values(delivered_ms=bindparam("now_ms", type_=BigInteger()))
        .returning(*_SENT)
    )
)


def _sent_message(row: Sequence[Any]) -> SentMessage:
    """A SentMessage from a driver row of the ``_SENT`` columns."""
    return SentMessage(
        MessageId(row[0]),
        AccountId(row[1]),
        DevicePk(row[2]),
        AccountId(row[3]),
        row[4],
        row[5],
    )


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


class SendChecks(msgspec.Struct, frozen=True):
    suspended: set[AccountId]
    """The senders that are businesses suspended by the operator."""
    devices: dict[AccountId, list[RecipientDevice]]
    """Per recipient, its devices that can receive ciphertext (their identity keys are
    known), by device id."""
    earlier: dict[tuple[DevicePk, str], SentMessage]
    """Earlier sends, by (sender device, client message id)."""


async def send_checks(
    conn: AsyncConnection,
    senders: Iterable[AccountId],
    recipients: Iterable[AccountId],
    keys: Iterable[tuple[DevicePk, str]] = (),
) -> SendChecks:
    """What sends from ``senders`` to ``recipients`` are checked against, and the earlier
    sends of ``keys`` (sender device, client message id)."""
    checks = SendChecks(set(), defaultdict(list), {})
    dialect = conn.dialect.name
    for from_chunk, to_chunk, key_chunk in itertools.zip_longest(
        _chunks(sorted(set(senders))),
        _chunks(sorted(set(recipients))),
        _chunks(sorted(set(keys))),
        fillvalue=(),
    ):
        params = {
            "senders": key_list_param(dialect, from_chunk),
            "recipients": key_list_param(dialect, to_chunk),
            **key_pair_params(dialect, key_chunk),
        }
        for row in await _SEND_CHECKS.rows(conn, params):
            account_or_message, pk, device_id, registration_id, number = row[:5]
            if row[7] is not None:
                message = SentMessage(
                    MessageId(account_or_message),
                    AccountId(row[5]),
                    DevicePk(pk),
                    AccountId(row[6]),
                    device_id,
                    number,
                )
                checks.earlier[(message.sender_device_pk, row[7])] = message
            elif pk is None:
                checks.suspended.add(AccountId(account_or_message))
            else:
                checks.devices[AccountId(account_or_message)].append(
                    RecipientDevice(DevicePk(pk), DeviceId(device_id), registration_id, number)
                )
    for listed in checks.devices.values():
        listed.sort(key=lambda d: d.device_id)
    return checks


async def device_pks_of(
    conn: AsyncConnection, account_ids: Iterable[AccountId]
) -> dict[AccountId, list[DevicePk]]:
    """Every device of each account, with or without keys (relay events reach them all)."""
    found: dict[AccountId, list[DevicePk]] = defaultdict(list)
    dialect = conn.dialect.name
    for chunk in _chunks(sorted(set(account_ids))):
        rows = await _DEVICE_PKS.rows(conn, {"keys": key_list_param(dialect, chunk)})
        for account_id, pk in rows:
            found[AccountId(account_id)].append(DevicePk(pk))
    return found


async def lock_devices(
    conn: AsyncConnection, device_pks: Iterable[DevicePk], accounts: Iterable[AccountId] = ()
) -> dict[AccountId, list[DevicePk]]:
    """PostgreSQL: lock the rows of ``device_pks`` and of every device of ``accounts``, in key
    order, before appending to their mailboxes; returns the devices of ``accounts``.

    Appends to one device's mailbox are then committed in ``seq`` order, so a delivery loop
    that reads past its last ``seq`` never misses an entry committed late by a slower
    transaction. SQLite has a single writer and needs no lock. The accounts' devices (the
    targets of relay events) come with the lock: a round trip less than finding them first.
    """
    targets = sorted(set(device_pks))
    owners = sorted(set(accounts))
    dialect = conn.dialect.name
    if len(targets) > CHUNK or len(owners) > CHUNK:
        # More than one statement takes: find the accounts' devices first, then lock every
        # row chunk by chunk, still in key order across the chunks.
        found = await device_pks_of(conn, owners)
        targets = sorted(set(targets).union(pk for pks in found.values() for pk in pks))
        for chunk in _chunks(targets):
            params = {
                "keys": key_list_param(dialect, chunk),
                "accounts": key_list_param(dialect, []),
            }
            await _LOCK_DEVICES.rows(conn, params)
        return found
    listed: dict[AccountId, list[DevicePk]] = defaultdict(list)
    if not targets and not owners:
        return listed
    wanted = set(owners)
    params = {"keys": key_list_param(dialect, targets), "accounts": key_list_param(dialect, owners)}
    for pk, account_id in await _LOCK_DEVICES.rows(conn, params):
        if account_id in wanted:
            listed[AccountId(account_id)].append(DevicePk(pk))
    return listed


# PostgreSQL only. "= ANY(array)" on both sides of the OR: each side an index scan, the two
# OR-ed as bitmaps. With "IN (SELECT unnest(...))" the planner can only test every row of the
# table against both lists.
_LOCK_DEVICES = DriverStatement(
    lambda _dialect: (
        select(devices.c.pk, devices.c.account_id)
        .where(
            or_(
                devices.c.pk == any_(bindparam("keys", type_=ARRAY(BigInteger()))),
                devices.c.account_id == any_(bindparam("accounts", type_=ARRAY(String()))),
            )
        )
        .order_by(devices.c.pk)
        .with_for_update()
    )
)


_MESSAGE_COLUMNS = (
    "message_id",
    "sender_account",
    "sender_device_pk",
    "client_msg_id",
    "recipient_account",
    "klass",
    "server_ms",
    "expires_ms",
    "template_id",
)


def _message_rows(rows: Sequence[NewMessage]) -> list[tuple[Any, ...]]:
    return [
        (
            r.message.message_id,
            r.message.sender_account,
            r.message.sender_device_pk,
            r.client_msg_id,
            r.message.recipient_account,
            r.message.klass,
            r.message.server_ms,
            r.expires_ms,
            r.template_id,
        )
        for r in rows
    ]


async def messages_to_resend(
    conn: AsyncConnection, message_ids: Iterable[MessageId]
) -> dict[MessageId, StoredMessage]:
    """The records of these messages, locked (PostgreSQL) until the transaction ends, so that
    resends on several relay processes count against one limit."""
    found: dict[MessageId, StoredMessage] = {}
    for chunk in _chunks(sorted(set(message_ids))):
        rows = await conn.execute(
            select(messages)
            .where(messages.c.message_id.in_(chunk))
            .order_by(messages.c.message_id)
            .with_for_update()
        )
        for r in rows:
            found[MessageId(r.message_id)] = StoredMessage(
                _message(r), r.template_id, r.resends, r.expires_ms
            )
    return found


async def count_resends(conn: AsyncConnection, counts: Mapping[MessageId, int]) -> None:
    """Add ``counts[message_id]`` to each message's ``resends``."""
    if not counts:
        return
    await conn.execute(
        update(messages)
        .where(messages.c.message_id == bindparam("b_message_id"))
        .values(resends=messages.c.resends + bindparam("b_count")),
        [{"b_message_id": m, "b_count": n} for m, n in sorted(counts.items())],
    )


_LAST_SEQ = DriverStatement(
    lambda _dialect: text("SELECT seq FROM sqlite_sequence WHERE name = 'mailbox'")
)


_MAILBOX_COLUMNS = (
    "device_pk",
    "kind",
    "message_id",
    "peer_account",
    "peer_device",
    "klass",
    "olm_type",
    "payload",
    "server_ms",
    "expires_ms",
    "template_id",
)


async def store(
    conn: AsyncConnection,
    new: Sequence[NewMessage],
    entries: Sequence[NewEntry],
    sent: Mapping[DevicePk, int] | None = None,
) -> Stored:
    """Record ``new`` messages and append ``entries`` to their devices' mailboxes, and tell
    each device's newest ``seq`` before them (read after every earlier append: SQLite has
    one writer, on PostgreSQL the transaction holds the devices' locks).

    ``sent``: where a device's connection on this node has sent up to. Only whether entries
    wait above that matters (:meth:`Connection.offer`): the device's ``after`` is then the
    newest above it, or that number itself when there is none. A device without one gets a
    number above every seq (its entries are fetched, not offered). On PostgreSQL one
    statement does both inserts and the look-ups."""
    rows = [
        (
            e.device_pk,
            int(e.kind),
            e.message_id,
            e.peer_account,
            e.peer_device,
            e.klass,
            e.olm_type,
            e.payload,
            e.server_ms,
            e.expires_ms,
            e.template_id,
        )
        for e in entries
    ]
    sent = sent or {}
    floors = {pk: sent.get(pk, NOTHING_SENT) for pk in {e.device_pk for e in entries}}
    if conn.dialect.name != "sqlite" and rows:
        also = (messages, _MESSAGE_COLUMNS, _message_rows(new))
        numbered = await driver_insert_numbered(
            conn,
            mailbox,
            "seq",
            _MAILBOX_COLUMNS,
            rows,
            also=also,
            returning=("device_pk",),
            newest=Newest("device_pk", floors),
        )
        return Stored(
            [int(seq) for seq, _, _ in numbered],
            {DevicePk(pk): int(before) for _, pk, before in numbered},
        )
    await driver_insert(conn, messages, _MESSAGE_COLUMNS, _message_rows(new))
    if not rows:
        return Stored([], {})
    dialect = conn.dialect.name
    after = dict(floors)
    for chunk in _chunks(sorted(sent.keys() & floors.keys())):
        heads = await _MAILBOX_HEADS.rows(conn, {"keys": key_list_param(dialect, chunk)})
        after.update((DevicePk(pk), max(int(seq), floors[pk])) for pk, seq in heads)
    # The caller holds SQLite's write lock: the seqs after the last one taken are free.
    # AUTOINCREMENT never hands out a seq twice and advances sqlite_sequence past explicitly
    # inserted values.
    last = await _LAST_SEQ.rows(conn, {})
    start = int(last[0][0] if last else 0) + 1
    seqs = list(range(start, start + len(rows)))
    await driver_insert(
        conn,
        mailbox,
        ("seq", *_MAILBOX_COLUMNS),
        [(seq, *row) for seq, row in zip(seqs, rows, strict=True)],
    )
    return Stored(seqs, after)


NOTHING_SENT = 2**62
"""The floor of a device no connection of this node sends to: above every seq."""


async def newest_seq(conn: AsyncConnection) -> int:
    """The highest seq in the mailbox (0 when it is empty)."""
    return int((await conn.execute(select(func.max(mailbox.c.seq)))).scalar_one() or 0)


async def count_entries(conn: AsyncConnection) -> int:
    """Entries in all mailboxes (a full count: for the metrics' sampler, not per request)."""
    return int((await conn.execute(select(func.count()).select_from(mailbox))).scalar_one())


async def devices_with_entries_after(
    conn: AsyncConnection, after_seq: int
) -> tuple[list[DevicePk], int]:
    """The devices with entries after ``after_seq``, and the newest seq (``after_seq`` if
    there is none)."""
    rows = await conn.execute(
        select(mailbox.c.device_pk, func.max(mailbox.c.seq))
        .where(mailbox.c.seq > after_seq)
        .group_by(mailbox.c.device_pk)
    )
    found = [(DevicePk(pk), int(seq)) for pk, seq in rows]
    return [pk for pk, _ in found], max((seq for _, seq in found), default=after_seq)


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
            mailbox.c.template_id,
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
            r.template_id,
        )
        for r in rows
    ]


def _delete_entries(dialect: str) -> ReturningDelete[Any]:
    keys = key_pairs(dialect, BigInteger(), BigInteger())
    owned = mailbox.alias("owned")
    # seq is the key: the pairs pick the seqs their devices own, and those are deleted.
    return (
        delete(mailbox)
        .where(
            mailbox.c.seq.in_(
                select(owned.c.seq).select_from(
                    keys.join(owned, and_(owned.c.device_pk == keys.c.a, owned.c.seq == keys.c.b))
                )
            )
        )
        .returning(mailbox.c.device_pk, mailbox.c.seq, mailbox.c.kind, mailbox.c.message_id)
    )


_DELETE_ENTRIES = DriverStatement(_delete_entries)


async def delete_entries(
    conn: AsyncConnection, keys: Sequence[tuple[DevicePk, int]]
) -> list[tuple[DevicePk, int, EntryKind, MessageId]]:
    """Delete entries by (owning device, seq); a device can only delete its own."""
    dialect = conn.dialect.name
    deleted: list[tuple[DevicePk, int, EntryKind, MessageId]] = []
    for chunk in _chunks(keys):
        rows = await _DELETE_ENTRIES.rows(conn, key_pair_params(dialect, chunk))
        kinds = _ENTRY_KINDS
        deleted.extend((pk, seq, kinds[kind], message_id) for pk, seq, kind, message_id in rows)
    return deleted


# PostgreSQL: the acked entries deleted and their messages marked delivered in one
# statement: a row per deleted entry (its device, seq, kind and message), then one per
# message delivered by it (device and seq NULL, the message's columns): a message-kind entry
# its device could decrypt, of a message not delivered before. The two parts see the same
# snapshot, and the UPDATE finds its rows in what the DELETE returned.
_DELETE_ACKED = DriverStatement(
    lambda _dialect: text(
        "WITH deleted AS ("
        " DELETE FROM mailbox USING unnest(CAST(:device_pks AS BIGINT[]),"
        " CAST(:seqs AS BIGINT[]), CAST(:undecryptable AS BOOLEAN[]))"
        " AS acked(device_pk, seq, undecryptable)"
        " WHERE mailbox.seq = acked.seq AND mailbox.device_pk = acked.device_pk"
        " RETURNING mailbox.device_pk, mailbox.seq, mailbox.kind, mailbox.message_id,"
        " acked.undecryptable),"
        " delivered AS ("
        " UPDATE messages SET delivered_ms = :now_ms"
        " WHERE messages.message_id IN (SELECT deleted.message_id FROM deleted"
        " WHERE deleted.kind = :message_kind AND NOT deleted.undecryptable)"
        " AND messages.delivered_ms IS NULL"
        " RETURNING messages.message_id, messages.sender_account, messages.sender_device_pk,"
        " messages.recipient_account, messages.klass, messages.server_ms)"
        " SELECT device_pk, seq, kind, message_id, NULL, NULL, NULL, NULL, NULL FROM deleted"
        " UNION ALL SELECT NULL, NULL, NULL, message_id, sender_account, sender_device_pk,"
        " recipient_account, klass, server_ms FROM delivered"
    )
)

Deleted = tuple[DevicePk, int, EntryKind, MessageId]
"""An entry an ack deleted: its device, seq, kind and message."""


async def delete_acked(
    conn: AsyncConnection,
    keys: Sequence[tuple[DevicePk, int]],
    undecryptable: set[tuple[DevicePk, int]],
    now_ms: int,
) -> tuple[list[Deleted], list[SentMessage]]:
    """Delete acked entries by (owning device, seq), and mark the messages of those of kind
    message delivered where they were not yet, but for copies in ``undecryptable`` (their
    device could not read them: not a delivery). Returns what was deleted and the messages
    delivered for the first time; on PostgreSQL in one statement."""
    if conn.dialect.name == "sqlite":
        deleted = await delete_entries(conn, keys)
        reached = {
            message_id
            for pk, seq, kind, message_id in deleted
            if kind is EntryKind.MESSAGE and (pk, seq) not in undecryptable
        }
        return deleted, await mark_delivered(conn, reached, now_ms) if reached else []
    found: list[Deleted] = []
    delivered: list[SentMessage] = []
    kinds = _ENTRY_KINDS
    for chunk in _chunks(sorted(set(keys))):
        params = {
            "device_pks": [pk for pk, _ in chunk],
            "seqs": [seq for _, seq in chunk],
            "undecryptable": [key in undecryptable for key in chunk],
            "now_ms": now_ms,
            "message_kind": int(EntryKind.MESSAGE),
        }
        for row in await _DELETE_ACKED.rows(conn, params):
            if row[0] is None:
                delivered.append(_sent_message(row[3:]))
            else:
                found.append((DevicePk(row[0]), int(row[1]), kinds[row[2]], MessageId(row[3])))
    return found, delivered


async def mark_delivered(
    conn: AsyncConnection, message_ids: Iterable[MessageId], now_ms: int
) -> list[SentMessage]:
    """Set ``delivered_ms`` where unset; returns the messages delivered for the first time."""
    delivered: list[SentMessage] = []
    dialect = conn.dialect.name
    for chunk in _chunks(sorted(set(message_ids))):
        params = {"keys": key_list_param(dialect, chunk), "now_ms": now_ms}
        rows = await _MARK_DELIVERED.rows(conn, params)
        delivered.extend(_sent_message(row) for row in rows)
    return delivered


@functools.cache
def _mark_read(dialect: str) -> ReturningUpdate[Any]:
    keys = key_pairs(dialect, String(), String())
    addressed = messages.alias("addressed")
    return (
        update(messages)
        .where(
            messages.c.message_id.in_(
                select(addressed.c.message_id).select_from(
                    keys.join(
                        addressed,
                        and_(
                            addressed.c.recipient_account == keys.c.a,
                            addressed.c.message_id == keys.c.b,
                        ),
                    )
                )
            ),
            messages.c.read_ms.is_(None),
        )
        .values(read_ms=bindparam("now_ms"))
        .returning(*messages.c)
    )


async def mark_read(
    conn: AsyncConnection, keys: Iterable[tuple[MessageId, AccountId]], now_ms: int
) -> list[SentMessage]:
    """Set ``read_ms`` on (message, its recipient) pairs, first read only."""
    dialect = conn.dialect.name
    read: list[SentMessage] = []
    for chunk in _chunks(sorted({(account, message) for message, account in keys})):
        rows = await conn.execute(
            _mark_read(dialect), {**key_pair_params(dialect, chunk), "now_ms": now_ms}
        )
        read.extend(_message(r) for r in rows)
    return read


class ExpiredMessage(msgspec.Struct, frozen=True):
    message: SentMessage
    received: bool
    """A device of the recipient acked it or the recipient read it before it expired."""


async def expire_messages(conn: AsyncConnection, now_ms: int, limit: int) -> list[ExpiredMessage]:
    """Delete up to ``limit`` message records whose TTL has passed, oldest first.

    Rows another transaction holds (PostgreSQL: an ack marking one delivered, another relay
    process purging) are skipped and left for the next run, so a message is reported either
    delivered or failed, never both, and by one process only.
    """
    due = (
        select(messages.c.message_id)
        .where(messages.c.expires_ms <= now_ms)
        .order_by(messages.c.expires_ms)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = await conn.execute(
        delete(messages).where(messages.c.message_id.in_(due)).returning(*messages.c)
    )
    return [
        ExpiredMessage(_message(r), r.delivered_ms is not None or r.read_ms is not None)
        for r in rows
    ]


async def expire_entries(conn: AsyncConnection, now_ms: int, limit: int) -> int:
    """Delete up to ``limit`` mailbox entries whose TTL has passed, oldest first."""
    due = (
        select(mailbox.c.seq)
        .where(mailbox.c.expires_ms <= now_ms)
        .order_by(mailbox.c.expires_ms)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    deleted = await conn.execute(delete(mailbox).where(mailbox.c.seq.in_(due)))
    return deleted.rowcount or 0

"""Store-and-forward rules: accept a send, deliver in order, delete on ack, report back.

Each send is checked (rate, sizes, device list, queue lengths) and stored as one envelope per
recipient device in one transaction; only then is it answered ``accepted``. An ack deletes the
envelope and, the first time a message reaches any device of its recipient, queues a
``delivered`` event for every device of the sender.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.batching import GroupCommitter
from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.ids import AccountId, DevicePk, MessageId, new_message_id
from tresen.core.logging import get_logger
from tresen.core.ratelimit import TokenBuckets
from tresen.core.settings import Limits
from tresen.relay.accounts.service import Principal
from tresen.relay.keys.service import KeyService
from tresen.relay.mailbox import repo
from tresen.relay.mailbox.hub import Hub
from tresen.relay.mailbox.repo import EntryKind, MailboxEntry, NewEntry, SentMessage
from tresen.wire.relay import MessageClass, Send

__all__ = ["AcceptedSend", "MailboxService"]

log = get_logger("tresen.relay.mailbox")

PURGE_INTERVAL_S = 60.0
# Receipts and system messages are not themselves reported as delivered: that would make
# every receipt produce another event for the other side.
_REPORTED_CLASSES = {MessageClass.SESSION, MessageClass.TEMPLATE}


@dataclass(frozen=True, slots=True)
class AcceptedSend:
    message_id: MessageId
    server_ms: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class _SendOp:
    sender: Principal
    frame: Send


@dataclass(frozen=True, slots=True)
class _AckOp:
    device: Principal
    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _ReadOp:
    reader: Principal
    message_ids: tuple[MessageId, ...]


_Op = _SendOp | _AckOp | _ReadOp


class MailboxService:
    def __init__(
        self, db: Database, clock: Clock, limits: Limits, hub: Hub, keys: KeyService
    ) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        self.hub = hub
        self.keys = keys
        self._send_rate = TokenBuckets(
            clock, limits.send_rate_per_device, limits.send_burst_per_device
        )
        self._purger: asyncio.Task[None] | None = None
        self._writes: GroupCommitter[_Op, AcceptedSend | int] = GroupCommitter(
            self._apply_batch, max_batch=limits.write_batch
        )

    async def start(self) -> None:
        self._writes.start()
        self._purger = asyncio.create_task(self._purge_periodically())

    async def close(self) -> None:
        await self._writes.close()
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger

    # --- the write path: one transaction per batch of operations ------------------------------

    def submit_send(self, sender: Principal, frame: Send) -> asyncio.Future[AcceptedSend]:
        """Check ``frame`` and queue it for storage; the future resolves once it is durable."""
        self._check_shape(frame)
        wait_ms = self._send_rate.take(sender.device_pk)
        if wait_ms:
            raise TresenError(
                ErrorCode.THROUGHPUT_REACHED,
                "this device is sending too fast",
                retry_after_ms=wait_ms,
                limit_per_s=self.limits.send_rate_per_device,
            )
        return self._submit(_SendOp(sender, frame))  # type: ignore[return-value]

    def submit_ack(self, device: Principal, seqs: Sequence[int]) -> asyncio.Future[int]:
        """Queue the deletion of acknowledged entries; resolves to how many were deleted."""
        if len(seqs) > self.limits.max_acks_per_frame:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "too many ids in one ack",
                max_ids=self.limits.max_acks_per_frame,
            )
        return self._submit(_AckOp(device, tuple(dict.fromkeys(seqs))))  # type: ignore[return-value]

    def submit_read(self, reader: Principal, message_ids: Sequence[str]) -> asyncio.Future[int]:
        """Queue read receipts for messages addressed to ``reader``, routed to their senders."""
        if len(message_ids) > self.limits.max_receipt_ids_per_frame:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "too many message ids in one receipt",
                max_ids=self.limits.max_receipt_ids_per_frame,
            )
        ids = tuple(MessageId(m) for m in dict.fromkeys(message_ids))
        return self._submit(_ReadOp(reader, ids))  # type: ignore[return-value]

    async def send(self, sender: Principal, frame: Send) -> AcceptedSend:
        return await self.submit_send(sender, frame)

    async def ack(self, device: Principal, seqs: Sequence[int]) -> int:
        return await self.submit_ack(device, seqs)

    async def read(self, reader: Principal, message_ids: Sequence[str]) -> int:
        return await self.submit_read(reader, message_ids)

    def _submit(self, op: _Op) -> asyncio.Future[AcceptedSend | int]:
        try:
            return self._writes.submit(op)
        except asyncio.QueueFull:
            raise TresenError(
                ErrorCode.THROUGHPUT_REACHED, "the relay is overloaded; retry shortly"
            ) from None

    async def _apply_batch(self, ops: Sequence[_Op]) -> list[AcceptedSend | int | BaseException]:
        now = self.clock.now_ms()
        results: list[AcceptedSend | int | BaseException] = []
        woken: set[DevicePk] = set()
        async with self.db.write() as conn:
            for op in ops:
                try:
                    if isinstance(op, _SendOp):
                        results.append(await self._store(conn, op.sender, op.frame, now, woken))
                    elif isinstance(op, _AckOp):
                        results.append(await self._delete_acked(conn, op, now, woken))
                    else:
                        results.append(await self._route_read(conn, op, now, woken))
                except TresenError as exc:
                    # Rules are checked before anything is written, so the transaction stays
                    # good for the other operations of the batch.
                    results.append(exc)
        self.hub.wake(woken)
        return results

    async def _store(
        self,
        conn: AsyncConnection,
        sender: Principal,
        frame: Send,
        now: int,
        woken: set[DevicePk],
    ) -> AcceptedSend:
        to = AccountId(frame.to)
        earlier = await repo.find_message(conn, sender.device_pk, frame.client_msg_id)
        if earlier is not None:
            return AcceptedSend(earlier.message_id, earlier.server_ms, duplicate=True)
        targets = await self._check_devices(conn, sender, to, frame)
        for target in targets:
            queued = await repo.queue_length(conn, target.pk, self.limits.max_queue_per_device)
            if queued >= self.limits.max_queue_per_device:
                raise TresenError(
                    ErrorCode.QUEUE_FULL,
                    "a recipient device has too many undelivered messages",
                    device_id=target.device_id,
                    max_queue=self.limits.max_queue_per_device,
                )
        message = SentMessage(
            new_message_id(), sender.account_id, sender.device_pk, to, frame.klass, now
        )
        expires = now + self.limits.envelope_ttl_s * 1000
        await repo.insert_message(
            conn, message, client_msg_id=frame.client_msg_id, expires_ms=expires
        )
        by_device = {c.device_id: c for c in frame.per_device}
        await repo.enqueue(
            conn,
            [
                NewEntry(
                    device_pk=t.pk,
                    kind=EntryKind.MESSAGE,
                    message_id=message.message_id,
                    peer_account=sender.account_id,
                    peer_device=sender.device_id,
                    klass=int(frame.klass),
                    olm_type=by_device[t.device_id].type,
                    payload=by_device[t.device_id].body,
                    server_ms=now,
                    expires_ms=expires,
                )
                for t in targets
            ],
            lock=not self.db.is_sqlite,
        )
        woken.update(t.pk for t in targets)
        log.debug(
            "message accepted",
            message_id=message.message_id,
            sender=sender.account_id,
            recipient=to,
            devices=len(targets),
            klass=frame.klass.name,
        )
        return AcceptedSend(message.message_id, now, duplicate=False)

    def _check_shape(self, frame: Send) -> None:
        seen: set[int] = set()
        for copy in frame.per_device:
            if copy.device_id in seen:
                raise TresenError(
                    ErrorCode.INVALID_PARAMETER,
                    "a device appears twice in per_device",
                    device_id=copy.device_id,
                )
            seen.add(copy.device_id)
            if len(copy.body) > self.limits.max_ciphertext_bytes:
                raise TresenError(
                    ErrorCode.FRAME_TOO_LARGE,
                    "a ciphertext is larger than allowed",
                    device_id=copy.device_id,
                    max_bytes=self.limits.max_ciphertext_bytes,
                )
            if not copy.body:
                raise TresenError(
                    ErrorCode.INVALID_PARAMETER, "empty ciphertext", device_id=copy.device_id
                )
        if len(frame.per_device) > self.limits.max_devices_per_account:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "more ciphertexts than an account can have devices",
                max_devices=self.limits.max_devices_per_account,
            )

    async def _check_devices(
        self, conn: AsyncConnection, sender: Principal, to: AccountId, frame: Send
    ) -> list[repo.RecipientDevice]:
        current = await repo.recipient_devices(conn, to)
        if to == sender.account_id:
            # Copies to one's own other devices: the sending device is never a recipient.
            current = [d for d in current if d.pk != sender.device_pk]
        if not current:
            raise TresenError(
                ErrorCode.UNDELIVERABLE, "the recipient cannot receive messages", to=frame.to
            )
        expected: dict[int, repo.RecipientDevice] = {d.device_id: d for d in current}
        given = {c.device_id: c for c in frame.per_device}
        missing = sorted(set(expected) - set(given))
        extra = sorted(set(given) - set(expected))
        stale = sorted(
            device_id
            for device_id, copy in given.items()
            if device_id in expected
            and copy.registration_id is not None
            and copy.registration_id != expected[device_id].registration_id
        )
        if missing or extra or stale:
            raise TresenError(
                ErrorCode.DEVICE_MISMATCH,
                "the recipient's device list has changed; fetch it and encrypt again",
                missing=missing,
                extra=extra,
                stale=stale,
            )
        return current

    # --- receiving ---------------------------------------------------------------------------

    async def pending(
        self, device_pk: DevicePk, *, after_seq: int = 0, limit: int | None = None
    ) -> list[MailboxEntry]:
        """Entries waiting for ``device_pk`` after ``after_seq``, oldest first."""
        limit = min(limit or self.limits.max_fetch_batch, self.limits.max_fetch_batch)
        async with self.db.read() as conn:
            return await repo.pending_entries(
                conn, device_pk, after_seq=after_seq, now_ms=self.clock.now_ms(), limit=limit
            )

    async def _delete_acked(
        self, conn: AsyncConnection, op: _AckOp, now: int, woken: set[DevicePk]
    ) -> int:
        if not op.seqs:
            return 0
        deleted = await repo.delete_entries(conn, op.device.device_pk, op.seqs)
        delivered_ids = [mid for _, kind, mid in deleted if kind is EntryKind.MESSAGE]
        first_time = await repo.mark_delivered(conn, delivered_ids, now) if delivered_ids else []
        events = await self._events_for_senders(
            conn, first_time, EntryKind.DELIVERED, op.device, now
        )
        await repo.enqueue(conn, events, lock=not self.db.is_sqlite)
        woken.update(e.device_pk for e in events)
        return len(deleted)

    async def _route_read(
        self, conn: AsyncConnection, op: _ReadOp, now: int, woken: set[DevicePk]
    ) -> int:
        first_read = await repo.mark_read(conn, op.message_ids, op.reader.account_id, now)
        events = await self._events_for_senders(conn, first_read, EntryKind.READ, op.reader, now)
        await repo.enqueue(conn, events, lock=not self.db.is_sqlite)
        woken.update(e.device_pk for e in events)
        return len(first_read)

    async def _events_for_senders(
        self,
        conn: AsyncConnection,
        sent: Sequence[SentMessage],
        kind: EntryKind,
        by: Principal,
        now: int,
    ) -> list[NewEntry]:
        events: list[NewEntry] = []
        sender_devices: dict[AccountId, list[DevicePk]] = {}
        expires = now + self.limits.envelope_ttl_s * 1000
        for message in sent:
            if message.klass not in _REPORTED_CLASSES:
                continue
            if message.sender_account not in sender_devices:
                sender_devices[message.sender_account] = await repo.account_device_pks(
                    conn, message.sender_account
                )
            for pk in sender_devices[message.sender_account]:
                events.append(
                    NewEntry(
                        device_pk=pk,
                        kind=kind,
                        message_id=message.message_id,
                        peer_account=by.account_id,
                        peer_device=by.device_id,
                        klass=message.klass,
                        olm_type=0,
                        payload=b"",
                        server_ms=now,
                        expires_ms=expires,
                    )
                )
        return events

    # --- expiry ------------------------------------------------------------------------------

    async def purge_expired(self) -> tuple[int, int]:
        """Delete envelopes and message records whose TTL has passed."""
        async with self.db.write() as conn:
            envelopes, sent = await repo.purge_expired(conn, self.clock.now_ms())
        if envelopes or sent:
            log.info("expired envelopes purged", envelopes=envelopes, messages=sent)
        return envelopes, sent

    async def _purge_periodically(self) -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL_S)
            try:
                await self.purge_expired()
            except Exception:
                log.exception("purging expired envelopes failed")

"""Store-and-forward rules: accept a send, deliver in order, delete on ack, report back.

Each send is checked (rate, sizes, device list, queue lengths) and stored as one envelope per
recipient device; only once that is committed is it answered ``accepted``. An ack deletes the
envelope and, the first time a message reaches any device of its recipient, queues a
``delivered`` event for every device of the sender; an envelope acked as undecryptable is
deleted without counting, and its sender may resend the message to that device (resend.py).
Read receipts are routed the same way. A message whose lifetime ends before any device of its
recipient received it is reported back as ``failed`` (131026) when the relay purges it.

All writes go through one group commit: sends, resends, acks, receipts and purges from every
connection that arrive together share one transaction and a handful of statements.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec
import sqlalchemy.exc
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
from tresen.relay.mailbox import repo
from tresen.relay.mailbox.hub import Hub
from tresen.relay.mailbox.payloads import UNDELIVERED_PAYLOAD, encoded_pricing
from tresen.relay.mailbox.repo import (
    EntryKind,
    MailboxEntry,
    NewEntry,
    NewMessage,
    RecipientDevice,
    SentMessage,
)
from tresen.relay.mailbox.resend import (
    AcceptedResend,
    ResendOp,
    admit_resends,
    check_ciphertext,
    plan_resends,
)
from tresen.relay.metrics import RelayMetrics
from tresen.relay.policy.rules import Pricing
from tresen.relay.policy.service import Admission, PolicyService, Prefetched, SendIntent
from tresen.wire.relay import MessageClass, Resend, Send

__all__ = ["AcceptedResend", "AcceptedSend", "MailboxService", "Purged"]

log = get_logger("tresen.relay.mailbox")

# Rows of each table one purge transaction deletes at most; a larger backlog (after the relay
# was down) is worked off in several transactions, so sends and acks are never held up long.
PURGE_CHUNK = 1000
# Receipts and system messages are not themselves reported as delivered (or failed): that
# would make every receipt produce another event for the other side.
_REPORTED_CLASSES = {MessageClass.SESSION, MessageClass.TEMPLATE}


class AcceptedSend(msgspec.Struct, frozen=True):
    message_id: MessageId
    server_ms: int
    duplicate: bool
    pricing: Pricing | None = None


@dataclass(slots=True, eq=False)
class _SendOp:
    sender: Principal
    frame: Send
    # The platform rules' decision, made once: a batch that is retried after a failure
    # (core/batching.py) must not take this send's rate tokens a second time.
    decision: Admission | TresenError | None = None


class _AckOp(msgspec.Struct, frozen=True):
    device: Principal
    seqs: tuple[int, ...]
    undecryptable: frozenset[int] = frozenset()


class _ReadOp(msgspec.Struct, frozen=True):
    reader: Principal
    message_ids: tuple[MessageId, ...]


class _PurgeOp(msgspec.Struct, frozen=True):
    limit: int


class Purged(msgspec.Struct, frozen=True):
    """What one purge deleted, and how many of the messages were reported ``failed``."""

    envelopes: int = 0
    messages: int = 0
    failed: int = 0

    def __add__(self, other: Purged) -> Purged:
        return Purged(
            self.envelopes + other.envelopes,
            self.messages + other.messages,
            self.failed + other.failed,
        )


_Op = _SendOp | ResendOp | _AckOp | _ReadOp | _PurgeOp
_Done = AcceptedSend | AcceptedResend | int | Purged
_Result = _Done | BaseException


@dataclass
class _Batch:
    """What one group commit decided, filled in step by step."""

    now: int
    expires: int
    results: list[_Result | _SameAs | None]
    messages: list[NewMessage] = field(default_factory=list)
    entries: list[NewEntry] = field(default_factory=list)
    admitted: list[tuple[SendIntent, Admission, str]] = field(default_factory=list)
    # Relay events for every device of an account (the entry's device_pk is left 0), made
    # entries once the batch has found (on PostgreSQL, locked) the accounts' devices.
    events: list[tuple[AccountId, NewEntry]] = field(default_factory=list)
    pricing: dict[str, Pricing] = field(default_factory=dict)
    acked: int = 0  # entries deleted by acks (for metrics)
    delivered: int = 0  # messages acked by a first device of their recipient (for metrics)


class MailboxService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        limits: Limits,
        hub: Hub,
        policy: PolicyService,
        *,
        purge_chunk: int = PURGE_CHUNK,
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        self.hub = hub
        self.policy = policy
        self._send_rate = TokenBuckets(
            clock, limits.send_rate_per_device, limits.send_burst_per_device
        )
        self.purge_chunk = purge_chunk
        self._purger: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._next_purge_ms = clock.now_ms() + self._purge_interval_ms
        self.metrics = metrics or RelayMetrics()
        self._writes: GroupCommitter[_Op, _Done] = self._group_commit()
        # On PostgreSQL what recipients report (acks, read receipts) and purges have a group
        # commit of their own, beside the sends': a batch of acks, which every message brings,
        # does not hold up the next send. SQLite has one writer: one group commit does all.
        self._reports = None if db.is_sqlite else self._group_commit()

    def _group_commit(self) -> GroupCommitter[_Op, _Done]:
        return GroupCommitter(
            self._apply_batch,
            max_batch=self.limits.write_batch,
            blame=_blame,
            observe=self.metrics.group_committed,
        )

    @property
    def _lanes(self) -> list[GroupCommitter[_Op, _Done]]:
        return [self._writes] if self._reports is None else [self._writes, self._reports]

    @property
    def write_failures_isolated(self) -> int:
        """Operations that made their group commit fail and were answered alone."""
        return sum(lane.isolated_failures for lane in self._lanes)

    @property
    def _purge_interval_ms(self) -> int:
        return int(self.limits.purge_interval_s * 1000)

    async def start(self) -> None:
        """Start the group commit, purging every ``limits.purge_interval_s`` and the watch
        for entries that other relay processes store."""
        for lane in self._lanes:
            lane.start()
        self._purger = asyncio.create_task(self._purge_periodically())
        self._watcher = asyncio.create_task(self._watch_periodically())

    async def close(self) -> None:
        for task in (self._purger, self._watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._purger = self._watcher = None
        for lane in self._lanes:
            await lane.close()

    # --- submitting --------------------------------------------------------------------------

    def submit_send(self, sender: Principal, frame: Send) -> asyncio.Future[AcceptedSend]:
        """Check ``frame`` and queue it for storage; the future resolves once it is durable."""
        self._check_shape(frame)
        self._take_send_token(sender)
        return self._submit(_SendOp(sender, frame))  # type: ignore[return-value]

    def _take_send_token(self, sender: Principal) -> None:
        wait_ms = self._send_rate.take(sender.device_pk)
        if wait_ms:
            raise TresenError(
                ErrorCode.THROUGHPUT_REACHED,
                "this device is sending too fast",
                retry_after_ms=wait_ms,
                limit_per_s=self.limits.send_rate_per_device,
            )

    def submit_resend(self, device: Principal, frame: Resend) -> asyncio.Future[AcceptedResend]:
        """Check ``frame`` and queue the resent copy for storage (resend.py); the future
        resolves once it is durable."""
        check_ciphertext(frame.device_id, frame.body, self.limits)
        self._take_send_token(device)
        return self._submit(ResendOp(device, frame))  # type: ignore[return-value]

    def submit_ack(
        self, device: Principal, seqs: Sequence[int], undecryptable: Sequence[int] = ()
    ) -> asyncio.Future[int]:
        """Queue the deletion of acknowledged entries; resolves to how many were deleted.

        ``undecryptable`` (a subset of ``seqs``) are messages the device could not decrypt:
        deleted like the others, but not counted as delivered."""
        if len(seqs) > self.limits.max_acks_per_frame:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "too many ids in one ack",
                max_ids=self.limits.max_acks_per_frame,
            )
        unknown = sorted(set(undecryptable) - set(seqs))
        if unknown:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "undecryptable names ids that are not acked in ids",
                field="undecryptable",
                ids=unknown[:16],
            )
        op = _AckOp(device, tuple(dict.fromkeys(seqs)), frozenset(undecryptable))
        return self._submit(op)  # type: ignore[return-value]

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

    async def resend(self, device: Principal, frame: Resend) -> AcceptedResend:
        return await self.submit_resend(device, frame)

    async def ack(
        self, device: Principal, seqs: Sequence[int], undecryptable: Sequence[int] = ()
    ) -> int:
        return await self.submit_ack(device, seqs, undecryptable)

    async def read(self, reader: Principal, message_ids: Sequence[str]) -> int:
        return await self.submit_read(reader, message_ids)

    def _submit(self, op: _Op) -> asyncio.Future[_Done]:
        lane = self._writes
        if self._reports is not None and isinstance(op, _AckOp | _ReadOp | _PurgeOp):
            lane = self._reports
        try:
            return lane.submit(op)
        except asyncio.QueueFull:
            raise TresenError(
                ErrorCode.THROUGHPUT_REACHED, "the relay is overloaded; retry shortly"
            ) from None

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
            check_ciphertext(copy.device_id, copy.body, self.limits)
        if len(frame.per_device) > self.limits.max_devices_per_account:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "more ciphertexts than an account can have devices",
                max_devices=self.limits.max_devices_per_account,
            )

    # --- one group commit --------------------------------------------------------------------

    async def _apply_batch(self, ops: Sequence[_Op]) -> list[_Result]:
        now = self.clock.now_ms()
        batch = _Batch(now, now + self.limits.envelope_ttl_s * 1000, [None] * len(ops))
        sends: list[tuple[int, _SendOp]] = []
        resends: list[tuple[int, ResendOp]] = []
        acks: list[tuple[int, _AckOp]] = []
        reads: list[tuple[int, _ReadOp]] = []
        purges: list[tuple[int, _PurgeOp]] = []
        for i, op in enumerate(ops):  # one pass: a full batch has a few hundred
            if isinstance(op, _AckOp):
                acks.append((i, op))
            elif isinstance(op, _SendOp):
                sends.append((i, op))
            elif isinstance(op, _ReadOp):
                reads.append((i, op))
            elif isinstance(op, ResendOp):
                resends.append((i, op))
            else:
                purges.append((i, op))
        prefetch = None
        if sends:
            intents = [
                SendIntent(op.sender.account_id, op.frame.to, op.frame.klass, op.frame.template_ref)
                for _, op in sends
            ]
            prefetch = asyncio.ensure_future(self.policy.prefetch(intents))
        try:
            return await self._write_batch(batch, sends, resends, acks, reads, purges, prefetch)
        finally:
            if prefetch is not None and not prefetch.done():
                prefetch.cancel()
            elif prefetch is not None and not prefetch.cancelled():
                prefetch.exception()  # retrieved: it was raised in the batch if it mattered

    async def _write_batch(
        self,
        batch: _Batch,
        sends: list[tuple[int, _SendOp]],
        resends: list[tuple[int, ResendOp]],
        acks: list[tuple[int, _AckOp]],
        reads: list[tuple[int, _ReadOp]],
        purges: list[tuple[int, _PurgeOp]],
        prefetch: asyncio.Future[Prefetched | None] | None,
    ) -> list[_Result]:
        # Within one batch these never depend on each other: an envelope can only be acked,
        # and a message only be read or resent, after its send was answered, i.e. in a later
        # batch.
        # Acks alone need not wait for the disk: one lost in a power failure only has its
        # envelope handed over again, which the device recognizes and acks once more. A
        # send waits for it, and its flush writes whatever came before.
        durable = bool(sends or resends or reads or purges)
        # Its statements are short and indexed (a purge's may not be): no trips to SQLite's
        # thread but for BEGIN and the commit.
        # The next batch usually follows at once: the connection stays checked out for it.
        # Every statement here finds its rows by key (a purge's by expiry, also indexed).
        async with self.db.write(durable=durable, inline=not purges, hold=True, keyed=True) as conn:
            planned = await self._plan_sends(conn, sends, batch, prefetch) if sends else []
            planned_resends, refused = (
                await plan_resends(conn, resends, batch.now) if resends else ([], {})
            )
            for index, error in refused.items():
                batch.results[index] = error
            if acks:
                await self._delete_acked(conn, acks, batch)
            if reads:
                await self._route_reads(conn, reads, batch)
            if purges:
                # After the acks and receipts: a message received in its last moments is
                # reported delivered, not failed.
                await self._purge(conn, purges, batch)
            # The queue lengths were read with the recipients' devices, before the locks;
            # meanwhile only this node's other group commit (a batch of events at most) and
            # other nodes' batches can have appended to those mailboxes.
            queued: dict[DevicePk, int] = {}
            self._admit_sends(planned, queued, batch)
            admitted = admit_resends(planned_resends, queued, self.limits, batch.expires)
            batch.entries += admitted.entries
            for index, answer in admitted.results.items():
                batch.results[index] = answer
            # Rows of messages before rows of devices, in every transaction of both group
            # commits (acks and read receipts update messages first too): two transactions
            # never wait for each other in a circle.
            await repo.count_resends(conn, admitted.counts)
            targets = {e.device_pk for e in batch.entries}
            accounts = {account for account, _ in batch.events}
            if self.db.is_sqlite:
                devices_of = await repo.device_pks_of(conn, accounts)
            else:
                devices_of = await repo.lock_devices(conn, targets, accounts)
            for account, event in batch.events:
                for pk in devices_of.get(account, ()):
                    batch.entries.append(msgspec.structs.replace(event, device_pk=pk))
            await self.policy.record(conn, batch.admitted, batch.now)
            sent = self.hub.sent_up_to({e.device_pk for e in batch.entries})
            stored = await repo.store(conn, batch.messages, batch.entries, sent)
        # Committed: from here on nothing may raise, or the group commit would write it again.
        self.metrics.messages_accepted.inc(len(batch.messages))
        self.metrics.envelopes_acked.inc(batch.acked)
        self.metrics.messages_delivered.inc(batch.delivered)
        try:
            self._hand_over(batch.entries, stored)
        except Exception:
            # The connections find the entries when they next read their mailboxes.
            log.exception("handing committed entries to connections failed")
        results: list[_Result] = []
        for result in batch.results:
            assert result is not None
            assert not isinstance(result, _SameAs)
            results.append(result)
        return results

    async def _plan_sends(
        self,
        conn: AsyncConnection,
        sends: list[tuple[int, _SendOp]],
        batch: _Batch,
        prefetch: asyncio.Future[Prefetched | None] | None = None,
    ) -> list[tuple[int, _SendOp, list[RecipientDevice], Admission]]:
        """Resolve duplicates, device lists and the platform rules; what passes waits for the
        queue check."""
        keys = [(op.sender.device_pk, op.frame.client_msg_id) for _, op in sends]
        checks = await repo.send_checks(
            conn,
            {op.sender.account_id for _, op in sends},
            {AccountId(op.frame.to) for _, op in sends},
            keys,
        )
        suspended, recipients, earlier = checks.suspended, checks.devices, checks.earlier
        planned: list[tuple[int, _SendOp, list[RecipientDevice]]] = []
        duplicates: list[tuple[int, SentMessage]] = []
        first_in_batch: dict[tuple[DevicePk, str], int] = {}
        for (index, op), key in zip(sends, keys, strict=True):
            if op.sender.account_id in suspended:
                # A business the operator suspended sends nothing until it is reinstated.
                batch.results[index] = TresenError(
                    ErrorCode.ACCOUNT_RESTRICTED, "this business account is suspended"
                )
            elif key in earlier:
                message = earlier[key]
                batch.results[index] = AcceptedSend(
                    message.message_id, message.server_ms, duplicate=True
                )
                duplicates.append((index, message))
            elif key in first_in_batch:
                # The same send twice in one batch: answered like its original below.
                batch.results[index] = _SameAs(first_in_batch[key])
            else:
                first_in_batch[key] = index
                try:
                    targets = self._check_devices(op, recipients.get(AccountId(op.frame.to), []))
                except TresenError as exc:
                    batch.results[index] = exc
                    continue
                planned.append((index, op, targets))
        if duplicates:
            await self._price_duplicates(conn, duplicates, batch)
        undecided = [op for _, op, _ in planned if op.decision is None]
        if undecided:
            decisions = await self.policy.admit(
                conn,
                [
                    SendIntent(
                        op.sender.account_id, op.frame.to, op.frame.klass, op.frame.template_ref
                    )
                    for op in undecided
                ],
                None if prefetch is None else await prefetch,
            )
            for op, decided in zip(undecided, decisions, strict=True):
                op.decision = decided
        admitted: list[tuple[int, _SendOp, list[RecipientDevice], Admission]] = []
        for index, op, targets in planned:
            decision = op.decision
            assert decision is not None
            if isinstance(decision, TresenError):
                batch.results[index] = decision
            else:
                admitted.append((index, op, targets, decision))
        return admitted

    async def _price_duplicates(
        self, conn: AsyncConnection, duplicates: list[tuple[int, SentMessage]], batch: _Batch
    ) -> None:
        """A repeated send is answered with the pricing facts of its original."""
        found = await self.policy.pricing_of(conn, [m for _, m in duplicates])
        for index, message in duplicates:
            result = batch.results[index]
            if isinstance(result, AcceptedSend) and message.message_id in found:
                batch.results[index] = AcceptedSend(
                    result.message_id, result.server_ms, True, found[message.message_id]
                )

    def _check_devices(self, op: _SendOp, current: list[RecipientDevice]) -> list[RecipientDevice]:
        sender, frame = op.sender, op.frame
        if frame.to == sender.account_id:
            # Copies to one's own other devices: the sending device is never a recipient.
            current = [d for d in current if d.pk != sender.device_pk]
        if not current:
            raise TresenError(
                ErrorCode.UNDELIVERABLE, "the recipient cannot receive messages", to=frame.to
            )
        expected: dict[int, RecipientDevice] = {d.device_id: d for d in current}
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

    def _admit_sends(
        self,
        planned: list[tuple[int, _SendOp, list[RecipientDevice], Admission]],
        queued: dict[DevicePk, int],
        batch: _Batch,
    ) -> None:
        """Store every planned send whose recipients' queues have room, in arrival order;
        ``queued`` (entries per device where this batch added some) is updated."""
        cap = self.limits.max_queue_per_device
        for index, op, targets, admission in planned:
            full = next((t for t in targets if queued.get(t.pk, t.queued) >= cap), None)
            if full is not None:
                batch.results[index] = TresenError(
                    ErrorCode.QUEUE_FULL,
                    "a recipient device has too many undelivered messages",
                    device_id=full.device_id,
                    max_queue=cap,
                )
                continue
            sender, frame = op.sender, op.frame
            message = SentMessage(
                new_message_id(),
                sender.account_id,
                sender.device_pk,
                AccountId(frame.to),
                int(frame.klass),
                batch.now,
            )
            copies = {c.device_id: c for c in frame.per_device}
            template_id = admission.template_id
            if template_id is None and frame.klass is MessageClass.TEMPLATE:
                template_id = _template_number(frame.template_ref)
            batch.messages.append(
                NewMessage(message, frame.client_msg_id, batch.expires, template_id)
            )
            for target in targets:
                queued[target.pk] = queued.get(target.pk, target.queued) + 1
                copy = copies[target.device_id]
                batch.entries.append(
                    NewEntry(
                        device_pk=target.pk,
                        kind=EntryKind.MESSAGE,
                        message_id=message.message_id,
                        peer_account=sender.account_id,
                        peer_device=sender.device_id,
                        klass=int(frame.klass),
                        olm_type=copy.type,
                        payload=copy.body,
                        server_ms=batch.now,
                        expires_ms=batch.expires,
                        template_id=template_id,
                    )
                )
            batch.results[index] = AcceptedSend(
                message.message_id, batch.now, duplicate=False, pricing=admission.pricing
            )
            batch.admitted.append(
                (
                    SendIntent(sender.account_id, frame.to, frame.klass, frame.template_ref),
                    admission,
                    message.message_id,
                )
            )
        for index, result in enumerate(batch.results):
            if isinstance(result, _SameAs):
                original = batch.results[result.index]
                batch.results[index] = (
                    AcceptedSend(original.message_id, original.server_ms, True, original.pricing)
                    if isinstance(original, AcceptedSend)
                    else original
                )

    async def _delete_acked(
        self, conn: AsyncConnection, acks: list[tuple[int, _AckOp]], batch: _Batch
    ) -> None:
        owners = {op.device.device_pk: op.device for _, op in acks}
        keys = [(op.device.device_pk, seq) for _, op in acks for seq in op.seqs]
        # A copy its device could not decrypt reached nobody: it is not a delivery (no event,
        # no billing), and the message stays undelivered until some copy is acked normally.
        undecryptable = {(op.device.device_pk, seq) for _, op in acks for seq in op.undecryptable}
        deleted, delivered = await repo.delete_acked(conn, keys, undecryptable, batch.now)
        batch.acked = len(deleted)
        first_acker: dict[MessageId, Principal] = {}
        message = EntryKind.MESSAGE
        for device_pk, seq, kind, message_id in deleted:
            if kind is message and (device_pk, seq) not in undecryptable:
                first_acker.setdefault(message_id, owners[device_pk])
        # Each deletion is counted once, for the first ack frame that named it.
        unclaimed = {(device_pk, seq) for device_pk, seq, _, _ in deleted}
        for index, op in acks:
            pk = op.device.device_pk
            count = 0
            for seq in op.seqs:
                if (pk, seq) in unclaimed:
                    unclaimed.remove((pk, seq))
                    count += 1
            batch.results[index] = count
        if delivered:
            batch.delivered = len(delivered)
            batch.pricing = await self.policy.delivered(conn, delivered, batch.now)
            self._events_for_senders(
                delivered,
                EntryKind.DELIVERED,
                lambda m: _peer(first_acker[m.message_id]),
                batch,
            )

    async def _route_reads(
        self, conn: AsyncConnection, reads: list[tuple[int, _ReadOp]], batch: _Batch
    ) -> None:
        # Keyed by (message, reader account): only the message's recipient can mark it read,
        # and a stranger naming the same id in the same batch must not shadow the recipient.
        readers: dict[tuple[MessageId, AccountId], Principal] = {}
        for _, op in reads:
            for message_id in op.message_ids:
                readers.setdefault((message_id, op.reader.account_id), op.reader)
        read = await repo.mark_read(conn, readers, batch.now)
        routed: set[tuple[MessageId, AccountId]] = {
            (m.message_id, m.recipient_account) for m in read
        }
        claimed: set[tuple[MessageId, AccountId]] = set()
        for index, op in reads:
            reader = op.reader.account_id
            mine = {
                (m, reader)
                for m in op.message_ids
                if (m, reader) in routed and (m, reader) not in claimed
            }
            claimed |= mine
            batch.results[index] = len(mine)
        self._events_for_senders(
            read,
            EntryKind.READ,
            lambda m: _peer(readers[(m.message_id, m.recipient_account)]),
            batch,
        )

    async def _purge(
        self, conn: AsyncConnection, purges: list[tuple[int, _PurgeOp]], batch: _Batch
    ) -> None:
        """Delete what expired; report messages no device of their recipient received."""
        limit = max(op.limit for _, op in purges)
        expired = await repo.expire_messages(conn, batch.now, limit)
        envelopes = await repo.expire_entries(conn, batch.now, limit)
        undelivered = [e.message for e in expired if not e.received]
        failed = self._events_for_senders(
            undelivered, EntryKind.FAILED, lambda m: (m.recipient_account, 0), batch
        )
        # One purge per batch; other purge requests in it share its result.
        first, *others = (index for index, _ in purges)
        batch.results[first] = Purged(envelopes, len(expired), failed)
        for index in others:
            batch.results[index] = Purged()

    def _events_for_senders(
        self,
        sent: Sequence[SentMessage],
        kind: EntryKind,
        peer: Callable[[SentMessage], tuple[AccountId, int]],
        batch: _Batch,
    ) -> int:
        """Queue a ``kind`` event for every device of each message's sender; ``peer`` gives
        the account and device the event names. Returns how many messages were reported."""
        # Copies to one's own devices need no delivered/read/failed events.
        reported = [
            m
            for m in sent
            if m.klass in _REPORTED_CLASSES and m.sender_account != m.recipient_account
        ]
        for message in reported:
            peer_account, peer_device = peer(message)
            payload = self._event_payload(kind, message, batch)
            batch.events.append(
                (
                    message.sender_account,
                    NewEntry(
                        device_pk=DevicePk(0),
                        kind=kind,
                        message_id=message.message_id,
                        peer_account=peer_account,
                        peer_device=peer_device,
                        klass=message.klass,
                        olm_type=0,
                        payload=payload,
                        server_ms=batch.now,
                        expires_ms=batch.expires,
                    ),
                )
            )
        return len(reported)

    @staticmethod
    def _event_payload(kind: EntryKind, message: SentMessage, batch: _Batch) -> bytes:
        if kind is EntryKind.FAILED:
            return UNDELIVERED_PAYLOAD
        pricing = batch.pricing.get(message.message_id) if kind is EntryKind.DELIVERED else None
        return b"" if pricing is None else encoded_pricing(pricing)

    def _hand_over(self, entries: Sequence[NewEntry], stored: repo.Stored) -> None:
        """Give committed entries to the connections of their devices (on this node; the
        others hear of them)."""
        by_device: dict[DevicePk, list[MailboxEntry]] = defaultdict(list)
        for entry, seq in zip(entries, stored.seqs, strict=True):
            by_device[entry.device_pk].append(entry.stored_as(seq))
        after = stored.after
        self.hub.hand_over(
            [(device_pk, after.get(device_pk, 0), fresh) for device_pk, fresh in by_device.items()]
        )

    # --- receiving ---------------------------------------------------------------------------

    async def pending(
        self, device_pk: DevicePk, *, after_seq: int = 0, limit: int | None = None
    ) -> list[MailboxEntry]:
        """Entries waiting for ``device_pk`` after ``after_seq``, oldest first.

        At most one more than ``limits.max_fetch_batch``, so that a caller paging with the
        largest page can still tell whether more entries are waiting.
        """
        limit = min(limit or self.limits.max_fetch_batch, self.limits.max_fetch_batch + 1)
        async with self.db.read(inline=True) as conn:  # one bounded range of one index
            return await repo.pending_entries(
                conn, device_pk, after_seq=after_seq, now_ms=self.clock.now_ms(), limit=limit
            )

    async def depth(self) -> int:
        """Entries waiting in all mailboxes (sampled for the metrics)."""
        async with self.db.read() as conn:
            return await repo.count_entries(conn)

    # --- expiry ------------------------------------------------------------------------------

    async def purge_expired(self) -> Purged:
        """Delete envelopes and message records whose TTL has passed, and report every
        message no device of its recipient received to its sender's devices (``failed``).

        Runs through the group commit, ``purge_chunk`` rows of each table per transaction.
        """
        purged = Purged()
        while True:
            chunk = self.purge_chunk
            done = await self._submit(_PurgeOp(chunk))
            assert isinstance(done, Purged)
            purged += done
            if done.envelopes < chunk and done.messages < chunk:
                break
        if purged != Purged():
            log.info(
                "expired entries purged",
                envelopes=purged.envelopes,
                messages=purged.messages,
                failed=purged.failed,
            )
        return purged

    async def purge_if_due(self) -> Purged | None:
        """Purge if ``limits.purge_interval_s`` has passed on the relay's clock since the
        last time (what the periodic task runs); None if it has not."""
        now = self.clock.now_ms()
        if now < self._next_purge_ms:
            return None
        self._next_purge_ms = now + self._purge_interval_ms
        return await self.purge_expired()

    def _seconds_until_purge(self) -> float:
        left_ms = self._next_purge_ms - self.clock.now_ms()
        return min(max(left_ms, 0), self._purge_interval_ms) / 1000

    async def _watch_periodically(self) -> None:
        """Wake this process's connections for entries that another relay process stored.

        This process's own commits wake their devices at once (``Hub.offer``); one query
        every ``limits.delivery_poll_s`` finds the devices with entries stored since the last
        looks, whoever stored them, so that a connection needs no polling of its own.
        """
        marks: tuple[int, int] | None = None
        while True:
            try:
                async with self.db.read() as conn:
                    if marks is None:
                        # What is stored already, each connection reads when it connects.
                        newest = await repo.newest_seq(conn)
                        device_pks: list[DevicePk] = []
                    else:
                        device_pks, newest = await repo.devices_with_entries_after(conn, marks[0])
            except Exception:
                log.exception("watching the mailbox failed")
            else:
                # Each look starts where the one before the last ended: on PostgreSQL a
                # transaction can commit after another that took a higher seq.
                marks = (newest, newest) if marks is None else (marks[1], max(newest, marks[1]))
                self.hub.wake(device_pks)
            await asyncio.sleep(self.limits.delivery_poll_s)

    async def _purge_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._seconds_until_purge())
            try:
                await self.purge_if_due()
            except Exception:
                log.exception("purging expired envelopes failed")


def _blame(op: _Op, exc: Exception) -> TresenError:
    """What an operation that failed alone in the group commit is answered with."""
    if _is_bad_value(exc):
        # A value the database refuses (out of range, a character it cannot store): the
        # client's fault, whatever the decoder let through.
        return TresenError(
            ErrorCode.INVALID_PARAMETER,
            "a value in this request cannot be stored",
            operation=_OP_NAMES[type(op)],
        )
    log.error("write failed", operation=_OP_NAMES[type(op)], exc_info=exc)
    return TresenError(ErrorCode.INTERNAL, "internal error; try again")


_OP_NAMES: dict[type[_Op], str] = {
    _SendOp: "send",
    ResendOp: "resend",
    _AckOp: "ack",
    _ReadOp: "receipt",
    _PurgeOp: "purge",
}


def _is_bad_value(exc: BaseException) -> bool:
    # SQLAlchemy wraps driver errors (``orig``); drivers chain theirs (``__cause__``).
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, sqlalchemy.exc.DataError | OverflowError | UnicodeError):
            return True
        if type(current).__name__ in _DRIVER_DATA_ERRORS:
            return True
        orig = getattr(current, "orig", None)
        todo += [current.__cause__, current.__context__]
        if isinstance(orig, BaseException):
            todo.append(orig)
    return False


# asyncpg's names for a value PostgreSQL (or asyncpg's encoder) refuses; matched by name so that
# the SQLite-only installation need not import asyncpg.
_DRIVER_DATA_ERRORS = frozenset(
    {"DataError", "CharacterNotInRepertoireError", "UntranslatableCharacterError"}
)


def _template_number(ref: str | None) -> int | None:
    return int(ref) if ref is not None and ref.isdecimal() and len(ref) <= 18 else None


def _peer(actor: Principal) -> tuple[AccountId, int]:
    return actor.account_id, actor.device_id


class _SameAs(msgspec.Struct, frozen=True):
    """Placeholder result: answer like the operation at ``index`` of the same batch."""

    index: int

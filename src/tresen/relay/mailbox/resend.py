"""Resends: a message encrypted again for one device of its recipient.

A device that cannot decrypt a message asks its sender, end to end, to send it again; a device
of the sender's account encrypts it anew over a fresh session and hands it to the relay for
that one device. The relay stores it as one more copy of the same message: the same
``message_id``, class, template and ``server_ms`` (so the recipient sees it in its place), and
the first ack of any copy still counts as the message's delivery.

The original send passed the platform rules (window, tier, pair limits, templates) and was
priced; a resend is checked for who may send it and where it may go, not for those rules
again, and is never billed by itself. These functions plan and admit the resends of one group
commit (``MailboxService``); they write nothing themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.errors import ErrorCode, TresenError
from tresen.core.ids import DevicePk, MessageId
from tresen.core.settings import Limits
from tresen.relay.accounts.service import Principal
from tresen.relay.mailbox import repo
from tresen.relay.mailbox.repo import EntryKind, NewEntry, RecipientDevice, StoredMessage
from tresen.wire.relay import Resend

__all__ = [
    "AcceptedResend",
    "Admitted",
    "PlannedResend",
    "ResendOp",
    "admit_resends",
    "check_ciphertext",
    "plan_resends",
]


class ResendOp(msgspec.Struct, frozen=True):
    device: Principal
    frame: Resend


class AcceptedResend(msgspec.Struct, frozen=True):
    message_id: MessageId
    device_id: int
    resends: int
    """Resends of this message so far, this one included."""


class PlannedResend(msgspec.Struct, frozen=True):
    index: int
    op: ResendOp
    message: StoredMessage
    target: RecipientDevice


class Admitted(msgspec.Struct, frozen=True):
    """What admitting a batch's resends decided: entries to store, an answer per operation,
    and how many resends each message gained."""

    entries: list[NewEntry]
    results: dict[int, AcceptedResend | TresenError]
    counts: dict[MessageId, int]


def check_ciphertext(device_id: int, body: bytes, limits: Limits) -> None:
    """The bounds of one ciphertext, as for a send's ``per_device`` entries."""
    if len(body) > limits.max_ciphertext_bytes:
        raise TresenError(
            ErrorCode.FRAME_TOO_LARGE,
            "a ciphertext is larger than allowed",
            device_id=device_id,
            max_bytes=limits.max_ciphertext_bytes,
        )
    if not body:
        raise TresenError(ErrorCode.INVALID_PARAMETER, "empty ciphertext", device_id=device_id)


async def plan_resends(
    conn: AsyncConnection, ops: Sequence[tuple[int, ResendOp]], now_ms: int
) -> tuple[list[PlannedResend], dict[int, TresenError]]:
    """Find each resend's message and target device; what passes waits for the limit and
    queue checks of ``admit_resends``."""
    stored = await repo.messages_to_resend(conn, {MessageId(op.frame.message_id) for _, op in ops})
    live = {m: s for m, s in stored.items() if s.expires_ms > now_ms}
    checks = await repo.send_checks(
        conn,
        {op.device.account_id for _, op in ops},
        {s.message.recipient_account for s in live.values()},
    )
    suspended, recipients = checks.suspended, checks.devices
    planned: list[PlannedResend] = []
    errors: dict[int, TresenError] = {}
    for index, op in ops:
        message = live.get(MessageId(op.frame.message_id))
        try:
            if op.device.account_id in suspended:
                raise TresenError(
                    ErrorCode.ACCOUNT_RESTRICTED, "this business account is suspended"
                )
            # Someone else's message answers exactly like one that does not exist (or no longer
            # does): a resend reveals nothing about messages of other accounts.
            if message is None or message.message.sender_account != op.device.account_id:
                raise TresenError(
                    ErrorCode.UNKNOWN_MESSAGE,
                    "no such message (unknown, expired, or not sent by this account)",
                    message_id=op.frame.message_id,
                )
            current = recipients.get(message.message.recipient_account, [])
            target = _target(op, current)
        except TresenError as exc:
            errors[index] = exc
            continue
        planned.append(PlannedResend(index, op, message, target))
    return planned, errors


def _target(op: ResendOp, current: list[RecipientDevice]) -> RecipientDevice:
    frame = op.frame
    # As for a send: never the resending device itself (copies to one's own account).
    device = next(
        (d for d in current if d.device_id == frame.device_id and d.pk != op.device.device_pk),
        None,
    )
    if device is None:
        raise TresenError(
            ErrorCode.DEVICE_MISMATCH,
            "this device is not (or no longer) a recipient of the message",
            missing=[],
            extra=[frame.device_id],
            stale=[],
        )
    if frame.registration_id is not None and frame.registration_id != device.registration_id:
        raise TresenError(
            ErrorCode.DEVICE_MISMATCH,
            "the recipient device has new keys; fetch them and encrypt again",
            missing=[],
            extra=[],
            stale=[frame.device_id],
        )
    return device


def admit_resends(
    planned: Sequence[PlannedResend],
    queued: dict[DevicePk, int],
    limits: Limits,
    expires_ms: int,
) -> Admitted:
    """Store every planned resend its message's limit and its device's queue allow, in
    arrival order; ``queued`` (entries per device where this batch added some) is updated."""
    admitted = Admitted([], {}, {})
    cap = limits.max_queue_per_device
    for p in planned:
        frame, message = p.op.frame, p.message
        message_id = message.message.message_id
        so_far = message.resends + admitted.counts.get(message_id, 0)
        if so_far >= limits.max_resends_per_message:
            admitted.results[p.index] = TresenError(
                ErrorCode.RESEND_LIMIT_REACHED,
                "this message has been resent as often as allowed",
                message_id=message_id,
                max_resends=limits.max_resends_per_message,
            )
            continue
        if queued.get(p.target.pk, p.target.queued) >= cap:
            admitted.results[p.index] = TresenError(
                ErrorCode.QUEUE_FULL,
                "a recipient device has too many undelivered messages",
                device_id=p.target.device_id,
                max_queue=cap,
            )
            continue
        queued[p.target.pk] = queued.get(p.target.pk, p.target.queued) + 1
        admitted.counts[message_id] = admitted.counts.get(message_id, 0) + 1
        admitted.entries.append(
            NewEntry(
                device_pk=p.target.pk,
                kind=EntryKind.MESSAGE,
                message_id=message_id,
                peer_account=message.message.sender_account,
                peer_device=p.op.device.device_id,
                # What the message was accepted as, never what the resending device says.
                klass=message.message.klass,
                olm_type=frame.type,
                payload=frame.body,
                # The original time, so that the recipient shows it in its place.
                server_ms=message.message.server_ms,
                # Never beyond the message's own record: once that expires the sender is told
                # the message failed, and no copy may still arrive after that.
                expires_ms=min(expires_ms, message.expires_ms),
                template_id=message.template_id,
            )
        )
        admitted.results[p.index] = AcceptedResend(message_id, frame.device_id, so_far + 1)
    return admitted

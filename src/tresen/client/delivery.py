"""Delivery receipts: the evidence a business needs to check its bill (``docs/protocol.md``
§12.5).

As the recipient, a device signs a :class:`DeliveryReceipt` for every template message it
accepted and sends it to the business (class RECEIPT: it opens no service window). The
receipt is queued in the transaction that stores the message, so a receipt that cannot go
out now (the relay is away) waits in the store and goes out on the next connection.

As the sender, a device checks each receipt it receives (the signature with the recipient
device's pinned key; a message this account sent to that account) and raises a
:class:`DeliveryReceiptEvent`. Anything else is dropped, logged with its reason (never
content) and counted in :attr:`DeliveryReceipts.dropped`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from tresen.client.api import RelayError
from tresen.client.device import Device
from tresen.client.directory import Directory, IdentityNotTrusted
from tresen.client.events import DeliveryReceiptEvent
from tresen.client.queues import PendingReceipt, ReceiptOutbox
from tresen.client.sending import Sender, offline, transient
from tresen.client.store import LocalStore
from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.crypto.delivery import DeliveryFacts, ForgedReceipt, sign_delivery, verify_delivery
from tresen.wire import relay as wire
from tresen.wire.e2e import DeliveryReceipt, Template, decode_payload, encode_payload

__all__ = ["RECEIPT_ID_PREFIX", "DeliveryReceipts"]

log = get_logger("tresen.client")

RECEIPT_ID_PREFIX = "receipt-"
"""Client message id of a receipt: this prefix and the message's id, so that a receipt sent
again (after a crash) is the relay's duplicate, never a second receipt."""
SEND_BATCH = 500


class DeliveryReceipts:
    def __init__(
        self,
        store: LocalStore,
        clock: Clock,
        device: Device,
        directory: Directory,
        sender: Sender,
        outbox: ReceiptOutbox,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.store = store
        self.clock = clock
        self.device = device
        self.directory = directory
        self.sender = sender
        self.outbox = outbox
        self._spawn = spawn
        self._running = False
        self._wanted = False
        self.dropped: Counter[str] = Counter()
        """Receipts received and dropped, by reason."""

    # --- as the recipient of a template message ----------------------------------------------

    def accepted(self, frame: wire.MessageFrame, payload: Template) -> None:
        """Sign and queue the receipt of the template message in ``frame`` (call inside the
        transaction that stores the message; :meth:`send_soon` after it)."""
        account_id = self.device.require_account()
        device_id = self.device.require_device_id()
        facts = DeliveryFacts(
            message_id=frame.message_id,
            business=frame.sender,
            customer=account_id,
            device_id=device_id,
            template_id=payload.template_id,
            delivered_ms=self.clock.now_ms(),
        )
        signature = sign_delivery(self.device.require_identity(), facts)
        self.outbox.queue(
            PendingReceipt(
                frame.message_id, frame.sender, facts.template_id, facts.delivered_ms, signature
            )
        )

    def send_soon(self) -> None:
        """Send what waits, in a task of its own (receiving does not wait for it)."""
        self._wanted = True
        if not self._running:
            self._running = True
            self._spawn(self._send_while_wanted())

    async def _send_while_wanted(self) -> None:
        try:
            while self._wanted:
                self._wanted = False
                await self.send_waiting()
        finally:
            self._running = False

    async def send_waiting(self) -> int:
        """Send the receipts that wait, oldest first, until none is left or the relay cannot
        be reached; returns how many went out. A receipt the relay refuses for good (the
        business is blocked, or gone) is given up."""
        sent = 0
        held: set[str] = set()  # businesses whose new keys wait for the user
        while True:
            progress = False
            for receipt in self.outbox.waiting(SEND_BATCH):
                if receipt.business in held:
                    continue
                try:
                    await self._send(receipt)
                except IdentityNotTrusted:
                    held.add(receipt.business)
                    continue
                except RelayError as exc:
                    if transient(exc):
                        return sent
                    log.info(
                        "delivery receipt given up",
                        message_id=receipt.message_id,
                        code=int(exc.code),
                    )
                except Exception as exc:
                    if not offline(exc):
                        log.exception("delivery receipt not sent", message_id=receipt.message_id)
                    return sent
                else:
                    sent += 1
                self.outbox.done(receipt.message_id)
                progress = True
            if not progress:
                return sent

    async def _send(self, receipt: PendingReceipt) -> None:
        payload = DeliveryReceipt(
            message_id=receipt.message_id,
            template_id=receipt.template_id,
            delivered_ms=receipt.delivered_ms,
            signature=receipt.signature,
        )
        await self.sender.deliver(
            receipt.business,
            encode_payload(payload),
            RECEIPT_ID_PREFIX + receipt.message_id,
            wire.MessageClass.RECEIPT,
        )

    # --- as the sender of a template message -------------------------------------------------

    async def check(
        self, frame: wire.MessageFrame, receipt: DeliveryReceipt
    ) -> DeliveryReceiptEvent | None:
        """The event of a received receipt once checked, or ``None`` (dropped: logged with
        the reason, counted)."""
        reason = self._mismatch(frame, receipt)
        if reason == "not_our_message":
            # The relay's answer to the send may have been read just before this receipt,
            # with the message not kept yet: once every answer read is taken, look again.
            await self.sender.connection.answers_taken()
            reason = self._mismatch(frame, receipt)
        if reason is not None:
            self._drop(frame, reason)
            return None
        device = await self.directory.device(frame.sender, frame.sender_device)
        if device is None:
            self._drop(frame, "unknown_device")
            return None
        facts = DeliveryFacts(
            message_id=receipt.message_id,
            business=self.device.require_account(),
            customer=frame.sender,
            device_id=frame.sender_device,
            template_id=receipt.template_id,
            delivered_ms=receipt.delivered_ms,
        )
        try:
            verify_delivery(facts, receipt.signature, device.ed25519)
        except ForgedReceipt:
            self._drop(frame, "bad_signature")
            return None
        return DeliveryReceiptEvent(
            message_id=receipt.message_id,
            customer=frame.sender,
            device_id=frame.sender_device,
            device_ed25519=device.ed25519,
            template_id=receipt.template_id,
            delivered_ms=receipt.delivered_ms,
            signature=receipt.signature,
            receipt_id=frame.message_id,
        )

    def _mismatch(self, frame: wire.MessageFrame, receipt: DeliveryReceipt) -> str | None:
        """Why the receipt cannot be for a template message this account sent the sender."""
        if frame.klass is not wire.MessageClass.RECEIPT:
            return "not_sent_as_receipt"
        sent = self.store.message(receipt.message_id)
        if sent is None or not sent.outgoing or sent.chat != frame.sender:
            return "not_our_message"
        if sent.payload is None:
            return None  # cleared after a while: the bill's line names the template as well
        try:
            payload = decode_payload(sent.payload)
        except ValueError:
            return "not_a_template_message"
        if not isinstance(payload, Template):
            return "not_a_template_message"
        if payload.template_id != receipt.template_id:
            return "other_template"
        return None

    def _drop(self, frame: wire.MessageFrame, reason: str) -> None:
        self.dropped[reason] += 1
        log.warning(
            "delivery receipt dropped",
            receipt_id=frame.message_id,
            sender=frame.sender,
            sender_device=frame.sender_device,
            reason=reason,
        )

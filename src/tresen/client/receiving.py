"""Receiving: decrypt, check, store and announce what arrives; follow what was sent.

``Receiver`` handles each message the relay hands this device: decrypts it, refuses what
breaks the rules (a template that does not match its signed original, a chat message sent
as a system message), stores it together with the new session state, and reports it as an
event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from tresen.client.api import RelayApi, RelayError
from tresen.client.delivery import DeliveryReceipts
from tresen.client.device import Device
from tresen.client.directory import Directory
from tresen.client.events import (
    DataRequested,
    DecryptionFailed,
    DeliveryReceiptEvent,
    Event,
    MessageEvent,
    TypingStarted,
)
from tresen.client.healing import Healing
from tresen.client.reports import Reports
from tresen.client.sessions import Sessions
from tresen.client.store import LocalStore, MessageStatus, StoredMessage
from tresen.client.templates import REPORT_REASON, TemplateBook, TemplateRejected
from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.crypto import CryptoError
from tresen.crypto.olm import Ciphertext
from tresen.wire import relay as wire
from tresen.wire.e2e import (
    TYPING_MS,
    DataExport,
    DataRequest,
    DeliveryReceipt,
    Payload,
    ReadReceipt,
    RetryRefused,
    RetryRequest,
    SentTranscript,
    Template,
    Typing,
    Unsupported,
    decode_payload,
    encode_payload,
)
from tresen.wire.templates import RenderedTemplate

__all__ = ["Receiver"]

log = get_logger("tresen.client")

# Reason of the report a message sent under the wrong class earns its sender (the relay's
# reasons are fixed; the detail names the mismatch).
CLASS_REPORT_REASON = "other"
_CHECKED_CLASSES = frozenset({wire.MessageClass.SYSTEM, wire.MessageClass.RECEIPT})


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Why a received message is not shown, and the report it earns its sender (``None``:
    nobody's fault)."""

    kind: str
    reason: str
    report: str | None

    @property
    def text(self) -> str:
        return f"{self.kind}: {self.reason}"


class ExportAnswered(Protocol):
    """Told of a business's :class:`DataExport` answer (``client/personal_data.py``)."""

    def __call__(self, sender: str, message_id: str, answer: DataExport, /) -> None: ...


class Receiver:
    def __init__(
        self,
        api: RelayApi,
        store: LocalStore,
        clock: Clock,
        device: Device,
        directory: Directory,
        sessions: Sessions,
        templates: TemplateBook,
        reports: Reports,
        healing: Healing,
        emit: Callable[[Event], None],
        relay_offset_ms: Callable[[], int],
        *,
        on_export: ExportAnswered,
        receipts: DeliveryReceipts,
        repeat: bool = False,
    ) -> None:
        self.api = api
        self.store = store
        self.clock = clock
        self.device = device
        self.directory = directory
        self.sessions = sessions
        self.templates = templates
        self.reports = reports
        self.healing = healing
        self.emit = emit
        self._relay_offset_ms = relay_offset_ms
        self._on_export = on_export
        self.receipts = receipts
        # With confirmed events the relay hands a message over again when the application
        # had not confirmed its event: it is raised again from what was stored.
        self._repeat = repeat

    async def on_message(self, frame: wire.MessageFrame) -> bool:
        """Handle one message; False if it could not be decrypted."""
        waited = self.healing.waiting(frame.message_id)
        if not waited and self.store.has_message(frame.message_id):
            if self._repeat:
                await self._again(frame)
            return True  # a redelivery: already stored, only the ack was lost
        own = frame.sender == self.device.account_id
        if not own and self.store.peer_phone(frame.sender) is None:
            # A first message from someone: learn the number and whether it is a business,
            # so that the chat is labelled from its first line.
            await self.directory.phone_of(frame.sender)
        try:
            device = None
            if frame.type == 0:
                device = await self.directory.device(frame.sender, frame.sender_device)
            decrypted = self.sessions.decrypt(
                frame.sender, frame.sender_device, Ciphertext(frame.type, frame.body), device
            )
        except CryptoError as exc:
            reason = str(exc) or type(exc).__name__
            with self.store.transaction():
                if frame.klass is wire.MessageClass.SYSTEM:
                    # A typing indicator or a retry request: nothing anyone could send again
                    # or show; the next chat message over the same session asks for a new one.
                    self._record(frame, MessageStatus.FAILED, chat="", error=reason)
                else:
                    self.healing.unreadable(frame, reason)
            return False
        if not decrypted.new:
            self.healing.read(frame.sender, frame.sender_device)
        plaintext = decrypted.plaintext
        refusal = self._class_verdict(frame, plaintext)
        template = None if refusal is not None else await self._template_verdict(frame, plaintext)
        if isinstance(template, TemplateRejected):
            report = REPORT_REASON if template.report else None
            refusal = _Refusal(template.kind, template.reason, report)
        receipt = None if refusal is not None else await self._receipt_verdict(frame, plaintext)
        # The new session state, the used-up one-time key and the message land together: a
        # crash before the ack then redelivers a message we already hold, never one whose
        # keys are gone.
        asked: RetryRequest | RetryRefused | None = None
        with self.store.transaction():
            self.sessions.save(frame.sender, frame.sender_device, decrypted.session)
            if decrypted.new:
                self.device.save_identity()
            if waited:
                self.store.forget_message(frame.message_id)  # it came after all
            try:
                payload = decode_payload(plaintext)
            except ValueError as exc:
                self._reject(frame, f"undecodable payload: {exc}")
                return True
            if refusal is not None:
                self._record(frame, MessageStatus.FAILED, error=refusal.text)
            elif isinstance(template, RenderedTemplate) and isinstance(payload, Template):
                self._accept_template(frame, payload, template)
            elif isinstance(payload, DeliveryReceipt):
                # Evidence for the bill, not a chat message: kept (so that its event can be
                # raised again) and handed to the application once checked.
                self._record(frame, MessageStatus.SEEN, chat="", payload=plaintext)
                if receipt is not None:
                    self.emit(receipt)
            elif isinstance(payload, Typing) or (
                frame.klass is wire.MessageClass.SYSTEM and isinstance(payload, Unsupported)
            ):
                # Nothing to show in the chat; kept only as handled (a redelivery is not
                # decrypted again).
                self._record(frame, MessageStatus.SEEN, chat="")
                if isinstance(payload, Typing) and not own:
                    self._typing(frame, payload)
            elif isinstance(payload, RetryRequest | RetryRefused):
                self._record(frame, MessageStatus.SEEN, chat="")
                asked = payload
            elif isinstance(payload, DataRequest | DataExport):
                # Not chat messages: the request goes to the application (a business's
                # gateway answers it), the answer to whoever waits for it; neither is kept.
                self._record(frame, MessageStatus.SEEN, chat="")
                if own:
                    pass
                elif isinstance(payload, DataRequest):
                    self.emit(DataRequested(frame.sender, frame.message_id, payload.request_id))
                else:
                    self._on_export(frame.sender, frame.message_id, payload)
            else:
                self._accept(frame, payload, plaintext)
        if refusal is not None:
            await self._refuse(frame, refusal)
        if isinstance(template, RenderedTemplate) and frame.klass is wire.MessageClass.TEMPLATE:
            self.receipts.send_soon()
        if isinstance(asked, RetryRequest):
            self.healing.asked(frame.sender, frame.sender_device, asked)
        elif isinstance(asked, RetryRefused):
            self.healing.refused(frame.sender, frame.sender_device, asked)
        return True

    async def _again(self, frame: wire.MessageFrame) -> None:
        """Raise again the event of a message handed over again: a customer's message, or
        another device's transcript (what is stored of it; nothing for the rest)."""
        stored = self.store.message(frame.message_id)
        if stored is None or stored.payload is None or stored.outgoing:
            return
        try:
            payload = decode_payload(stored.payload)
            if isinstance(payload, DeliveryReceipt):
                event = await self._receipt_verdict(frame, stored.payload)
                if event is not None:
                    self.emit(event)
                return
            if frame.sender == self.device.account_id:
                if isinstance(payload, SentTranscript):
                    self._show_transcript(frame, payload)
                return
        except ValueError:
            return
        if stored.status not in (MessageStatus.RECEIVED, MessageStatus.SEEN) or not stored.chat:
            return
        template = await self._template_verdict(frame, stored.payload)
        self._show(frame, payload, template if isinstance(template, RenderedTemplate) else None)

    def _class_verdict(self, frame: wire.MessageFrame, plaintext: bytes) -> _Refusal | None:
        """A message of class SYSTEM from another account must be a typing indicator (or a
        retry request): the relay lets those through without rate tokens or a price, so
        anything else sent under that class would slip past the rules (a newer client's
        system payload that this one does not know is left unshown, unreported). A message
        of class RECEIPT must be a delivery receipt: that class opens no service window."""
        if frame.sender == self.device.account_id or frame.klass not in _CHECKED_CLASSES:
            return None
        try:
            payload = decode_payload(plaintext)
        except ValueError:
            return None  # refused as undecodable with the rest
        if isinstance(payload, Unsupported):
            return None
        if frame.klass is wire.MessageClass.RECEIPT:
            if isinstance(payload, DeliveryReceipt):
                return None
            return _Refusal(
                "class_mismatch",
                f"a message of class receipt carries a {payload.__struct_config__.tag} "
                "payload, not a delivery receipt",
                CLASS_REPORT_REASON,
            )
        if isinstance(payload, Typing | RetryRequest | RetryRefused):
            return None
        tag = payload.__struct_config__.tag
        return _Refusal(
            "class_mismatch",
            f"a message of class system carries a {tag} payload, not a typing indicator "
            "or a retry request",
            CLASS_REPORT_REASON,
        )

    async def _receipt_verdict(
        self, frame: wire.MessageFrame, plaintext: bytes
    ) -> DeliveryReceiptEvent | None:
        """For a delivery receipt from a peer: its event once checked (``None``: not a
        receipt, or dropped)."""
        if frame.sender == self.device.account_id:
            return None
        try:
            payload = decode_payload(plaintext)
        except ValueError:
            return None
        if not isinstance(payload, DeliveryReceipt):
            return None
        return await self.receipts.check(frame, payload)

    def _typing(self, frame: wire.MessageFrame, payload: Typing) -> None:
        # Shown for what is left of its 25 s by the relay's clock (an indicator drained
        # from the backlog long after is not shown at all).
        now = self.clock.now_ms()
        age = max(0, now + self._relay_offset_ms() - frame.server_ms)
        if age < TYPING_MS:
            self.emit(TypingStarted(frame.sender, payload.message_id, now + TYPING_MS - age))

    async def _template_verdict(
        self, frame: wire.MessageFrame, plaintext: bytes
    ) -> RenderedTemplate | TemplateRejected | None:
        """For a template message from a peer (class TEMPLATE, or a ``Template`` payload):
        its rendering of the verified template, or why it is rejected; else ``None``."""
        if frame.sender == self.device.account_id:
            return None  # transcripts and receipts of our own devices
        try:
            payload = decode_payload(plaintext)
        except ValueError:
            return None  # refused as undecodable with the rest
        if frame.klass is not wire.MessageClass.TEMPLATE and not isinstance(payload, Template):
            return None
        try:
            # ``template_ref``: the template the relay accepted (and bills) the send as.
            return await self.templates.check(
                payload, sender=frame.sender, klass=frame.klass, template_ref=frame.template_ref
            )
        except TemplateRejected as exc:
            return exc

    def _accept_template(
        self, frame: wire.MessageFrame, payload: Template, rendered: RenderedTemplate
    ) -> None:
        # Kept: the payload's known fields (re-encoded, so nothing else the sender put in
        # survives) and, for the application, the signed template's rendering.
        self._record(frame, MessageStatus.RECEIVED, payload=encode_payload(payload))
        if frame.klass is wire.MessageClass.TEMPLATE:
            self.receipts.accepted(frame, payload)
        self._show(frame, payload, rendered)

    async def _refuse(self, frame: wire.MessageFrame, refusal: _Refusal) -> None:
        """Report a mismatch to the operator, then tell the application (``DecryptionFailed``
        with the reason); the rejection stands whether the report goes through or not."""
        log.warning(
            "message refused",
            message_id=frame.message_id,
            sender=frame.sender,
            reason=refusal.text,
        )
        if refusal.report is not None:
            # The report's reason names a template mismatch itself; others say it in detail.
            detail = refusal.reason if refusal.report == refusal.kind else refusal.text
            try:
                await self.api.report(frame.sender, refusal.report, frame.message_id, detail[:512])
            except (RelayError, httpx.HTTPError) as exc:
                log.warning("report failed", message_id=frame.message_id, error=str(exc))
        self.emit(
            DecryptionFailed(frame.message_id, frame.sender, frame.sender_device, refusal.text)
        )

    def _record(
        self,
        frame: wire.MessageFrame,
        status: MessageStatus,
        *,
        chat: str | None = None,
        payload: bytes | None = None,
        error: str | None = None,
    ) -> None:
        """Store what arrived in ``frame``; its message id then never gets processed again."""
        self.store.put_message(
            StoredMessage(
                message_id=frame.message_id,
                chat=frame.sender if chat is None else chat,
                outgoing=False,
                sender_account=frame.sender,
                sender_device=frame.sender_device,
                client_msg_id=None,
                payload=payload,
                status=status,
                server_ms=frame.server_ms,
                error=error,
            )
        )

    def _reject(self, frame: wire.MessageFrame, reason: str) -> None:
        log.warning(
            "message rejected",
            message_id=frame.message_id,
            sender=frame.sender,
            sender_device=frame.sender_device,
            reason=reason,
        )
        self._record(frame, MessageStatus.FAILED, error=reason)
        self.emit(DecryptionFailed(frame.message_id, frame.sender, frame.sender_device, reason))

    def _accept(self, frame: wire.MessageFrame, payload: Payload | Unsupported, raw: bytes) -> None:
        own = frame.sender == self.device.account_id
        if own and isinstance(payload, SentTranscript):
            self.store.put_message(
                StoredMessage(
                    message_id=payload.message_id,
                    chat=payload.to,
                    outgoing=True,
                    sender_account=frame.sender,
                    sender_device=frame.sender_device,
                    client_msg_id=payload.client_msg_id,
                    payload=payload.payload,
                    status=MessageStatus.SENT,
                    server_ms=payload.server_ms,
                    error=None,
                )
            )
            # The relay message that carried the transcript is done with, too (kept, so
            # that its event can be raised again).
            self._record(frame, MessageStatus.SEEN, chat="", payload=raw)
            self._show_transcript(frame, payload)
            self.reports.apply_early(payload.message_id)
            return
        if own and isinstance(payload, ReadReceipt):
            self.store.mark_seen(list(payload.message_ids))
            self._record(frame, MessageStatus.SEEN, chat="")
            return
        self._record(frame, MessageStatus.RECEIVED, payload=raw)
        self._show(frame, payload)

    def _show_transcript(self, frame: wire.MessageFrame, payload: SentTranscript) -> None:
        """Tell the application of a message another device of this account sent."""
        self.emit(
            MessageEvent(
                payload.message_id,
                payload.to,
                True,
                frame.sender,
                frame.sender_device,
                decode_payload(payload.payload),
                payload.server_ms,
            )
        )

    def _show(
        self,
        frame: wire.MessageFrame,
        payload: Payload | Unsupported,
        rendered: RenderedTemplate | None = None,
    ) -> None:
        """Tell the application of a message received in ``frame``'s chat."""
        self.emit(
            MessageEvent(
                frame.message_id,
                frame.sender,
                False,
                frame.sender,
                frame.sender_device,
                payload,
                frame.server_ms,
                template=rendered,
            )
        )

"""Sending: encrypt once per recipient device, hand to the relay, keep what was sent.

Every message is stored here as sent, and a transcript goes to this account's other devices
so that each of them shows the conversation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tresen.client.api import RelayApi, RelayError
from tresen.client.connection import Connection, NotConnected
from tresen.client.device import Device
from tresen.client.directory import Directory, IdentityNotTrusted
from tresen.client.events import ConsentChanged, Event, PendingSent, StatusChanged
from tresen.client.queues import Outbox
from tresen.client.reports import Reports
from tresen.client.sessions import Sessions
from tresen.client.store import LocalStore, MessageStatus, StoredMessage, Trust
from tresen.client.templates import TemplateBook, TemplateRejected, TemplateUnavailable
from tresen.core.clock import Clock
from tresen.core.errors import ErrorCode
from tresen.core.logging import get_logger
from tresen.wire import relay as wire
from tresen.wire.e2e import (
    Media,
    Payload,
    ReadReceipt,
    SentTranscript,
    Template,
    Typing,
    encode_payload,
)
from tresen.wire.templates import (
    ParameterMismatch,
    Parameters,
    header_takes_file,
    parameters_from_cloud_components,
    plain_parameters,
    quick_reply_payloads,
    render,
)

__all__ = ["LOCAL_ID_PREFIX", "RECEIPT_CHUNK", "Sender", "SentMessage", "offline"]

log = get_logger("tresen.client")

RECEIPT_CHUNK = 256
LOCAL_ID_PREFIX = "local-"
"""Of the id a message has while it waits in the outbox (the relay names it when it takes it)."""


@dataclass(frozen=True, slots=True)
class SentMessage:
    message_id: str
    client_msg_id: str
    chat: str
    server_ms: int
    duplicate: bool
    consent: ConsentChanged | None = None
    """Set when the text was a STOP or START keyword to a business (see ``send_text``)."""
    pricing: wire.PricingFacts | None = None
    """A business's message to a customer: how the relay prices it, as it accepted it."""
    pending: bool = False
    """The relay could not be reached: the message waits in the outbox under this
    ``message_id`` (a local id) and goes out when it can (``PendingSent``)."""


class Sender:
    def __init__(
        self,
        api: RelayApi,
        store: LocalStore,
        device: Device,
        directory: Directory,
        sessions: Sessions,
        connection: Connection,
        reports: Reports,
        templates: TemplateBook,
        outbox: Outbox,
        clock: Clock,
        emit: Callable[[Event], None],
        *,
        offline_outbox: bool = True,
    ) -> None:
        self.api = api
        self.store = store
        self.device = device
        self.directory = directory
        self.sessions = sessions
        self.connection = connection
        self.reports = reports
        self.templates = templates
        self.outbox = outbox
        self.clock = clock
        self.emit = emit
        self.offline_outbox = offline_outbox
        self.after_flush: Callable[[SentMessage, bytes], Awaitable[object]] | None = None
        """Called for each message the outbox sent (the client applies STOP/START then)."""
        self._peer_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._flushing = asyncio.Lock()

    async def chat_with(self, to: str) -> str:
        """The account id of ``to``, which must be someone else and trusted."""
        account_id = await self.directory.resolve(to)
        if account_id == self.device.account_id:
            raise RelayError(
                ErrorCode.RECIPIENT_IS_SENDER, "a chat needs someone else on the other side"
            )
        trust = self.store.trust(account_id)
        if trust is not Trust.TRUSTED:
            raise IdentityNotTrusted(account_id, trust)
        return account_id

    async def send(
        self,
        to: str,
        payload: Payload,
        *,
        klass: wire.MessageClass = wire.MessageClass.SESSION,
        template_ref: str | None = None,
        client_msg_id: str | None = None,
    ) -> SentMessage:
        self.device.require_identity()
        if isinstance(payload, Typing | SentTranscript | ReadReceipt):
            raise ValueError(f"a {payload.__struct_config__.tag} payload is not a chat message")
        account_id = await self.chat_with(to)
        inner = encode_payload(payload)
        if client_msg_id is None:
            client_msg_id = secrets.token_hex(16)
        elif not 1 <= len(client_msg_id) <= 64:
            raise ValueError("a client message id has 1 to 64 characters")
        if self.offline_outbox and self.outbox.queued(account_id):
            # Behind what waits already: in order, after it.
            local_id = self._queue(account_id, inner, client_msg_id, klass, template_ref)
            return (await self.flush()).get(local_id) or self._pending(local_id)
        try:
            accepted = await self.deliver(account_id, inner, client_msg_id, klass, template_ref)
        except Exception as exc:
            if not (self.offline_outbox and offline(exc)):
                raise
            log.info("relay unreachable; message kept in the outbox", error=type(exc).__name__)
            return self._pending(self._queue(account_id, inner, client_msg_id, klass, template_ref))
        assert accepted is not None
        return await self.sent(account_id, inner, client_msg_id, accepted)

    # --- the outbox ---------------------------------------------------------------------------

    def _queue(
        self,
        account_id: str,
        inner: bytes,
        client_msg_id: str,
        klass: wire.MessageClass,
        template_ref: str | None,
    ) -> str:
        local_id = LOCAL_ID_PREFIX + client_msg_id
        message = StoredMessage(
            message_id=local_id,
            chat=account_id,
            outgoing=True,
            sender_account=self.device.require_account(),
            sender_device=self.device.require_device_id(),
            client_msg_id=client_msg_id,
            payload=inner,
            status=MessageStatus.PENDING,
            server_ms=self.clock.now_ms(),
            error=None,
        )
        self.outbox.queue(message, int(klass), template_ref)
        return local_id

    def _pending(self, local_id: str) -> SentMessage:
        stored = self.store.message(local_id)
        assert stored is not None
        assert stored.client_msg_id is not None
        return SentMessage(
            local_id, stored.client_msg_id, stored.chat, stored.server_ms, False, pending=True
        )

    async def flush(self) -> dict[str, SentMessage]:
        """Send what waits in the outbox, oldest first, each with its own client message id
        (the relay takes a send it already holds as a duplicate, never twice). Stops at the
        first message the relay cannot be reached for; a message the relay refuses is marked
        failed with its reason. Returns what went out, by local id."""
        done: dict[str, SentMessage] = {}
        async with self._flushing:
            held: set[str] = set()  # chats waiting for the user to trust new keys
            for queued in self.outbox.queued():
                if queued.chat in held:
                    continue
                stored = self.store.message(queued.local_id)
                if stored is None or stored.payload is None or stored.client_msg_id is None:
                    self.outbox.unqueue(queued.local_id)
                    continue
                try:
                    accepted = await self.deliver(
                        queued.chat,
                        stored.payload,
                        stored.client_msg_id,
                        wire.MessageClass(queued.klass),
                        queued.template_ref,
                    )
                except IdentityNotTrusted:
                    held.add(queued.chat)
                    continue
                except RelayError as exc:
                    if transient(exc):
                        break  # tried again at the next connection
                    self._refused(queued.local_id, stored, exc)
                    continue
                except Exception as exc:
                    if offline(exc):
                        break
                    raise
                assert accepted is not None
                if not self.outbox.unqueue(queued.local_id):
                    continue  # deleted by the user meanwhile (the relay takes it anyway)
                sent = await self.sent(queued.chat, stored.payload, stored.client_msg_id, accepted)
                self.emit(PendingSent(queued.local_id, sent.message_id, sent.chat, sent.server_ms))
                done[queued.local_id] = sent
                if self.after_flush is not None:
                    await self.after_flush(sent, stored.payload)
        return done

    def _refused(self, local_id: str, stored: StoredMessage, exc: RelayError) -> None:
        failed = dataclasses.replace(stored, status=MessageStatus.FAILED, error=exc.message)
        if self.outbox.unqueue(local_id, keep_as=failed):
            self.emit(
                StatusChanged(
                    local_id,
                    stored.chat,
                    MessageStatus.FAILED,
                    server_ms=stored.server_ms,
                    error_code=int(exc.code),
                    error=exc.message,
                )
            )

    async def delete_pending(self, local_id: str) -> bool:
        """Delete a message that waits in the outbox (it is then never sent); False if it is
        not waiting there (any more)."""
        async with self._flushing:
            return self.outbox.unqueue(local_id)

    async def sent(
        self, account_id: str, inner: bytes, client_msg_id: str, accepted: wire.Accepted
    ) -> SentMessage:
        """Keep a message the relay accepted, and tell this account's other devices."""
        self.store.put_message(
            StoredMessage(
                message_id=accepted.message_id,
                chat=account_id,
                outgoing=True,
                sender_account=self.device.require_account(),
                sender_device=self.device.require_device_id(),
                client_msg_id=client_msg_id,
                payload=inner,
                status=MessageStatus.SENT,
                server_ms=accepted.server_ms,
                error=None,
            )
        )
        self.reports.apply_early(accepted.message_id)
        transcript = SentTranscript(
            to=account_id,
            message_id=accepted.message_id,
            client_msg_id=client_msg_id,
            server_ms=accepted.server_ms,
            payload=inner,
        )
        await self.deliver_system(self.device.require_account(), encode_payload(transcript))
        return SentMessage(
            accepted.message_id,
            client_msg_id,
            account_id,
            accepted.server_ms,
            accepted.duplicate,
            pricing=accepted.pricing,
        )

    async def deliver_system(self, account_id: str, plaintext: bytes) -> wire.Accepted | None:
        """Send a system message (a transcript, a receipt, a typing indicator, a retry
        request): no rate tokens, no price, nothing stored."""
        return await self.deliver(
            account_id, plaintext, secrets.token_hex(16), wire.MessageClass.SYSTEM
        )

    async def deliver(
        self,
        account_id: str,
        plaintext: bytes,
        client_msg_id: str,
        klass: wire.MessageClass,
        template_ref: str | None = None,
    ) -> wire.Accepted | None:
        """Encrypt for each device and send; one retry after the device list changed."""
        own = account_id == self.device.account_id
        for attempt in range(2):
            async with self._peer_locks[account_id]:
                devices = await self.directory.devices_of(account_id, refresh=attempt > 0)
                trust = self.store.trust(account_id)
                if not own and trust is not Trust.TRUSTED:
                    raise IdentityNotTrusted(account_id, trust)
                if not devices:
                    if own:
                        return None  # no other devices of our own to keep in sync
                    raise RelayError(ErrorCode.UNDELIVERABLE, "the recipient has no devices", {})
                await self.sessions.ensure(account_id, devices)
                copies = []
                for device in devices:
                    ciphertext = self.sessions.encrypt(account_id, device.device_id, plaintext)
                    if ciphertext is None:
                        continue  # no key could be claimed; the relay names it as missing
                    copies.append(
                        wire.DeviceCiphertext(
                            device_id=device.device_id,
                            type=ciphertext.type,
                            body=ciphertext.body,
                            registration_id=device.registration_id,
                        )
                    )
            frame = wire.Send(
                client_msg_id=client_msg_id,
                to=account_id,
                klass=klass,
                template_ref=template_ref,
                per_device=copies,
            )
            try:
                return await self.submit(frame)
            except RelayError as exc:
                if exc.code != ErrorCode.DEVICE_MISMATCH or attempt:
                    raise
                for device_id in [*exc.details.get("extra", []), *exc.details.get("stale", [])]:
                    self.sessions.forget(account_id, device_id)
        raise AssertionError("unreachable")

    async def submit(self, frame: wire.Send) -> wire.Accepted:
        """Send over the live connection when there is one, else over HTTP.

        Both are idempotent on the client message id, so a send that was cut off can be
        repeated over the other path without being stored twice.
        """
        try:
            answer = await self.connection.request(frame)
        except NotConnected:
            pass  # over HTTP with the same client message id
        else:
            assert isinstance(answer, wire.Accepted)
            return answer
        body: dict[str, Any] = {
            "client_msg_id": frame.client_msg_id,
            "to": frame.to,
            "class": frame.klass.name.lower(),
            "template_ref": frame.template_ref,
            "per_device": [
                {
                    "device_id": c.device_id,
                    "type": c.type,
                    "body": c.body,
                    "registration_id": c.registration_id,
                }
                for c in frame.per_device
            ],
        }
        result = await self.api.send(body)
        return wire.Accepted(
            client_msg_id=result["client_msg_id"],
            message_id=result["message_id"],
            server_ms=result["server_ms"],
            duplicate=result["duplicate"],
        )

    async def typing(self, to: str, message_id: str) -> None:
        self.device.require_identity()
        account_id = await self.directory.resolve(to)
        if account_id == self.device.account_id:
            raise RelayError(
                ErrorCode.RECIPIENT_IS_SENDER, "a chat needs someone else on the other side"
            )
        await self.deliver_system(account_id, encode_payload(Typing(message_id=message_id)))

    async def send_template(
        self,
        to: str,
        template_id: int | str,
        language: str,
        parameters: Parameters | None = None,
        components: list[dict[str, Any]] | None = None,
        header_media: Media | None = None,
        client_msg_id: str | None = None,
    ) -> SentMessage:
        self.device.require_identity()
        if components is not None:
            try:
                parameters = parameters_from_cloud_components(components)
            except ValueError as exc:
                raise RelayError(ErrorCode.TEMPLATE_PARAMS_MISMATCH, str(exc)) from None
        try:
            template = await self.templates.template(int(template_id))
        except TemplateUnavailable:
            raise
        except TemplateRejected as exc:
            raise RelayError(
                ErrorCode.TEMPLATE_NOT_FOUND, exc.reason, {"template_id": str(template_id)}
            ) from None
        if template.business_account != self.device.account_id or template.language != language:
            raise RelayError(
                ErrorCode.TEMPLATE_NOT_FOUND,
                f"template {template_id} is not this business's template in {language}",
                {"template_id": str(template_id)},
            )
        given = plain_parameters(parameters or {})
        try:
            render(template, given)
        except ParameterMismatch as exc:
            raise RelayError(
                ErrorCode.TEMPLATE_PARAMS_MISMATCH,
                "the parameters do not fit the template",
                {"problems": [p.to_dict() for p in exc.problems]},
            ) from None
        if header_media is not None and not header_takes_file(template, header_media.kind):
            raise RelayError(
                ErrorCode.TEMPLATE_PARAMS_MISMATCH,
                "the parameters do not fit the template",
                {
                    "problems": [
                        {
                            "field": "header",
                            "problem": f"this template's header takes no {header_media.kind}",
                        }
                    ]
                },
            )
        rest, button_payloads = quick_reply_payloads(template, given)
        payload = Template(
            template_id=str(template.id),
            name=template.name,
            language=template.language,
            parameters=plain_parameters(rest),
            button_payloads=button_payloads,
            header_media=header_media,
        )
        return await self.send(
            to,
            payload,
            klass=wire.MessageClass.TEMPLATE,
            template_ref=str(template.id),
            client_msg_id=client_msg_id,
        )

    async def mark_read(self, chat: str, message_ids: list[str] | None = None) -> int:
        account_id = await self.directory.resolve(chat)
        if message_ids is None:
            message_ids = [
                m.message_id
                for m in self.store.messages(account_id)
                if not m.outgoing and m.status is MessageStatus.RECEIVED
            ]
        unseen = self.store.unseen(message_ids)
        for start in range(0, len(unseen), RECEIPT_CHUNK):
            chunk = unseen[start : start + RECEIPT_CHUNK]
            await self.api.receipts(chunk)
            await self.deliver_system(
                self.device.require_account(), encode_payload(ReadReceipt(message_ids=chunk))
            )
            # Only now: a receipt that failed to go out is sent again next time.
            self.store.mark_seen(chunk)
        return len(unseen)


def transient(exc: RelayError) -> bool:
    """A refusal that passes by itself (the relay is busy, or failed inside)."""
    return exc.code in _TRANSIENT or (exc.code >= 500 and exc.code < 600)


_TRANSIENT = {ErrorCode.THROUGHPUT_REACHED, ErrorCode.INTERNAL}


def offline(exc: BaseException) -> bool:
    """Whether ``exc`` means the relay could not be reached (rather than that it refused)."""
    return isinstance(exc, httpx.TransportError | NotConnected | OSError)

"""Sessions that heal: a message one device could not decrypt is asked for and sent again.

The device that cannot decrypt a message starts a new Olm session with the sending device
(from a freshly claimed one-time key) and sends a ``RetryRequest`` naming the message over
it. The sending device finds the message in its own store, encrypts it again over the new
session (the one the request arrived on) and hands it to the relay for that one device
(``resend``), keeping its message id. Both sides then go on over the new session.

While this happens the recipient shows "waiting for this message" (``MessageWaiting``)
and the sender shows the message as waiting; the recipient acknowledges an undecryptable
envelope as such, so that the relay never reports it delivered (✓✓) before a device of the
recipient could read it. After ``MAX_ATTEMPTS`` requests the recipient gives up and shows
the message as failed, and the sender marks it failed when asked beyond that.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from tresen.client.api import RelayApi, RelayError
from tresen.client.connection import Connection, NotConnected
from tresen.client.device import Device
from tresen.client.directory import Directory
from tresen.client.events import DecryptionFailed, Event, MessageWaiting, StatusChanged
from tresen.client.queues import Retries
from tresen.client.sending import Sender, offline
from tresen.client.sessions import Sessions
from tresen.client.store import LocalStore, MessageStatus, StoredMessage
from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.crypto import CryptoError
from tresen.wire import relay as wire
from tresen.wire.e2e import RetryRefused, RetryRequest, encode_payload

__all__ = ["MAX_ATTEMPTS", "Healing"]

log = get_logger("tresen.client")

MAX_ATTEMPTS = 3
"""Requests for one message from one device before it is given up (the relay allows five
resends of a message)."""
RENEW_EVERY_MS = 30_000
"""A new session with one peer device at most this often: the messages that fail together
(all those sent over a lost session) are asked for over the same new session."""
GAVE_UP = "could not be decrypted, and asking the sender again did not help"
NOT_RESENT = "could not be decrypted, and the sender's device cannot send it again"
RECIPIENT_GAVE_UP = "the recipient's device could not decrypt it, even when sent again"


class Healing:
    def __init__(
        self,
        api: RelayApi,
        store: LocalStore,
        retries: Retries,
        clock: Clock,
        device: Device,
        directory: Directory,
        sessions: Sessions,
        sender: Sender,
        connection: Connection,
        emit: Callable[[Event], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.api = api
        self.store = store
        self.retries = retries
        self.clock = clock
        self.device = device
        self.directory = directory
        self.sessions = sessions
        self.sender = sender
        self.connection = connection
        self.emit = emit
        self.spawn = spawn
        self._renewed_ms: dict[tuple[str, int], int] = {}
        self._lock = asyncio.Lock()

    # --- the device that could not decrypt ---------------------------------------------------

    def unreadable(self, frame: wire.MessageFrame, reason: str) -> None:
        """A message could not be decrypted: store it as waiting and ask for it again, or,
        once the requests are used up, as failed. Runs inside the store transaction."""
        attempt = self.retries.count(frame.message_id, frame.sender, frame.sender_device)
        self.store.forget_message(frame.message_id)  # a resend that failed again
        failed = attempt > MAX_ATTEMPTS
        self.store.put_message(
            StoredMessage(
                message_id=frame.message_id,
                chat=frame.sender,
                outgoing=False,
                sender_account=frame.sender,
                sender_device=frame.sender_device,
                client_msg_id=None,
                payload=None,
                status=MessageStatus.FAILED if failed else MessageStatus.WAITING,
                server_ms=frame.server_ms,
                error=GAVE_UP if failed else reason,
            )
        )
        log.warning(
            "message could not be decrypted",
            message_id=frame.message_id,
            sender=frame.sender,
            sender_device=frame.sender_device,
            attempt=attempt,
            reason=reason,
        )
        if failed:
            self.emit(
                DecryptionFailed(frame.message_id, frame.sender, frame.sender_device, GAVE_UP)
            )
            return
        self.emit(MessageWaiting(frame.message_id, frame.sender, frame.sender_device, reason))
        self.spawn(self._request(frame.message_id, frame.sender, frame.sender_device, attempt))

    def waiting(self, message_id: str) -> bool:
        """Whether a received message waits to be sent again (it may be decrypted now)."""
        return self.retries.waiting(message_id)

    def read(self, sender: str, device_id: int) -> None:
        """A message of that device was decrypted over an existing session: it is healthy."""
        self._renewed_ms.pop((sender, device_id), None)

    async def _request(self, message_id: str, sender: str, device_id: int, attempt: int) -> None:
        try:
            async with self._lock:
                await self._renew(sender, device_id)
                request = RetryRequest(
                    message_id=message_id, sender_device=device_id, attempt=attempt
                )
                await self.sender.deliver_system(sender, encode_payload(request))
            self.retries.requested(message_id, sender, device_id)
        except (RelayError, CryptoError, httpx.HTTPError, NotConnected, OSError) as exc:
            # Asked again when the client next connects (``request_missing``).
            log.warning("retry request not sent", message_id=message_id, error=str(exc))

    async def _renew(self, sender: str, device_id: int) -> None:
        """Start a new session with that device, unless one was started just now."""
        now = self.clock.now_ms()
        last = self._renewed_ms.get((sender, device_id))
        if last is not None and now - last < RENEW_EVERY_MS:
            return
        device = await self.directory.device(sender, device_id)
        if device is None:
            raise CryptoError("the sending device is not in the relay's directory")
        if await self.sessions.start(sender, [device]):
            self._renewed_ms[(sender, device_id)] = now

    async def request_missing(self) -> None:
        """Send the retry requests that could not be sent before (the relay was away)."""
        for message_id, sender, device_id, attempt in self.retries.unrequested():
            await self._request(message_id, sender, device_id, attempt)

    # --- the device that sent it ---------------------------------------------------------------

    def asked(self, requester: str, requester_device: int, request: RetryRequest) -> None:
        """A device asks for a message again; resend it if this device sent it to them."""
        if request.sender_device != self.device.device_id:
            return  # another device of this account sent it
        stored = self.store.message(request.message_id)
        if (
            stored is None
            or not stored.outgoing
            or stored.sender_device != self.device.device_id
            or stored.chat != requester
            or stored.payload is None
        ):
            # Never sent to them from here (or not kept): they need not wait for it.
            log.info("retry request for a message this device cannot resend")
            refusal = encode_payload(RetryRefused(message_id=request.message_id))
            self.spawn(self._tell(requester, refusal))
            return
        resends = self.retries.count(request.message_id, requester, requester_device)
        if resends > MAX_ATTEMPTS:
            self._failed(stored, RECIPIENT_GAVE_UP)
            return
        if self.store.advance_status(stored.message_id, MessageStatus.WAITING):
            self.emit(
                StatusChanged(
                    stored.message_id,
                    stored.chat,
                    MessageStatus.WAITING,
                    server_ms=stored.server_ms,
                )
            )
        self.spawn(self._resend(stored, requester, requester_device))

    async def _tell(self, account_id: str, plaintext: bytes) -> None:
        try:
            await self.sender.deliver_system(account_id, plaintext)
        except (RelayError, CryptoError, httpx.HTTPError, NotConnected, OSError) as exc:
            log.warning("retry answer not sent", error=str(exc))

    def refused(self, sender: str, sender_device: int, refusal: RetryRefused) -> None:
        """The sending device cannot send a message again: stop waiting for it."""
        if self.retries.fail_waiting(refusal.message_id, sender, sender_device, NOT_RESENT):
            self.emit(DecryptionFailed(refusal.message_id, sender, sender_device, NOT_RESENT))

    async def _resend(self, stored: StoredMessage, requester: str, device_id: int) -> None:
        assert stored.payload is not None
        device = self.store.peer_devices(requester).get(device_id)
        ciphertext = self.sessions.encrypt(requester, device_id, stored.payload)
        if device is None or ciphertext is None:
            self._failed(stored, "the recipient's device is gone")
            return
        frame = wire.Resend(
            client_msg_id=secrets.token_hex(16),
            message_id=stored.message_id,
            device_id=device_id,
            type=ciphertext.type,
            body=ciphertext.body,
            registration_id=device.registration_id,
        )
        try:
            try:
                await self.connection.request(frame)
            except NotConnected:
                await self.api.resend(frame)
        except RelayError as exc:
            self._failed(stored, exc.message)
        except Exception as exc:
            if not offline(exc):
                raise
            # The recipient asks again after its next failure; nothing more to do here.
            log.warning("resend not sent", message_id=stored.message_id, error=str(exc))

    def _failed(self, stored: StoredMessage, reason: str) -> None:
        if self.store.advance_status(stored.message_id, MessageStatus.FAILED, error=reason):
            self.emit(
                StatusChanged(
                    stored.message_id,
                    stored.chat,
                    MessageStatus.FAILED,
                    server_ms=stored.server_ms,
                    error=reason,
                )
            )

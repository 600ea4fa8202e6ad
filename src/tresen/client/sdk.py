"""``Client``: an end-to-end encrypted Tresen device.

The client owns one device of an account: its Olm identity and sessions, its local store and
its connection to the relay. ``Client`` is the face of the parts that do the work, each given
what it needs when the client is made:

* ``device`` (this device and its keys), ``operator`` (the operator's keys) and
  ``businesses`` (profiles and the business tick);
* ``directory`` (peers, their devices and trust) and ``sessions`` (Olm sessions);
* ``sender`` (encrypt and send), ``receiver`` and ``reports`` (what arrives, and what becomes
  of what was sent), over ``connection`` (the WebSocket to the relay);
* ``replies`` (buttons, lists, quick replies) and the consent and template books.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx

from tresen.client.api import RelayApi, RelayError
from tresen.client.attachments import AttachmentLimits, Attachments
from tresen.client.business import Business, BusinessSummary
from tresen.client.choices import Choice
from tresen.client.confirmations import Confirmations
from tresen.client.connection import Connection, Report
from tresen.client.consent import (
    ALL_SCOPES,
    BusinessConsents,
    ConsentBook,
    ConsentRecord,
    ConsentState,
    PairRecords,
)
from tresen.client.delivery import DeliveryReceipts
from tresen.client.device import ONE_TIME_KEYS_TARGET, Device, DeviceKeys, NotRegistered
from tresen.client.directory import PREPARE_MAX, Directory, IdentityNotTrusted
from tresen.client.events import Event, KeysReplenished, MessageEvent
from tresen.client.healing import Healing
from tresen.client.keywords import Keywords
from tresen.client.operator import (
    REVOCATIONS_MAX_AGE_S,
    Businesses,
    OperatorKeyMismatch,
    OperatorKeys,
)
from tresen.client.personal_data import PersonalData
from tresen.client.queues import Outbox, Queued, ReceiptOutbox, Retries
from tresen.client.receiving import Receiver
from tresen.client.replies import Replies
from tresen.client.reports import Reports
from tresen.client.sending import Sender, SentMessage
from tresen.client.sessions import Sessions
from tresen.client.statements import PAGE as STATEMENT_PAGE
from tresen.client.statements import LineItem, StatementHead, read_statement
from tresen.client.store import KnownBusiness, LocalStore, Trust
from tresen.client.templates import TemplateBook
from tresen.client.transparency import KeyLog, roots_json
from tresen.core.clock import Clock, SystemClock
from tresen.core.logging import get_logger
from tresen.crypto.certificates import KeyRing, RingUpdate
from tresen.crypto.olm import DeviceIdentity
from tresen.crypto.secrets import key_from_env, load_or_create_key_file
from tresen.wire import relay as wire
from tresen.wire.e2e import (
    Interactive,
    Media,
    MediaKind,
    Payload,
    Reaction,
    ReplyContext,
    Text,
    attached_file,
    decode_payload,
)
from tresen.wire.templates import Parameters

__all__ = ["Client", "IdentityNotTrusted", "NotRegistered", "OperatorKeyMismatch", "SentMessage"]

log = get_logger("tresen.client")

KEY_ENV = "TRESEN_CLIENT_KEY"
ATTACHMENTS_FOLDER = "attachments"
"""Beside the store: the files of attachments once downloaded."""


class Client:
    """One device of a Tresen account. Create with :meth:`open`."""

    def __init__(
        self,
        store: LocalStore,
        key: bytes,
        relay_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        directory_max_age_s: float = 60.0,
        operator_key: str | None = None,
        clock: Clock | None = None,
        revocations_max_age_s: int = REVOCATIONS_MAX_AGE_S,
        offline_outbox: bool = True,
        confirm_events: bool = False,
        attachment_limits: AttachmentLimits | None = None,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.relay_url = relay_url.rstrip("/")
        self.api = RelayApi(self.relay_url, transport=transport)
        token = store.get_secret("token")
        self.api.token = None if token is None else token.decode()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self.confirmations: Confirmations | None = Confirmations() if confirm_events else None
        emit = self._emit
        self.device = Device.load(store, key)
        self.keys = DeviceKeys(self.api, self.device)
        self.operator = OperatorKeys(self.api, store, self.clock, revocations_max_age_s)
        self.sessions = Sessions(self.api, store, self.clock, self.device)
        self.key_log = KeyLog(
            store,
            self.clock,
            lambda: self.operator.ring,
            self.operator.refresh,
            self.api.key_log_consistency,
        )
        self.directory = Directory(
            self.api,
            store,
            self.clock,
            self.device,
            self.sessions,
            self.key_log,
            emit,
            max_age_s=directory_max_age_s,
        )
        self.businesses = Businesses(
            self.api, store, self.clock, self.device, self.directory, self.operator
        )
        self.templates = TemplateBook(
            self.api, store, self.clock, lambda: self.operator.ring, self.operator.refresh
        )
        self.consent = ConsentBook(self.api, self.clock, store, self.device.signer)
        self.reports = Reports(store, emit, repeat=confirm_events)
        self.outbox = Outbox(store)
        self.connection = Connection(self.relay_url, lambda: self.api.token, self.clock, emit, self)
        self.sender = Sender(
            self.api,
            store,
            self.device,
            self.directory,
            self.sessions,
            self.connection,
            self.reports,
            self.templates,
            self.outbox,
            self.clock,
            emit,
            offline_outbox=offline_outbox,
        )
        self.healing = Healing(
            self.api,
            store,
            Retries(store),
            self.clock,
            self.device,
            self.directory,
            self.sessions,
            self.sender,
            self.connection,
            emit,
            self._spawn,
        )
        self.attachments = Attachments(
            self.api, store, store.folder / ATTACHMENTS_FOLDER, limits=attachment_limits
        )
        self.personal_data = PersonalData(
            self.api, store, self.clock, self.device, self.sender, self.attachments
        )
        self.delivery = DeliveryReceipts(
            store,
            self.clock,
            self.device,
            self.directory,
            self.sender,
            ReceiptOutbox(store),
            self._spawn,
        )
        self.receiver = Receiver(
            self.api,
            store,
            self.clock,
            self.device,
            self.directory,
            self.sessions,
            self.templates,
            self.reports,
            self.healing,
            emit,
            lambda: self.connection.relay_offset_ms,
            on_export=self.personal_data.answered,
            receipts=self.delivery,
            repeat=confirm_events,
        )
        self.keywords = Keywords(self.directory, self.businesses, self.consent, emit)
        self.sender.after_flush = self.keywords.after_flush
        self.replies = Replies(store, self.directory, self.templates, self.sender)
        self._tasks: set[asyncio.Task[None]] = set()
        if operator_key is not None:
            self.pin_operator_key(operator_key)

    # --- life cycle --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: Path,
        relay_url: str | None = None,
        *,
        key: bytes | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        directory_max_age_s: float = 60.0,
        operator_key: str | None = None,
        clock: Clock | None = None,
        offline_outbox: bool = True,
        confirm_events: bool = False,
        attachment_limits: AttachmentLimits | None = None,
    ) -> Client:
        """Open (or create) the client whose state lives in ``data_dir``.

        The 32-byte storage key comes from ``key``, else ``TRESEN_CLIENT_KEY``, else the file
        ``data_dir/key`` (created with mode 0600). ``operator_key`` pins the operator's public
        key from configuration instead of learning it at registration. With
        ``offline_outbox`` (the default), a message sent while the relay cannot be reached
        waits in the local outbox and goes out when it can; without, the send raises. With
        ``confirm_events``, what the relay hands over is acknowledged only once the
        application confirms its events (:meth:`confirm`, :mod:`tresen.client.confirmations`).
        """
        if relay_url is None and not (data_dir / "client.db").exists():
            raise NotRegistered(f"no relay URL known for {data_dir}; pass one")
        if key is None:
            from_env = os.environ.get(KEY_ENV)
            key = key_from_env(from_env) if from_env else load_or_create_key_file(data_dir / "key")
        store = LocalStore(data_dir / "client.db", key)
        stored_url = store.get_meta("relay_url")
        if relay_url is None:
            if stored_url is None:
                store.close()
                raise NotRegistered(f"no relay URL known for {data_dir}; pass one")
            relay_url = stored_url.decode()
        store.set_meta("relay_url", relay_url.encode())
        try:
            return cls(
                store,
                key,
                relay_url,
                transport=transport,
                directory_max_age_s=directory_max_age_s,
                operator_key=operator_key,
                clock=clock,
                offline_outbox=offline_outbox,
                confirm_events=confirm_events,
                attachment_limits=attachment_limits,
            )
        except BaseException:
            store.close()
            raise

    @property
    def account_id(self) -> str | None:
        return self.device.account_id

    @property
    def device_id(self) -> int | None:
        return self.device.device_id

    @property
    def phone(self) -> str | None:
        return self.device.phone

    @property
    def registered(self) -> bool:
        return self.device.registered

    async def close(self) -> None:
        await self.connection.close()
        for task in list(self._tasks):
            task.cancel()
        await self.api.close()
        self.store.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # --- the account's data ------------------------------------------------------------------

    async def export_data(self, *, timeout_s: float = 30.0) -> dict[str, Any]:
        """A copy of everything held about this account, as one JSON-able document: what the
        relay holds (``relay``), and what each business this account dealt with holds in its
        gateway, asked end to end (``businesses``: each ``answered`` with its ``data``, or
        ``no_answer`` within ``timeout_s``, ``not_asked`` with the relay's refusal, e.g. a
        business blocked, ``refused`` or ``invalid``). The client must be started
        (:meth:`start`) for the answers to arrive."""
        return await self.personal_data.export(timeout_s=timeout_s)

    async def delete_account(self) -> None:
        """Delete this account at the relay: every device (this one too), keys, queued
        messages and consents; its number can register again as a new account. Raises
        ``RelayError`` 150025 for a business account (the operator closes those)."""
        await self.connection.close()
        await self.personal_data.delete_account()

    # --- registration ------------------------------------------------------------------------

    async def request_code(self, phone: str) -> int:
        """Ask the relay to send a registration code to ``phone``; returns its lifetime."""
        return await self.api.request_code(phone)

    async def register(self, phone: str, code: str, device_name: str = "") -> None:
        """Verify ``code``, become a device of the account and publish this device's keys.

        A number that already has an account gets a new device of that same account (linking
        a second device); earlier history stays on the other devices.
        """
        if self.registered:
            raise RuntimeError("this client is registered already; use another data folder")
        await self.operator.learn()
        result = await self.api.verify_code(phone, code, device_name)
        self.api.token = result["token"]
        self.device.account_id = result["account_id"]
        self.device.device_id = int(result["device_id"])
        self.device.identity = DeviceIdentity.create()
        try:
            self.device.phone = (await self.api.me())["phone"]
            await self.keys.publish(identity_keys=True, fallback=True)
        except BaseException:
            # Nothing is kept of a half-finished registration: registering again starts over.
            self.device.forget()
            self.api.token = None
            raise
        self.device.save_registration(result["token"])

    # --- the operator's key and businesses ---------------------------------------------------

    @property
    def operator_fingerprint(self) -> str | None:
        """The fingerprint of the pinned operator key, to compare with the operator's."""
        return self.operator.fingerprint

    @property
    def operator_keys(self) -> KeyRing | None:
        return self.operator.ring

    def pin_operator_key(self, public_key: str) -> None:
        """Pin the operator's Ed25519 public key (unpadded base64) from configuration;
        another key than the one pinned before raises :class:`OperatorKeyMismatch`."""
        self.operator.pin(public_key)

    async def refresh_operator_keys(self) -> RingUpdate:
        """Follow the operator's key rotations: keys endorsed by a trusted key join the ring."""
        return await self.operator.refresh()

    # --- the relay's key log -------------------------------------------------------------------

    def key_log_roots(self) -> list[dict[str, Any]]:
        """The signed epoch heads of the relay's key log this client has seen and checked, in
        the form ``tresen audit roots --json`` publishes, to compare with others'
        (``tresen.client.transparency.compare_roots``)."""
        return roots_json(self.key_log.roots())

    def forget_key_log(self) -> None:
        """Forget the key log's heads seen so far; the next one is trusted as the first. Only
        after the operator has explained a fork that this client reported."""
        self.key_log.forget()

    def is_business(self, account_id: str) -> bool:
        return self.store.known_business(account_id) is not None

    def known_business(self, account_id: str) -> KnownBusiness | None:
        """The business as last checked, from the local store (no network)."""
        return self.store.known_business(account_id)

    async def business(self, peer: str) -> Business:
        """Fetch a business's profile and decide its tick on this device.

        Raises ``RelayError`` (131026) if ``peer`` is not a listed business.
        """
        return await self.businesses.business(peer)

    async def find_businesses(
        self, query: str = "", category: str | None = None, limit: int = 20
    ) -> list[BusinessSummary]:
        """Search the directory; the tick of each hit the relay lists as verified is checked
        here, as for :meth:`business`."""
        return await self.businesses.find(query, category, limit)

    async def save_business_profile(self, **fields: Any) -> dict[str, Any]:
        """Create or change this account's business profile (the account becomes a business).

        Fields as the relay takes them: ``display_name``, ``about``, ``description``,
        ``address``, ``email``, ``websites``, ``category``, ``timezone``, ``hours``,
        ``closed_dates``.
        """
        self.device.require_account()
        return await self.api.save_business_profile(fields)

    async def own_business_profile(self) -> dict[str, Any]:
        self.device.require_account()
        return await self.api.own_business_profile()

    async def request_verification(self, note: str = "") -> dict[str, Any]:
        """Ask the operator to verify this business."""
        self.device.require_account()
        return await self.api.request_verification(note)

    async def quality(self) -> dict[str, Any]:
        """As a business: its quality rating, messaging tier and usage."""
        self.device.require_account()
        return await self.api.quality()

    async def statement(
        self, month: str, *, page: int = STATEMENT_PAGE
    ) -> tuple[StatementHead, AsyncIterator[list[LineItem]]]:
        """As a business: its statement of ``month`` (``YYYY-MM``, UTC) from the relay, the
        head and then every line item, ``page`` at a time (the relay's pages followed).
        Raises ``ValueError`` for a month not written ``YYYY-MM``, ``RelayError`` for the
        relay's refusals."""
        self.device.require_account()
        return await read_statement(self.api, month, page=page)

    # --- blocks and reports --------------------------------------------------------------------

    async def block(self, peer: str) -> bool:
        """Block ``peer``: its messages stop reaching this account, and this account's stop
        reaching it, until :meth:`unblock`. True if it was not blocked before."""
        return await self.api.block(await self.resolve(peer))

    async def unblock(self, peer: str) -> None:
        await self.api.unblock(await self.resolve(peer))

    async def blocked(self) -> list[str]:
        """The account ids this account blocked."""
        self.device.require_account()
        return await self.api.blocked()

    async def report(
        self,
        peer: str,
        reason: str = "spam",
        *,
        message_id: str | None = None,
        detail: str = "",
        block: bool = False,
    ) -> None:
        """Report ``peer`` to the operator (``spam``, ``offensive``, ``scam``, ``unwanted``,
        ``other``), optionally naming one of its messages and blocking it as well."""
        await self.api.report(await self.resolve(peer), reason, message_id, detail, block=block)

    # --- consent -------------------------------------------------------------------------------

    async def opt_in(
        self, business: str, scopes: Iterable[str] = ALL_SCOPES
    ) -> list[ConsentRecord]:
        """Agree to ``business``'s messages in ``scopes`` (``utility``: order updates and
        codes; ``marketing``), signed by this device. Returns what the relay stored."""
        account_id = await self.resolve(business)
        return await self.consent.change(account_id, scopes, ConsentState.OPTED_IN)

    async def opt_out(
        self, business: str, scopes: Iterable[str] = ALL_SCOPES
    ) -> list[ConsentRecord]:
        """Withdraw consent to ``business``'s messages in ``scopes`` (a signed revocation)."""
        account_id = await self.resolve(business)
        return await self.consent.change(account_id, scopes, ConsentState.OPTED_OUT)

    async def revoke_all(self, business: str) -> list[ConsentRecord]:
        """Stop every kind of message ``business`` may send without being asked: one signed
        revocation per scope, stored together."""
        return await self.opt_out(business, ALL_SCOPES)

    async def consents(self) -> list[BusinessConsents]:
        """The dashboard: every business with a consent of this account on record (given or
        withdrawn, signed here or attested by the business), by display name."""
        self.device.require_account()
        return await self.consent.dashboard()

    async def consent_records(
        self, business: str, customer: str | None = None, *, history: int = 100
    ) -> PairRecords:
        """The signed records of ``business`` and ``customer`` (default: this account), for
        either side to keep and verify offline (``ConsentRecord.verify``)."""
        business_id = await self.resolve(business)
        customer_id = (
            self.device.require_account() if customer is None else await self.resolve(customer)
        )
        return await self.consent.records(business_id, customer_id, history)

    async def attest_consent(self, customer: str, evidence: str, evidence_ms: int) -> ConsentRecord:
        """As a business: record that ``customer`` opted in to utility messages elsewhere
        (``evidence``: how and where; ``evidence_ms``: when). The operator may refuse it."""
        body = {
            "customer": await self.resolve(customer),
            "scope": "utility",
            "evidence": evidence,
            "evidence_ms": evidence_ms,
        }
        return ConsentRecord.from_json((await self.api.attest_consent(body))["consent"])

    # --- peers, directory and trust ----------------------------------------------------------

    async def resolve(self, peer: str) -> str:
        """The account id of a phone number (``+49…``) or of an account id."""
        return await self.directory.resolve(peer)

    async def phone_of(self, account_id: str) -> str | None:
        return await self.directory.phone_of(account_id)

    async def prepare_peers(self, account_ids: Sequence[str]) -> list[str]:
        """Before writing to many accounts at once: pin the devices of those never seen and
        start their sessions in one request to the relay (up to 64 at a time). Returns the
        accounts that do not exist. Sending works without it, one request per peer slower."""
        unknown: list[str] = []
        new = list(dict.fromkeys(account_ids))
        for at in range(0, len(new), PREPARE_MAX):
            unknown += await self.directory.prepare(new[at : at + PREPARE_MAX])
        return unknown

    def trust_of(self, account_id: str) -> Trust:
        return self.directory.trust_of(account_id)

    async def trust_identity(self, account_id: str, *, expect: str | None = None) -> None:
        """Accept a peer's current identity keys after comparing safety numbers.

        With ``expect`` (the safety number the two people compared), the keys are accepted
        only if they still give exactly that number, so a second swap in between is refused.
        """
        await self.directory.trust_identity(account_id, expect=expect)

    async def safety_number(self, peer: str) -> str:
        """60 digits both people see alike when no one is in between.

        Computed from the keys the relay presents now, so that a swapped key shows up as a
        difference when the two people compare, even before anyone trusted it.
        """
        return await self.directory.safety_number(peer)

    # --- sending -----------------------------------------------------------------------------

    async def send_text(
        self, to: str, text: str, *, reply_to: str | None = None, preview_url: bool = False
    ) -> SentMessage:
        """Send a text message. To a business, a text that is only STOP, STOPP or ABMELDEN
        (any case) also revokes marketing, and START or ANMELDEN opts in to it: signed here,
        confirmed by a ``ConsentChanged`` event and in ``SentMessage.consent``."""
        context = None if reply_to is None else ReplyContext(message_id=reply_to)
        sent = await self.send(to, Text(text=text, preview_url=preview_url, context=context))
        if sent.pending:
            return sent  # the keyword applies once the text went out (``Keywords.after_flush``)
        # After the text went out, so the business sees it whatever becomes of the change.
        changed = await self.keywords.after_text(sent.chat, text)
        return sent if changed is None else dataclasses.replace(sent, consent=changed)

    async def send_file(
        self,
        to: str,
        source: Path | bytes,
        *,
        caption: str | None = None,
        reply_to: str | None = None,
        filename: str | None = None,
        mime_type: str | None = None,
        kind: MediaKind | None = None,
        voice: bool = False,
        duration_ms: int | None = None,
    ) -> SentMessage:
        """Send a file (a path, or its bytes with ``filename``) as an attachment.

        The file is encrypted here with a fresh key and uploaded as an opaque blob; the key,
        digest, name, type, caption and (for an image) its dimensions and a small thumbnail
        then go to every device of ``to`` in a ``media`` message, like a text. The kind comes
        from the MIME type (itself from the file name, else from the content) unless given.

        Raises ``AttachmentTooLarge`` (code ``attachment_too_large``) before uploading a file
        over its kind's limit, ``InvalidPayload`` for fields that do not fit, ``RelayError``
        for the relay's refusals. Unlike a text, an attachment does not wait in the outbox:
        the upload needs the relay.
        """
        await self.sender.chat_with(to)  # an unknown or untrusted peer fails before uploading
        media = await self.attachments.prepare(
            source,
            filename=filename,
            mime_type=mime_type,
            kind=kind,
            caption=caption,
            reply_to=reply_to,
            voice=voice,
            duration_ms=duration_ms,
        )
        try:
            return await self.send(to, media)
        except Exception:
            # Nobody can learn the key now: free the relay's space rather than wait for expiry.
            if media.blob_id is not None:
                with contextlib.suppress(RelayError, httpx.HTTPError):
                    await self.api.delete_attachment(media.blob_id)
            raise

    def media_of(self, message_id: str) -> Media | None:
        """The attachment that the stored message ``message_id`` describes, if it is one (or
        the file of a template's media header)."""
        stored = self.store.message(message_id)
        if stored is None or stored.payload is None:
            return None
        return attached_file(decode_payload(stored.payload))

    async def download(self, message: str | MessageEvent) -> Path:
        """The file of the attachment ``message`` (a message event or id), downloaded,
        checked and decrypted into the ``attachments`` folder beside the store once, and
        kept there (its path is remembered).

        Raises ``AttachmentDigestMismatch`` (``attachment_digest_mismatch``) or
        ``AttachmentCorrupt`` when the blob is not what the sender described, and nothing
        is kept; ``AttachmentUnavailable`` when the relay no longer has it; ``ValueError``
        when the message is not an attachment.
        """
        if isinstance(message, MessageEvent):
            message_id = message.message_id
            media = attached_file(message.payload)
        else:
            message_id, media = message, self.media_of(message)
        if media is None:
            raise ValueError(f"message {message_id} is not an attachment")
        return await self.attachments.download(message_id, media)

    def attachment_path(self, message_id: str) -> Path | None:
        """Where the downloaded file of ``message_id`` is, if it was downloaded."""
        return self.attachments.saved(message_id)

    def pending(self, chat: str | None = None) -> list[Queued]:
        """The messages that wait in the outbox (of ``chat``), oldest first."""
        return self.outbox.queued(chat)

    async def flush_outbox(self) -> dict[str, SentMessage]:
        """Send what waits in the outbox now (done by itself whenever the client connects);
        returns what went out, by the local id it waited under."""
        return await self.sender.flush()

    async def delete_pending(self, local_id: str) -> bool:
        """Delete a message that waits in the outbox, so that it is never sent."""
        return await self.sender.delete_pending(local_id)

    async def react(self, to: str, message_id: str, emoji: str) -> SentMessage:
        return await self.send(to, Reaction(message_id=message_id, emoji=emoji))

    async def send_interactive(self, to: str, interactive: Interactive) -> SentMessage:
        """Send reply buttons or a list (a session message: inside the customer's window).

        Raises ``InvalidPayload`` for a message that breaks the limits (button count, ids or
        titles twice, row count, a list without its menu button label, ...).
        """
        return await self.send(to, interactive)

    async def answer(self, to: str, message_id: str, option_id: str) -> SentMessage:
        """Answer the interactive message ``message_id`` received in the chat with ``to``:
        the button or list row whose id is ``option_id``, sent as an ``InteractiveReply``.

        Raises ``ValueError`` if that message is not an interactive message of this chat,
        or (naming the choices) if it has no such option.
        """
        return await self.replies.answer(to, message_id, option_id)

    async def tap_quick_reply(self, to: str, message_id: str, index: int) -> SentMessage:
        """Tap the QUICK_REPLY button ``index`` (its place among the template's buttons,
        from 0: its ``button:N``) of the template message ``message_id`` received from
        ``to``: sends a ``ButtonReply`` with the payload the business set for that button
        when it sent the message, else the button's text.

        Raises ``ValueError`` naming the quick replies if ``index`` is not one of them, or
        if the message is not a template message of this chat; ``TemplateRejected`` if its
        template cannot be checked now.
        """
        return await self.replies.tap_quick_reply(to, message_id, index)

    async def choices(self, message_id: str) -> list[Choice]:
        """What the received message ``message_id`` offers to choose, numbered from 1: the
        buttons or list rows of an interactive message, the quick replies of a template
        message; none for other messages."""
        return await self.replies.choices(message_id)

    async def choose(self, to: str, message_id: str, option: str) -> SentMessage:
        """Answer the message ``message_id`` from ``to`` with the option ``option`` names
        (its id, its number from 1, or its title): :meth:`answer` for an interactive
        message, :meth:`tap_quick_reply` for a template message. Raises ``ValueError``
        naming the choices."""
        return await self.replies.choose(to, message_id, option)

    async def typing(self, to: str, message_id: str) -> None:
        """Show ``to`` that this account is typing an answer to ``message_id``, for up to
        25 s or until the next message. Sent as class SYSTEM (from a business: inside the
        customer's window only, 131047 outside; no rate tokens, no price), never stored as
        a message, nothing to this account's other devices."""
        await self.sender.typing(to, message_id)

    async def send_template(
        self,
        to: str,
        template_id: int | str,
        language: str,
        parameters: Parameters | None = None,
        *,
        components: list[dict[str, Any]] | None = None,
        header_media: Media | None = None,
        client_msg_id: str | None = None,
    ) -> SentMessage:
        """Send this business's approved template ``template_id`` in ``language``.

        ``parameters`` per component (``{"body": ["Anna", "4711"], "button:0": ["4711"]}``,
        a map of name to value for named placeholders; for a QUICK_REPLY button the payload
        its tap returns), or ``components`` as a Cloud API send gives them. The template is
        checked and rendered here first, as the recipient will: parameters that do not fit
        raise ``RelayError`` 132000 (with ``problems``), a template that is not this
        business's approved one in that language 132001. ``header_media``: the file of an
        IMAGE, VIDEO or DOCUMENT header, prepared with :meth:`Attachments.prepare`; the
        recipient downloads it like any attachment (:meth:`download`). ``client_msg_id``: as
        for :meth:`send`.
        """
        return await self.sender.send_template(
            to, template_id, language, parameters, components, header_media, client_msg_id
        )

    async def send(
        self,
        to: str,
        payload: Payload,
        *,
        klass: wire.MessageClass = wire.MessageClass.SESSION,
        template_ref: str | None = None,
        client_msg_id: str | None = None,
    ) -> SentMessage:
        """Encrypt ``payload`` for every device of ``to`` (phone or account id) and send it.

        ``klass`` and ``template_ref`` are what the relay is told the send is (for a template
        message, :meth:`send_template` sets them); recipients check them against the content.

        The message is stored locally as sent, and a transcript goes to this account's other
        devices, so that every device shows the conversation.

        Raises ``IdentityNotTrusted`` while a peer's changed keys wait for the user,
        ``CryptoError`` when a claimed one-time key is not signed by the peer's pinned
        identity, and ``RelayError`` for the relay's rejections (with their codes).

        ``client_msg_id`` (1 to 64 characters; default: a random one) makes a repeated send of
        the same message idempotent: the relay answers a send it already holds as a
        ``duplicate`` and stores nothing, so a caller that lost track after a crash can send
        again with the same id and nobody gets it twice.
        """
        return await self.sender.send(
            to, payload, klass=klass, template_ref=template_ref, client_msg_id=client_msg_id
        )

    async def mark_read(self, chat: str, message_ids: list[str] | None = None) -> int:
        """Mark received messages of ``chat`` read: the sender sees it, and so do our devices."""
        return await self.sender.mark_read(chat, message_ids)

    # --- receiving ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and keep receiving (reconnecting with backoff) until :meth:`close`."""
        self.device.require_identity()
        self.connection.start()

    async def events(self) -> AsyncIterator[Event]:
        while True:
            yield await self._events.get()

    def _emit(self, event: Event) -> None:
        if self.confirmations is not None:
            self.confirmations.raised(event)
        self._events.put_nowait(event)

    def confirm(self, event: Event) -> None:
        """With ``confirm_events``: the application has kept what it needs of ``event``; the
        relay envelope that raised it is acknowledged once all its events are confirmed
        (see :mod:`tresen.client.confirmations`). Without, nothing to do."""
        if self.confirmations is not None:
            self.confirmations.confirm(event)

    async def next_event(self, within_s: float | None = None) -> Event:
        async with asyncio.timeout(within_s):
            return await self._events.get()

    async def wait_drained(self, within_s: float = 30) -> None:
        """Wait until the backlog the relay held at connection time is processed."""
        async with asyncio.timeout(within_s):
            await self.connection.drained.wait()

    async def flush_acks(self) -> None:
        """Send the acks that wait for the end of this turn of the event loop now."""
        await self.connection.flush_acks()

    # What the connection hands over (``connection.Receiving``).

    async def on_message(self, frame: wire.MessageFrame) -> bool:
        return await self.receiver.on_message(frame)

    def on_report(self, frame: Report) -> None:
        self.reports.on_report(frame)

    def after_handled(self, acknowledge: Callable[[], None]) -> None:
        if self.confirmations is None:
            acknowledge()
        else:
            self.confirmations.after_handled(acknowledge)

    def on_keys(self, one_time_keys: int) -> None:
        if one_time_keys < ONE_TIME_KEYS_TARGET // 5:
            self._spawn(self._replenish(one_time_keys))

    def on_connected(self) -> None:
        self._spawn(self._catch_up())

    async def _catch_up(self) -> None:
        """What could not go out while the relay was away: the outbox, retry requests."""
        try:
            if self.outbox.queued():
                await self.sender.flush()
            self.delivery.send_soon()
            await self.healing.request_missing()
        except Exception:
            log.exception("catching up after connecting failed")

    async def _replenish(self, stored: int) -> None:
        try:
            self._events.put_nowait(KeysReplenished(await self.keys.replenish(stored)))
        except (RelayError, httpx.HTTPError) as exc:
            log.warning("replenishing one-time keys failed", error=str(exc))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

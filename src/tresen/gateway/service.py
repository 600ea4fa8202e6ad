"""The gateway's rules: sending in the Cloud API's terms, and turning what the business's
device receives into stored conversations and webhook events.

Every change is one write that stores the row and queues its webhook events together (the
transactional outbox); the dispatcher is woken after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import websockets

from tresen.client import Client
from tresen.client.api import RelayError
from tresen.client.events import (
    DataRequested,
    DecryptionFailed,
    DeliveryReceiptEvent,
    Event,
    MessageEvent,
    StatusChanged,
)
from tresen.client.sdk import IdentityNotTrusted, SentMessage
from tresen.client.store import MessageStatus, Trust
from tresen.client.templates import TemplateUnavailable
from tresen.core.clock import Clock
from tresen.core.errors import ErrorCode
from tresen.core.logging import get_logger
from tresen.gateway.cloudapi.errors import GraphError, webhook_error
from tresen.gateway.cloudapi.requests import ReadRequest, SendRequest
from tresen.gateway.ids import InvalidWamid, encode_wamid, user_id_for, wa_id_of
from tresen.gateway.lookups import UnknownNumbers
from tresen.gateway.media.library import MediaLibrary, MediaRefused, Prepared
from tresen.gateway.media.store import MediaRecord
from tresen.gateway.metrics import GatewayMetrics
from tresen.gateway.recorder import Echo, Received, Recorder, Sent, StatusReport
from tresen.gateway.settings import GatewaySettings
from tresen.gateway.store import Contact, GatewayStore, StoredMessage, Writer
from tresen.gateway.webhooks.errors import (
    InvalidSubscription,
    SubscriptionLimitReached,
    SubscriptionRefused,
)
from tresen.gateway.webhooks.outbox import Outbox
from tresen.wire import relay as wire
from tresen.wire.business import ProfileEdit
from tresen.wire.e2e import (
    ButtonReply,
    Interactive,
    InteractiveReply,
    Media,
    MediaKind,
    Payload,
    Reaction,
    Template,
    Text,
    Unsupported,
)

__all__ = ["Gateway", "SendResult", "relay_trouble"]

log = get_logger("tresen.gateway")

TEMPLATE_IDS_MAX_AGE_S = 30.0
MAX_TEMPLATE_PAGES = 100
DEFAULT_FIELDS = ["messages", "message_template_status_update"]
UNKNOWN_NUMBER_TTL_S = 600
MAX_UNKNOWN_NUMBERS = 10_000


@dataclass(frozen=True, slots=True)
class SendResult:
    wamid: str
    contact: Contact
    input: str
    pricing: str | None = None
    """How the relay priced it (JSON, as stored), as it accepted it."""
    duplicate: bool = False
    """The relay held a send of this client message id already (nothing new was sent)."""


def _seconds(ms: int) -> str:
    return str(ms // 1000)


def _wamid_or_none(relay_message_id: str | None) -> str | None:
    if not relay_message_id:
        return None
    try:
        return encode_wamid(relay_message_id)
    except InvalidWamid:
        return None


def _pricing_json(pricing: wire.PricingFacts | None) -> str | None:
    if pricing is None:
        return None
    return json.dumps(
        {
            "billable": pricing.billable,
            "pricing_model": pricing.pricing_model,
            "type": pricing.type,
            "category": pricing.category,
        }
    )


NAME_RETRY_S = 60.0
MAX_EVENTS_IN_FLIGHT = 128
"""Received events recorded at once (their commits are shared); within the relay's delivery
window of unacknowledged messages per connection (512 by default)."""


class Gateway:
    """One business's gateway: its device, its store and its webhook outbox."""

    def __init__(
        self,
        settings: GatewaySettings,
        client: Client,
        store: GatewayStore,
        writer: Writer,
        outbox: Outbox,
        recorder: Recorder,
        clock: Clock,
        media: MediaLibrary,
        wake: Any = None,
        app_secret: str = "",
        on_data_request: Callable[[DataRequested], Awaitable[None]] | None = None,
        on_delivery_receipt: Callable[[DeliveryReceiptEvent], Awaitable[None]] | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.media = media
        self.client = client
        self.store = store
        self.writer = writer
        self.outbox = outbox
        self.recorder = recorder
        self.clock = clock
        self._wake = wake
        self.app_secret = app_secret
        # A customer asked for their data (``gateway/customers/answering.py`` answers).
        self.on_data_request = on_data_request or _unanswered
        # A customer's device signed that a template message arrived (``gateway/billing``).
        self.on_delivery_receipt = on_delivery_receipt or _unkept
        self.metrics = metrics or GatewayMetrics()
        self._poll_now = asyncio.Event()
        self._poll_task: asyncio.Task[None] | None = None
        self._events_task: asyncio.Task[None] | None = None
        self._template_ids: dict[tuple[str, str], int] = {}
        self._template_ids_at = 0.0
        self._template_lock = asyncio.Lock()
        self._unknown_numbers = UnknownNumbers(
            ttl_ms=UNKNOWN_NUMBER_TTL_S * 1000, max_entries=MAX_UNKNOWN_NUMBERS
        )
        assert client.phone is not None
        self.phone = client.phone
        self.phone_number_id = self.phone.lstrip("+")
        self.waba_id = settings.resolved_waba_id
        self.display_name: str | None = None
        """The business's display name as last seen at the relay (``None`` until known)."""
        self.time_zone: str | None = None
        """The time zone of the business's opening hours, as last seen (``None``: not set)."""
        self.profile: dict[str, Any] | None = None
        """The business profile as last seen at the relay (``None`` until known)."""
        self.on_received: Callable[[Received, asyncio.Future[None]], None] | None = None
        """Told of each customer message as it arrives, with the future of its record."""
        self._name_task: asyncio.Task[None] | None = None

    @property
    def account_id(self) -> str:
        assert self.client.account_id is not None
        return self.client.account_id

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.client.start()
        if self._events_task is None:
            self._events_task = asyncio.create_task(self._consume_events())
        if self._poll_task is None:
            self._poll_task = asyncio.create_task(self._poll_templates_forever())
        if self._name_task is None:
            self._name_task = asyncio.create_task(self._learn_display_name())

    async def close(self) -> None:
        if self._name_task is not None:
            self._name_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._name_task
            self._name_task = None
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None
        if self._events_task is not None:
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events_task
            self._events_task = None

    def _woken(self) -> None:
        if self._wake is not None:
            self._wake()

    # --- contacts ----------------------------------------------------------------------------

    async def contact_for_account(self, account_id: str) -> Contact:
        known = await self.store.contact(account_id)
        if known is not None:
            return known
        contact = await self._new_contact(account_id)
        await self.writer.run(lambda conn: self.store.save_contact(conn, contact))
        return contact

    async def _new_contact(self, account_id: str) -> Contact:
        phone = await self.client.phone_of(account_id)
        return Contact(
            account_id=account_id,
            phone=phone,
            wa_id=wa_id_of(phone),
            user_id=user_id_for(self.account_id, account_id, phone),
            profile_name=None,
            last_inbound_ms=None,
        )

    async def prepare_recipients(self, account_ids: Sequence[str]) -> None:
        """Before sending to many customers (a campaign): the contacts of those the gateway
        never wrote to in one write, and their devices' keys and sessions in one request to
        the relay per 64. Each send still checks everything itself."""
        wanted = [a for a in dict.fromkeys(account_ids) if a != self.account_id]
        known = await self.store.known_contacts(wanted)
        new = [await self._new_contact(a) for a in wanted if a not in known]
        if new:
            await self.writer.run(lambda conn: self.store.add_contacts(conn, new))
        await self.client.prepare_peers(wanted)

    async def resolve_phone(self, phone: str, given: str) -> str:
        """The account of ``phone`` (E.164; ``given`` is how the client wrote it): 131026
        for a number not on the network, also when asked again soon (without asking the
        relay: see :mod:`tresen.gateway.lookups`)."""
        now = self.clock.now_ms()
        if self._unknown_numbers.holds(phone, now):
            raise GraphError(131026, f"{given} is not on this Tresen network")
        try:
            return await self.client.resolve(phone)
        except RelayError as exc:
            if exc.code in (ErrorCode.UNDELIVERABLE, ErrorCode.INVALID_PARAMETER, 404):
                self._unknown_numbers.add(phone, now)
                raise GraphError(131026, f"{given} is not on this Tresen network") from None
            if exc.code == ErrorCode.REQUEST_RATE_LIMITED:
                # The gateway's own lookup budget at the relay, spent on new numbers: a
                # throughput limit of this number, not of the client's token (code 4).
                raise GraphError(
                    130429,
                    "Too many new numbers looked up at once; try this one again later",
                    extra={"retry_after_ms": exc.details.get("retry_after_ms")},
                ) from None
            raise _graph(exc) from None

    async def _recipient(self, request: SendRequest) -> Contact:
        recipient = request.recipient
        if recipient.user_id is not None:
            contact = await self.store.contact_by_user_id(recipient.user_id)
            if contact is None:
                raise GraphError(
                    131026,
                    "No customer with this user id has written to this business; "
                    "address new customers by phone number",
                )
            return contact
        assert recipient.phone is not None
        account_id = await self.resolve_phone(recipient.phone, recipient.input)
        if account_id == self.account_id:
            raise GraphError(131021, "The recipient is this business's own number")
        return await self.contact_for_account(account_id)

    # --- sending -----------------------------------------------------------------------------

    async def send(self, request: SendRequest, *, client_msg_id: str | None = None) -> SendResult:
        """Send ``request``; ``client_msg_id`` fixed makes a repeated send (after a crash)
        the relay's duplicate instead of a second message."""
        contact = await self._recipient(request)
        prepared = await self._prepare_media(request)
        try:
            sent = await self._send_to(contact.account_id, request, prepared, client_msg_id)
        except BaseException:
            if prepared is not None and prepared.payload.blob_id is not None:
                # Nobody can learn the key now: free the relay's space rather than wait.
                await self.media.release_blob(prepared.payload.blob_id)
            raise
        if prepared is not None:
            await self.media.sent(prepared)
        if not sent.duplicate:
            self.metrics.messages_sent.inc()
        now = self.clock.now_ms()
        wamid = encode_wamid(sent.message_id)
        stored = StoredMessage(
            wamid=wamid,
            relay_message_id=sent.message_id,
            contact=contact.account_id,
            direction="out",
            type=request.type,
            content=request.content,
            context_wamid=request.context_wamid,
            status="sent",
            error_code=None,
            callback_data=request.callback_data,
            created_ms=sent.server_ms or now,
            pricing=_pricing_json(sent.pricing),
        )
        await self.recorder.record(Sent(stored, contact))
        return SendResult(
            wamid=wamid,
            contact=contact,
            input=request.recipient.input,
            pricing=stored.pricing,
            duplicate=sent.duplicate,
        )

    async def _prepare_media(self, request: SendRequest) -> Prepared | None:
        """The file of a media message or of a template's media header, encrypted and
        uploaded for this message (``None``: the message has none)."""
        outgoing = request.media or request.header_media
        if outgoing is None and request.template is not None:
            outgoing = request.template.header_media
        if outgoing is None:
            return None
        try:
            return await self.media.prepare(
                outgoing, reply_to=request.reply_to if request.media is not None else None
            )
        except MediaRefused as exc:
            raise GraphError(exc.code, exc.details) from None
        except RelayError as exc:
            raise _graph(exc) from None
        except (httpx.HTTPError, OSError) as exc:
            raise GraphError(
                131016, f"The relay cannot be reached now ({type(exc).__name__}); try again"
            ) from None

    async def _send_to(
        self,
        account_id: str,
        request: SendRequest,
        prepared: Prepared | None = None,
        client_msg_id: str | None = None,
    ) -> SentMessage:
        attached = None if prepared is None else prepared.payload
        for attempt in range(2):
            try:
                if request.template is not None:
                    template_id = await self._template_id(
                        request.template.name, request.template.language
                    )
                    return await self.client.send_template(
                        account_id,
                        template_id,
                        request.template.language,
                        components=request.template.components,
                        header_media=attached,
                        client_msg_id=client_msg_id,
                    )
                payload = request.payload
                if isinstance(payload, Interactive) and attached is not None:
                    payload = msgspec.structs.replace(payload, header_media=attached)
                elif attached is not None:
                    payload = attached
                assert payload is not None
                return await self.client.send(account_id, payload, client_msg_id=client_msg_id)
            except IdentityNotTrusted as exc:
                if exc.reason is Trust.KEY_TRANSPARENCY:
                    # Unlike a reinstall, this is the relay handing out keys its own signed log
                    # does not vouch for: never accepted without a person comparing keys.
                    log.warning(
                        "customer keys not vouched for by the key log", account_id=account_id
                    )
                    raise GraphError(
                        131026,
                        "The relay's key log does not vouch for the customer's keys; "
                        "nothing was sent",
                    ) from None
                if attempt:
                    raise GraphError(131000, "The customer's keys keep changing") from None
                # A business cannot compare safety numbers with every customer: it accepts a
                # customer's new keys (a reinstall, a new phone) and logs that it did.
                log.warning("customer identity keys changed; accepted", account_id=account_id)
                await self.client.trust_identity(account_id)
            except RelayError as exc:
                raise _graph(exc) from None
            except TemplateUnavailable as exc:
                raise GraphError(131016, f"The template cannot be fetched now: {exc}") from None
            except (httpx.HTTPError, OSError, websockets.WebSocketException) as exc:
                raise GraphError(
                    131016, f"The relay cannot be reached now ({type(exc).__name__}); try again"
                ) from None
        raise AssertionError("unreachable")

    async def _template_id(self, name: str, language: str) -> int:
        key = (name, language)
        fresh = time.monotonic() - self._template_ids_at < TEMPLATE_IDS_MAX_AGE_S
        if key not in self._template_ids or not fresh:
            async with self._template_lock:
                if key not in self._template_ids or not fresh:
                    await self._load_template_ids()
        template_id = self._template_ids.get(key)
        if template_id is None:
            raise GraphError(
                132001,
                f"Template name {name} does not exist in {language} for this business",
            )
        return template_id

    async def all_templates(self) -> list[dict[str, Any]]:
        """Every template of the business at the relay, all pages read."""
        templates: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(MAX_TEMPLATE_PAGES):
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after"] = after
            page = await self.client.api.templates(**params)
            templates.extend(page.get("data", []))
            paging = page.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                break
        return templates

    async def _load_template_ids(self) -> None:
        self._template_ids = {
            (str(t["name"]), str(t["language"])): int(t["id"]) for t in await self.all_templates()
        }
        self._template_ids_at = time.monotonic()

    # --- the business profile ----------------------------------------------------------------

    async def business_profile(self) -> dict[str, Any] | None:
        """The business's own profile as the relay keeps it (with its verification);
        ``None`` while the number has none (it is not yet a business)."""
        try:
            profile = await self.client.own_business_profile()
        except RelayError as exc:
            if exc.code == ErrorCode.NOT_A_BUSINESS:
                return None
            raise
        self._remember_name(profile)
        return profile

    async def _learn_display_name(self) -> None:
        """Learn the display name (the inbox shows it): at start, then each minute until the
        number is a business whose profile the relay can give."""
        while self.display_name is None:
            try:
                await self.business_profile()
            except Exception as exc:
                log.info("business profile not read", error=type(exc).__name__)
            if self.display_name is None:
                await asyncio.sleep(NAME_RETRY_S)

    def _remember_name(self, profile: dict[str, Any] | None) -> None:
        if profile:
            self.profile = profile
        name = profile.get("display_name") if profile else None
        if isinstance(name, str) and name:
            self.display_name = name
        zone = profile.get("timezone") if profile else None
        if isinstance(zone, str) and zone:
            self.time_zone = zone

    async def save_business_profile(self, edit: ProfileEdit) -> dict[str, Any]:
        """Create the business profile or change the fields ``edit`` sets; the one way the
        Cloud API and the inbox's settings both save it. A new profile needs a display name:
        saving it makes the number a business that customers find in the directory.

        Raises :class:`~tresen.wire.business.InvalidProfile` (every offending field, checked
        here before the relay is asked) or ``RelayError``."""
        edit.clean()
        fields: dict[str, Any] = {}
        for field in dataclasses.fields(edit):
            value = getattr(edit, field.name)
            if value is None:
                continue
            if isinstance(value, list | tuple):
                value = list(value)
            elif field.name == "hours":
                value = {day: [list(pair) for pair in spans] for day, spans in value.items()}
            fields[field.name] = value
        saved = await self.client.save_business_profile(**fields)
        self._remember_name(saved)
        return saved

    async def set_profile_picture(self, data: bytes, content_type: str) -> None:
        """The business's profile picture (JPEG or PNG; the relay checks type and size)."""
        await self.client.api.set_business_picture(data, content_type)

    async def remove_profile_picture(self) -> None:
        await self.client.api.remove_business_picture()

    async def request_verification(self, note: str = "") -> dict[str, Any]:
        """Ask the operator to verify the business (the green tick); ``RelayError`` when a
        request is pending already, the business is verified, suspended or has no profile."""
        return await self.client.request_verification(note)

    # --- templates ---------------------------------------------------------------------------

    async def submit_template(self, template: dict[str, Any]) -> dict[str, Any]:
        """Submit a template (the Cloud API's shape) for review: ``{"id", "status",
        "category"}``; its review is looked for soon after."""
        created = await self.client.api.submit_template(template)
        await self.note_template_submitted()
        return created

    async def note_template_submitted(self) -> None:
        """A template was just submitted: look for its review soon, and forget the name map."""
        self._template_ids_at = 0.0
        self._poll_now.set()

    async def poll_templates(self) -> int:
        """Compare the relay's templates with the statuses last seen; each change becomes a
        ``message_template_status_update`` webhook. Returns the number of changes."""
        templates = await self.all_templates()
        now = self.clock.now_ms()

        async def apply(conn: Any) -> int:
            seen = await self.store.template_states(conn)
            first_look = not seen and not await self.store.templates_seeded(conn)
            changes = 0
            for t in templates:
                template_id = int(t["id"])
                status = str(t["status"])
                reason = str(t.get("rejected_reason") or "NONE")
                before = seen.get(template_id)
                await self.store.save_template_state(
                    conn, template_id, t["name"], t["language"], t["category"], status, reason, now
                )
                if before == status or first_look:
                    continue
                if before is None and status == "PENDING":
                    continue  # a new template waiting for review: nothing decided yet
                changes += 1
                await self.outbox.enqueue(
                    conn,
                    waba_id=self.waba_id,
                    conversation="templates",
                    field="message_template_status_update",
                    value={
                        "event": status,
                        "message_template_id": template_id,
                        "message_template_name": t["name"],
                        "message_template_language": t["language"],
                        "reason": reason if status == "REJECTED" else "NONE",
                        "message_template_category": t["category"],
                    },
                    time_s=now // 1000,
                )
            await self.store.mark_templates_seeded(conn)
            return changes

        changes: int = await self.writer.run(apply)
        if changes:
            self._template_ids_at = 0.0
            self._woken()
        return changes

    async def _poll_templates_forever(self) -> None:
        while True:
            try:
                await self.poll_templates()
            except Exception as exc:
                log.warning("template statuses not read", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.template_poll_s):
                    await self._poll_now.wait()
            self._poll_now.clear()

    # --- webhook subscriptions made through the API ---------------------------------------

    async def subscribe_override(self, url: Any, verify_token: Any) -> None:
        """Point the app's webhooks at ``url``. The app has one callback, as on the Cloud
        API: a new one replaces the one the API set before (subscriptions added with
        ``tresen gateway webhooks add`` stay)."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise GraphError(100, "Param override_callback_uri must be an http(s) URL")
        if not isinstance(verify_token, str) or not verify_token:
            raise GraphError(100, "Param verify_token is required")
        previous = await self.store.api_callback()
        try:
            await self.outbox.subscribe(
                url,
                verify_token,
                self.app_secret,
                DEFAULT_FIELDS,
                replacing=previous,
            )
        except SubscriptionRefused as exc:
            raise GraphError(2200, f"Callback verification failed: {exc}") from None
        except (InvalidSubscription, SubscriptionLimitReached) as exc:
            raise GraphError(100, str(exc)) from None
        await self.writer.run(lambda conn: self.store.save_api_callback(conn, url))

    async def mark_read(self, request: ReadRequest) -> None:
        message = await self.store.message(request.message_id)
        if message is None or message.direction != "in":
            raise GraphError(100, f"Param message_id: no message {request.message_id} received")
        earlier = await self.store.unread_inbound(message.contact, message.created_ms)
        relay_ids = [m.relay_message_id for m in earlier if m.relay_message_id]
        if message.relay_message_id and message.relay_message_id not in relay_ids:
            relay_ids.append(message.relay_message_id)
        try:
            if relay_ids:
                await self.client.mark_read(message.contact, relay_ids)
            if request.typing and message.relay_message_id:
                await self.client.typing(message.contact, message.relay_message_id)
        except RelayError as exc:
            raise _graph(exc) from None
        except (httpx.HTTPError, OSError, websockets.WebSocketException) as exc:
            raise GraphError(
                131016, f"The relay cannot be reached now ({type(exc).__name__}); try again"
            ) from None
        wamids = [m.wamid for m in earlier] + [message.wamid]
        await self.writer.run(lambda conn: self.store.mark_inbound_read(conn, wamids))

    # --- receiving ---------------------------------------------------------------------------

    async def _consume_events(self) -> None:
        """Take the device's events and record them, up to ``MAX_EVENTS_IN_FLIGHT`` at once.

        One event at a time would wait for each commit before taking the next, so the
        database's commit latency would cap the messages received a second (about 60 on
        PostgreSQL); events in flight together share the recorder's commits. Messages of one
        conversation still go one after the other (a lane per conversation), so they are
        recorded, announced and delivered as webhooks in the order they came; its statuses
        take a lane of their own, so that a customer's message (which the bot answers) never
        waits for the record of a report on an earlier answer. A status that overtakes the
        echo it reports on is kept until the echo is recorded (the recorder's early
        statuses). An event is confirmed to the device (which then acknowledges it to the
        relay) only once its record is committed."""
        slots = asyncio.Semaphore(MAX_EVENTS_IN_FLIGHT)
        lanes: dict[str, asyncio.Task[None]] = {}
        running: set[asyncio.Task[None]] = set()

        async def handle(event: Event, key: str, before: asyncio.Task[None] | None) -> None:
            try:
                if before is not None:
                    await asyncio.wait([before])
                await self._on_event(event)
            except Exception:
                # Left unconfirmed: the relay hands it over again on the next connection.
                log.exception("gateway event not recorded", kind=type(event).__name__)
            else:
                self.client.confirm(event)
            finally:
                slots.release()
                if lanes.get(key) is asyncio.current_task():
                    del lanes[key]

        try:
            async for event in self.client.events():
                key = _lane_of(event)
                if key is None:
                    self.client.confirm(event)
                    continue
                await slots.acquire()
                task = asyncio.create_task(handle(event, key, lanes.get(key)))
                lanes[key] = task
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                task.cancel()
            if running:
                await asyncio.wait(running)

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, StatusChanged):
            await self._on_status(event)
        elif isinstance(event, MessageEvent):
            if event.chat == self.account_id:
                return
            if event.outgoing:
                await self._on_echo(event)
            else:
                await self._on_inbound(event)
        elif isinstance(event, DecryptionFailed) and event.sender != self.account_id:
            await self._on_unreadable(event)
        elif isinstance(event, DataRequested):
            await self.on_data_request(event)
        elif isinstance(event, DeliveryReceiptEvent):
            await self.on_delivery_receipt(event)

    async def _on_status(self, event: StatusChanged) -> None:
        status = {
            MessageStatus.DELIVERED: "delivered",
            MessageStatus.READ: "read",
            MessageStatus.FAILED: "failed",
        }.get(event.status)
        if status is None:
            return
        wamid = _wamid_or_none(event.message_id)
        if wamid is None:
            return
        at_ms = event.server_ms or self.clock.now_ms()
        pricing = _pricing_json(event.pricing)
        await self.recorder.record(
            StatusReport(
                event.message_id, wamid, status, at_ms, pricing, event.error_code, event.error
            )
        )

    async def _on_inbound(self, event: MessageEvent) -> None:
        wamid = _wamid_or_none(event.message_id)
        if wamid is None:
            return
        contact = await self.contact_for_account(event.chat)
        if contact.phone is not None:
            self._unknown_numbers.discard(contact.phone)  # it registered since
        failure: MediaRefused | None = None
        kind: str | None
        if isinstance(event.payload, Media):
            kind, content, context, failure = await self._received_media(
                event.message_id, event.payload
            )
        else:
            kind, content, context = self._cloud_message(event.payload)
        if kind is None:
            return  # typing and receipts are not messages
        contact = Contact(
            contact.account_id,
            contact.phone,
            contact.wa_id,
            contact.user_id,
            contact.profile_name,
            event.server_ms,
        )
        message = StoredMessage(
            wamid=wamid,
            relay_message_id=event.message_id,
            contact=contact.account_id,
            direction="in",
            type=kind,
            content=content,
            context_wamid=context,
            status="received",
            error_code=None if failure is None else failure.code,
            callback_data=None,
            created_ms=event.server_ms,
        )
        entry: dict[str, Any] = {
            "from": contact.wa_id or contact.user_id,
            "from_user_id": contact.user_id,
            "id": wamid,
            "timestamp": _seconds(event.server_ms),
            "type": kind,
        }
        if failure is not None:
            entry["errors"] = [webhook_error(failure.code, failure.details)]
        elif kind == "unsupported":
            entry["errors"] = [webhook_error(131051, "Message type is currently not supported.")]
        else:
            entry[kind] = content
        if context is not None:
            quoted = await self.store.message(context)
            by_customer = quoted is not None and quoted.direction == "in"
            entry["context"] = {
                "from": (contact.wa_id or contact.user_id) if by_customer else self.phone_number_id,
                "id": context,
            }
        await self._received(Received(message, contact, entry))

    async def _received(self, op: Received) -> None:
        """Record a customer's message; ``on_received`` hears of it at once, with the record
        in progress (automation answers while the record commits)."""
        self.metrics.messages_received.inc()
        recording = asyncio.ensure_future(self.recorder.record(op))
        if self.on_received is not None:
            self.on_received(op, recording)
        await recording

    async def _received_media(
        self, message_id: str, payload: Media
    ) -> tuple[str, dict[str, Any], str | None, MediaRefused | None]:
        """A customer's attachment, downloaded and kept as a media id: the Cloud API type and
        object, the quoted wamid, and why it could not be had (then the type is
        ``unsupported``, as for a message that could not be decrypted)."""
        context = _wamid_or_none(payload.context.message_id) if payload.context else None
        try:
            record = await self.media.receive(message_id, payload)
        except MediaRefused as exc:
            log.warning("customer attachment refused", reason=exc.details)
            return "unsupported", {}, context, exc
        return str(payload.kind), _media_object(payload, record), context, None

    def _cloud_message(
        self, payload: Payload | Unsupported
    ) -> tuple[str | None, dict[str, Any], str | None]:
        """The Cloud API ``type``, object and quoted wamid of an inbound payload."""
        if isinstance(payload, Text):
            context = payload.context.message_id if payload.context else None
            return "text", {"body": payload.text}, _wamid_or_none(context)
        if isinstance(payload, Reaction):
            reaction: dict[str, Any] = {"message_id": _wamid_or_none(payload.message_id)}
            if payload.emoji:
                reaction["emoji"] = payload.emoji
            return "reaction", reaction, None
        if isinstance(payload, InteractiveReply):
            reply: dict[str, Any] = {"id": payload.id, "title": payload.title}
            if payload.description:
                reply["description"] = payload.description
            return (
                "interactive",
                {"type": payload.kind, payload.kind: reply},
                _wamid_or_none(payload.message_id),
            )
        if isinstance(payload, ButtonReply):
            return (
                "button",
                {"payload": payload.payload, "text": payload.text},
                _wamid_or_none(payload.message_id),
            )
        if isinstance(payload, Interactive | Template):
            return "unsupported", {}, None
        if isinstance(payload, Unsupported):
            return "unsupported", {}, None
        return None, {}, None

    async def _on_echo(self, event: MessageEvent) -> None:
        """A message another device of the business sent: part of the conversation too."""
        wamid = _wamid_or_none(event.message_id)
        if wamid is None:
            return
        contact = await self.contact_for_account(event.chat)
        kind, content, context = self._echo_content(event.payload)
        message = StoredMessage(
            wamid=wamid,
            relay_message_id=event.message_id,
            contact=contact.account_id,
            direction="out",
            type=kind,
            content=content,
            context_wamid=context,
            status="sent",
            error_code=None,
            callback_data=None,
            created_ms=event.server_ms,
        )
        await self.recorder.record(Echo(message))

    def _echo_content(
        self, payload: Payload | Unsupported
    ) -> tuple[str, dict[str, Any], str | None]:
        if isinstance(payload, Text):
            context = payload.context.message_id if payload.context else None
            return "text", {"body": payload.text}, _wamid_or_none(context)
        if isinstance(payload, Template):
            return "template", {"name": payload.name, "language": {"code": payload.language}}, None
        if isinstance(payload, Reaction):
            return (
                "reaction",
                {"message_id": _wamid_or_none(payload.message_id), "emoji": payload.emoji},
                None,
            )
        if isinstance(payload, Interactive):
            return "interactive", {"type": str(payload.type), "body": {"text": payload.body}}, None
        if isinstance(payload, Media):
            # Another device's file stays with that device: the record says what it was.
            described: dict[str, Any] = {"mime_type": payload.mime_type}
            if payload.caption:
                described["caption"] = payload.caption
            if payload.filename and payload.kind is MediaKind.DOCUMENT:
                described["filename"] = payload.filename
            context = payload.context.message_id if payload.context else None
            return str(payload.kind), described, _wamid_or_none(context)
        return "unsupported", {}, None

    async def _on_unreadable(self, event: DecryptionFailed) -> None:
        wamid = _wamid_or_none(event.message_id)
        if wamid is None:
            return
        contact = await self.contact_for_account(event.sender)
        now = self.clock.now_ms()
        message = StoredMessage(
            wamid=wamid,
            relay_message_id=event.message_id,
            contact=contact.account_id,
            direction="in",
            type="unsupported",
            content={},
            context_wamid=None,
            status="received",
            error_code=131051,
            callback_data=None,
            created_ms=now,
        )
        entry = {
            "from": contact.wa_id or contact.user_id,
            "from_user_id": contact.user_id,
            "id": wamid,
            "timestamp": _seconds(now),
            "type": "unsupported",
            "errors": [webhook_error(131051, "The message could not be decrypted or read.")],
        }
        await self._received(Received(message, contact, entry))


def _media_object(payload: Media, record: MediaRecord) -> dict[str, Any]:
    """A received file as a Cloud API webhook describes it (``image``, ``document``, ...)."""
    described: dict[str, Any] = {
        "id": record.id,
        "mime_type": record.mime_type,
        "sha256": record.sha256,
    }
    if payload.caption:
        described["caption"] = payload.caption
    if payload.kind is MediaKind.DOCUMENT and payload.filename:
        described["filename"] = payload.filename
    if payload.kind is MediaKind.AUDIO:
        described["voice"] = payload.voice
    return described


async def _unanswered(request: DataRequested) -> None:
    log.warning("a customer's data request is not answered by this gateway")


async def _unkept(receipt: DeliveryReceiptEvent) -> None:
    log.warning("a delivery receipt is not kept by this gateway", message_id=receipt.message_id)


def _lane_of(event: Event) -> str | None:
    """The conversation whose order ``event`` takes its place in (``None``: the gateway
    records nothing for it)."""
    if isinstance(event, MessageEvent | DataRequested):
        return event.chat
    if isinstance(event, StatusChanged):
        return f"status:{event.chat}"
    if isinstance(event, DecryptionFailed):
        return event.sender
    if isinstance(event, DeliveryReceiptEvent):
        return f"receipt:{event.customer}"
    return None


def relay_trouble(exc: BaseException) -> GraphError:
    """What a Cloud API client sees when the relay refused or could not be reached."""
    if isinstance(exc, RelayError):
        return _graph(exc)
    if isinstance(exc, GraphError):
        return exc
    if isinstance(exc, httpx.HTTPError | OSError | websockets.WebSocketException):
        return GraphError(
            131016, f"The relay cannot be reached now ({type(exc).__name__}); try again"
        )
    log.error("unexpected failure", error=type(exc).__name__)
    return GraphError(131000, "Something went wrong; try again")


def _graph(exc: RelayError) -> GraphError:
    """A relay rejection as the Cloud API error of the same code."""
    extra: dict[str, Any] = {}
    problems = exc.details.get("problems")
    if problems:
        extra["problems"] = problems
    retry_after_ms = exc.details.get("retry_after_ms")
    if retry_after_ms is not None:
        extra["retry_after_ms"] = retry_after_ms
    return GraphError(int(exc.code), exc.message, extra=extra)

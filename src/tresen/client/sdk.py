"""``Client``: an end-to-end encrypted Tresen device.

The client owns one device of an account: its Olm identity and sessions, its local store and
its connection to the relay. It encrypts every message once per recipient device, and
decrypts, de-duplicates, stores and acknowledges what arrives, reporting it as events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import websockets
from websockets.asyncio.client import ClientConnection

from tresen.client.api import RelayApi, RelayError
from tresen.client.business import (
    Business,
    BusinessProfile,
    BusinessSummary,
    Tick,
    TickState,
    judge,
)
from tresen.client.choices import Choice, interactive_choices, pick, quick_reply_choices
from tresen.client.consent import (
    ALL_SCOPES,
    BusinessConsents,
    ConsentBook,
    ConsentRecord,
    ConsentState,
    PairRecords,
    Signer,
    keyword_action,
)
from tresen.client.events import (
    Connected,
    ConsentChanged,
    DecryptionFailed,
    DeviceAdded,
    Disconnected,
    Drained,
    Event,
    IdentityChanged,
    KeysReplenished,
    MessageEvent,
    StatusChanged,
    TypingStarted,
)
from tresen.client.store import (
    KnownBusiness,
    LocalStore,
    MessageStatus,
    PeerDevice,
    StoredMessage,
    Trust,
)
from tresen.client.templates import (
    REPORT_REASON,
    TemplateBook,
    TemplateRejected,
    TemplateUnavailable,
    check_template_message,
)
from tresen.core.clock import Clock, SystemClock
from tresen.core.errors import ErrorCode
from tresen.core.logging import get_logger
from tresen.crypto import CryptoError
from tresen.crypto.certificates import (
    CertificateError,
    KeyRing,
    PublishedKey,
    RevocationList,
    RingUpdate,
    SignedRevocationList,
    UnknownOperatorKey,
    verify_revocations,
)
from tresen.crypto.olm import Ciphertext, DeviceIdentity, OlmSession, verify_signed_key
from tresen.crypto.safety import Party, safety_number
from tresen.crypto.secrets import key_from_env, load_or_create_key_file
from tresen.wire import relay as wire
from tresen.wire.e2e import (
    TYPING_MS,
    ButtonReply,
    Interactive,
    InteractiveReply,
    Payload,
    Reaction,
    ReadReceipt,
    ReplyContext,
    ReplyKind,
    SentTranscript,
    Template,
    Text,
    Typing,
    Unsupported,
    decode_payload,
    encode_payload,
)
from tresen.wire.templates import (
    ParameterMismatch,
    Parameters,
    RenderedTemplate,
    parameters_from_cloud_components,
    plain_parameters,
    quick_reply_payloads,
    render,
)

__all__ = ["Client", "IdentityNotTrusted", "NotRegistered", "OperatorKeyMismatch", "SentMessage"]

log = get_logger("tresen.client")

KEY_ENV = "TRESEN_CLIENT_KEY"
ONE_TIME_KEYS_TARGET = 50
MAX_ACKS_PER_FRAME = 256
"""Within the relay's ``max_acks_per_frame`` (1,024 by default)."""
RECONNECT_MAX_S = 30.0
REVOCATIONS_MAX_AGE_S = 86_400
DIRECTORY_CHECKS = 4
EARLY_STATUSES_MAX = 10_000
# Reason of the report a message sent under the wrong class earns its sender (the relay's
# reasons are fixed; the detail names the mismatch).
CLASS_REPORT_REASON = "other"

# The relay's reports on a message this account sent, and the status each one gives it.
_Report = wire.Delivered | wire.Read | wire.Failed
_REPORTED_STATUS: dict[type[_Report], MessageStatus] = {
    wire.Delivered: MessageStatus.DELIVERED,
    wire.Read: MessageStatus.READ,
    wire.Failed: MessageStatus.FAILED,
}
_REPORT_ORDER: dict[type[_Report], int] = {wire.Delivered: 0, wire.Read: 1, wire.Failed: 2}


class NotRegistered(RuntimeError):
    pass


class IdentityNotTrusted(RuntimeError):
    """Sending to a peer whose identity keys changed waits for ``Client.trust_identity``."""

    def __init__(self, account_id: str) -> None:
        super().__init__(
            f"the identity keys of {account_id} changed; compare safety numbers, then trust"
        )
        self.account_id = account_id


class OperatorKeyMismatch(RuntimeError):
    """The configured operator key is not the one this client pinned before."""


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


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.revocations_max_age_s = revocations_max_age_s
        self._key = key
        self.relay_url = relay_url.rstrip("/")
        self.api = RelayApi(self.relay_url, transport=transport)
        self.directory_max_age_s = directory_max_age_s
        self.account_id: str | None = None
        self.device_id: int | None = None
        self.phone: str | None = None
        self._identity: DeviceIdentity | None = None
        self._sessions: dict[tuple[str, int], list[OlmSession]] = {}
        self._directory_checked: dict[str, float] = {}
        self._peer_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[wire.Accepted]] = {}
        self._ws: ClientConnection | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False
        self._drained = asyncio.Event()
        self._acks: list[int] = []
        self._ack_tasks: set[asyncio.Task[None]] = set()
        # Delivered/read/failed reports that came before this device stored the message they
        # name (the relay's answer and its report can be read in one go), kept until it does.
        self._early: OrderedDict[str, list[_Report]] = OrderedDict()
        self._relay_offset_ms = 0  # the relay's clock minus ours, as of the last hello
        self._ring: KeyRing | None = None
        self.templates = TemplateBook(
            self.api, store, self.clock, lambda: self._ring, self.refresh_operator_keys
        )
        self._consent = ConsentBook(self.api, self.clock, store, self._signer)
        self._load()
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
    ) -> Client:
        """Open (or create) the client whose state lives in ``data_dir``.

        The 32-byte storage key comes from ``key``, else ``TRESEN_CLIENT_KEY``, else the file
        ``data_dir/key`` (created with mode 0600). ``operator_key`` pins the operator's public
        key from configuration instead of learning it at registration.
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
            )
        except BaseException:
            store.close()
            raise

    def _load(self) -> None:
        account = self.store.get_meta("account_id")
        if account is None:
            return
        self.account_id = account.decode()
        self.device_id = int((self.store.get_meta("device_id") or b"0").decode())
        self.phone = (self.store.get_meta("phone") or b"").decode() or None
        token = self.store.get_secret("token")
        self.api.token = None if token is None else token.decode()
        pickle = self.store.get_meta("identity")
        if pickle is not None:
            self._identity = DeviceIdentity.from_pickle(pickle.decode(), self._key)
        ring = self.store.get_meta("operator_ring")
        if ring is not None:
            self._ring = KeyRing.from_json(json.loads(ring))

    @property
    def registered(self) -> bool:
        return self.account_id is not None and self._identity is not None

    async def close(self) -> None:
        self._closing = True
        await self.flush_acks()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._ws is not None:
            await self._ws.close()
        await self.api.close()
        self.store.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

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
        published = await self.api.operator_keys()
        if self._ring is None:
            # Trust on first use: the key the relay names as current, its fingerprint shown
            # to the user (``operator_fingerprint``) to compare with the operator's own.
            current = next(
                k for k in published["keys"] if k["key_id"] == published["current_key_id"]
            )
            self._set_ring(KeyRing(str(current["public_key"])))
        self._follow_rotations(published)
        result = await self.api.verify_code(phone, code, device_name)
        self.api.token = result["token"]
        self.account_id = result["account_id"]
        self.device_id = int(result["device_id"])
        self._identity = DeviceIdentity.create()
        try:
            self.phone = (await self.api.me())["phone"]
            await self._publish_keys(identity_keys=True, fallback=True)
        except BaseException:
            # Nothing is kept of a half-finished registration: registering again starts over.
            self.account_id = self.device_id = self.phone = self._identity = None
            self.api.token = None
            raise
        with self.store.transaction():
            self.store.set_meta("account_id", result["account_id"].encode())
            self.store.set_meta("device_id", str(result["device_id"]).encode())
            self.store.set_meta("phone", self.phone.encode())
            self.store.set_secret("token", result["token"].encode())
            self._save_identity()

    def _require_identity(self) -> DeviceIdentity:
        if self._identity is None or self.account_id is None:
            raise NotRegistered("register this client first")
        return self._identity

    async def _publish_keys(self, *, identity_keys: bool = False, fallback: bool = False) -> int:
        identity = self._require_identity()
        count = (
            await self.api.upload_keys(
                identity=(identity.curve25519, identity.ed25519) if identity_keys else None
            )
        )["one_time_keys"]
        return await self._replenish(count, fallback=fallback)

    async def _replenish(self, stored: int, *, fallback: bool = False) -> int:
        """Top the relay's stock of this device's one-time keys back up."""
        identity = self._require_identity()
        missing = ONE_TIME_KEYS_TARGET - stored
        keys = identity.generate_one_time_keys(missing) if missing > 0 else []
        fallback_key = identity.generate_fallback_key() if fallback else None
        if not keys and fallback_key is None:
            return stored
        result = await self.api.upload_keys(one_time_keys=keys, fallback_key=fallback_key)
        identity.mark_published()
        self._save_identity()
        log.debug("one-time keys published", count=len(keys))
        return int(result["one_time_keys"])

    def _save_identity(self) -> None:
        identity = self._require_identity()
        self.store.set_meta("identity", identity.pickle(self._key).encode())

    # --- the operator's key -------------------------------------------------------------------

    @property
    def operator_fingerprint(self) -> str | None:
        """The fingerprint of the pinned operator key, to compare with the operator's."""
        return None if self._ring is None else self._ring.fingerprint()

    @property
    def operator_keys(self) -> KeyRing | None:
        return self._ring

    def pin_operator_key(self, public_key: str) -> None:
        """Pin the operator's Ed25519 public key (unpadded base64) from configuration.

        Pinning the key that is pinned already keeps what was learned since; another key
        than the pinned one is refused (:class:`OperatorKeyMismatch`): a client that changes
        operators starts from a new data folder.
        """
        ring = KeyRing(public_key.strip())
        if self._ring is not None:
            if self._ring.pinned_key_id == ring.pinned_key_id:
                return
            raise OperatorKeyMismatch(
                f"this client pinned operator key {self._ring.fingerprint()}, "
                f"not {ring.fingerprint()}"
            )
        self._set_ring(ring)

    def _set_ring(self, ring: KeyRing) -> None:
        self._ring = ring
        self.store.set_meta("operator_ring", json.dumps(ring.to_json()).encode())

    def _follow_rotations(self, published: dict[str, Any]) -> RingUpdate:
        ring = self._ring
        if ring is None:
            return RingUpdate()
        keys = []
        for entry in published.get("keys", ()):
            with contextlib.suppress(CertificateError):
                keys.append(PublishedKey.from_json(entry))
        update = ring.update(keys)
        if update.added or update.retired:
            self._set_ring(ring)
            log.info("operator keys updated", added=update.added, retired=update.retired)
        if update.ignored:
            log.warning("operator keys without a trusted endorsement ignored", keys=update.ignored)
        return update

    async def refresh_operator_keys(self) -> RingUpdate:
        """Follow the operator's key rotations: keys endorsed by a trusted key join the ring."""
        return self._follow_rotations(await self.api.operator_keys())

    async def _revoked_serials(self) -> set[int] | None:
        """The serials on a fresh, operator-signed revocation list; ``None`` if there is none."""
        if self._ring is None:
            return None
        try:
            signed = SignedRevocationList.from_json(await self.api.revoked_certificates())
            try:
                listing = self._check_revocations(signed)
            except UnknownOperatorKey:
                await self.refresh_operator_keys()  # signed by a key rotated in since
                listing = self._check_revocations(signed)
        except (CertificateError, RelayError, httpx.HTTPError) as exc:
            log.warning("revocation list not usable", error=str(exc))
            return None
        return set(listing.serials)

    def _check_revocations(self, signed: SignedRevocationList) -> RevocationList:
        assert self._ring is not None
        max_age_ms = self.revocations_max_age_s * 1000
        return verify_revocations(signed, self._ring, self.clock.now_ms(), max_age_ms)

    # --- businesses ----------------------------------------------------------------------------

    def is_business(self, account_id: str) -> bool:
        return self.store.known_business(account_id) is not None

    def known_business(self, account_id: str) -> KnownBusiness | None:
        """The business as last checked, from the local store (no network)."""
        return self.store.known_business(account_id)

    async def business(self, peer: str) -> Business:
        """Fetch a business's profile and decide its tick on this device.

        Raises ``RelayError`` (131026) if ``peer`` is not a listed business.
        """
        account_id = await self.resolve(peer)
        try:
            profile = BusinessProfile.from_json(await self.api.business(account_id))
        except RelayError as exc:
            if exc.code == ErrorCode.UNDELIVERABLE and self.is_business(account_id):
                # Suspended or gone: the chat stays labelled, the tick goes.
                self.store.withdraw_tick(account_id, str(TickState.NOT_VERIFIED))
            raise
        phone = await self.phone_of(account_id) or ""
        tick = await self._judge(profile, phone, await self._revoked_serials())
        now = self.clock.now_ms()
        self.store.put_business(
            account_id, profile.display_name, str(tick.state), profile.to_json(), now
        )
        return Business(profile, phone, tick, now)

    async def _judge(self, profile: BusinessProfile, phone: str, revoked: set[int] | None) -> Tick:
        if profile.certificate is None or self._ring is None:
            return judge(
                profile.certificate,
                self._ring,
                self.clock.now_ms(),
                revoked=revoked,
                account_id=profile.account_id,
                phone=phone,
                display_name=profile.display_name,
                device_keys=(),
            )
        key_id = profile.certificate_key_id
        if key_id is not None and key_id not in self._ring:
            with contextlib.suppress(RelayError, httpx.HTTPError):
                await self.refresh_operator_keys()
        keys = [d.ed25519 for d in await self._devices_of(profile.account_id, refresh=True)]
        if profile.account_id == self.account_id:
            keys.append(self._require_identity().ed25519)
        return judge(
            profile.certificate,
            self._ring,
            self.clock.now_ms(),
            revoked=revoked,
            account_id=profile.account_id,
            phone=phone,
            display_name=profile.display_name,
            device_keys=keys,
            identity_changed=self.store.trust(profile.account_id) is Trust.CHANGED,
        )

    async def find_businesses(
        self, query: str = "", category: str | None = None, limit: int = 20
    ) -> list[BusinessSummary]:
        """Search the directory; the tick of each hit the relay lists as verified is checked
        here, as for :meth:`business`."""
        hits = await self.api.search_businesses(query, category, limit)
        revoked = await self._revoked_serials() if hits else None
        checks = asyncio.Semaphore(DIRECTORY_CHECKS)

        async def summarize(hit: dict[str, Any]) -> BusinessSummary:
            account_id = str(hit["account_id"])
            self.store.mark_business(account_id)
            tick = Tick(TickState.NOT_VERIFIED)
            if hit.get("verification") == "verified":
                async with checks:
                    with contextlib.suppress(RelayError):
                        profile = BusinessProfile.from_json(await self.api.business(account_id))
                        phone = await self.phone_of(account_id) or ""
                        tick = await self._judge(profile, phone, revoked)
            return BusinessSummary(
                account_id,
                str(hit["display_name"]),
                str(hit.get("about", "")),
                str(hit.get("category", "")),
                tick,
            )

        return list(await asyncio.gather(*(summarize(h) for h in hits)))

    async def save_business_profile(self, **fields: Any) -> dict[str, Any]:
        """Create or change this account's business profile (the account becomes a business).

        Fields as the relay takes them: ``display_name``, ``about``, ``description``,
        ``address``, ``email``, ``websites``, ``category``, ``timezone``, ``hours``,
        ``closed_dates``.
        """
        self._require_account()
        return await self.api.save_business_profile(fields)

    async def own_business_profile(self) -> dict[str, Any]:
        self._require_account()
        return await self.api.own_business_profile()

    async def request_verification(self, note: str = "") -> dict[str, Any]:
        """Ask the operator to verify this business."""
        self._require_account()
        return await self.api.request_verification(note)

    # --- blocks and reports --------------------------------------------------------------------

    async def block(self, peer: str) -> bool:
        """Block ``peer``: its messages stop reaching this account, and this account's stop
        reaching it, until :meth:`unblock`. True if it was not blocked before."""
        return await self.api.block(await self.resolve(peer))

    async def unblock(self, peer: str) -> None:
        await self.api.unblock(await self.resolve(peer))

    async def blocked(self) -> list[str]:
        """The account ids this account blocked."""
        self._require_account()
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

    async def quality(self) -> dict[str, Any]:
        """As a business: its quality rating, messaging tier and usage."""
        self._require_account()
        return await self.api.quality()

    # --- consent -------------------------------------------------------------------------------

    def _signer(self) -> Signer:
        identity = self._require_identity()
        assert self.device_id is not None
        return Signer(self._require_account(), self.device_id, self.phone or "", identity)

    async def opt_in(
        self, business: str, scopes: Iterable[str] = ALL_SCOPES
    ) -> list[ConsentRecord]:
        """Agree to ``business``'s messages in ``scopes`` (``utility``: order updates and
        codes; ``marketing``), signed by this device. Returns what the relay stored."""
        account_id = await self.resolve(business)
        return await self._consent.change(account_id, scopes, ConsentState.OPTED_IN)

    async def opt_out(
        self, business: str, scopes: Iterable[str] = ALL_SCOPES
    ) -> list[ConsentRecord]:
        """Withdraw consent to ``business``'s messages in ``scopes`` (a signed revocation)."""
        account_id = await self.resolve(business)
        return await self._consent.change(account_id, scopes, ConsentState.OPTED_OUT)

    async def revoke_all(self, business: str) -> list[ConsentRecord]:
        """Stop every kind of message ``business`` may send without being asked: one signed
        revocation per scope, stored together."""
        return await self.opt_out(business, ALL_SCOPES)

    async def consents(self) -> list[BusinessConsents]:
        """The dashboard: every business with a consent of this account on record (given or
        withdrawn, signed here or attested by the business), by display name."""
        self._require_account()
        return await self._consent.dashboard()

    async def consent_records(
        self, business: str, customer: str | None = None, *, history: int = 100
    ) -> PairRecords:
        """The signed records of ``business`` and ``customer`` (default: this account), for
        either side to keep and verify offline (``ConsentRecord.verify``)."""
        business_id = await self.resolve(business)
        customer_id = self._require_account() if customer is None else await self.resolve(customer)
        return await self._consent.records(business_id, customer_id, history)

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

    async def _keyword_consent(self, account_id: str, text: str) -> ConsentChanged | None:
        """A STOP or START typed to a business becomes a signed revocation or opt-in."""
        action = keyword_action(text)
        if action is None:
            return None
        phone = await self.phone_of(account_id)  # also learns whether it is a business
        known = self.known_business(account_id)
        if known is None:
            return None
        name = known.display_name
        if name is None:
            with contextlib.suppress(RelayError, httpx.HTTPError):
                name = (await self.business(account_id)).display_name
        changed = await self._consent.keyword(account_id, name or phone or account_id, action)
        self._emit(changed)
        return changed

    # --- peers, directory and trust ----------------------------------------------------------

    async def resolve(self, peer: str) -> str:
        """The account id of a phone number (``+49…``) or of an account id."""
        if not peer.startswith("+"):
            return peer
        known = self.store.account_for_phone(peer)
        if known is not None:
            return known
        found = await self.api.lookup_phone(peer)
        self._learn_kind(found)
        known = self.store.account_for_phone(found["phone"])
        if known is None:
            self.store.remember_peer(found["account_id"], found["phone"], _now_ms())
        return found["account_id"]

    def _learn_kind(self, found: dict[str, str]) -> None:
        if found.get("kind") == "business":
            self.store.mark_business(found["account_id"])

    async def phone_of(self, account_id: str) -> str | None:
        phone = self.store.peer_phone(account_id)
        if phone is None:
            with contextlib.suppress(RelayError):
                found = await self.api.lookup_account(account_id)
                self._learn_kind(found)
                phone = found["phone"]
                self.store.remember_peer(account_id, phone, _now_ms())
        return phone

    async def _devices_of(self, account_id: str, *, refresh: bool = False) -> list[PeerDevice]:
        """The peer's devices that receive our messages, checked against what we pinned.

        A known device presenting other identity keys marks the peer as changed and emits
        ``IdentityChanged``; new devices are pinned on first sight.
        """
        checked = self._directory_checked.get(account_id)
        known = self.store.peer_devices(account_id)
        fresh = checked is not None and time.monotonic() - checked < self.directory_max_age_s
        if known and fresh and not refresh:
            return self._recipients(account_id, known)
        listed = await self.api.directory(account_id)
        now = _now_ms()
        with self.store.transaction():
            for device in listed:
                pinned = known.get(device.device_id)
                current = PeerDevice(
                    account_id,
                    device.device_id,
                    device.registration_id,
                    device.curve25519,
                    device.ed25519,
                )
                if pinned is None:
                    self.store.put_peer_device(current, now)
                    if known:
                        self._emit(DeviceAdded(account_id, device.device_id))
                elif (pinned.curve25519, pinned.ed25519) != (device.curve25519, device.ed25519):
                    if self.store.trust(account_id) is not Trust.CHANGED:
                        self.store.set_trust(account_id, Trust.CHANGED, now)
                        self.store.withdraw_tick(account_id, str(TickState.IDENTITY_CHANGED))
                        log.warning(
                            "identity keys of a peer device changed",
                            account_id=account_id,
                            device_id=device.device_id,
                        )
                        self._emit(
                            IdentityChanged(
                                account_id, device.device_id, pinned.ed25519, device.ed25519
                            )
                        )
                elif pinned.registration_id != device.registration_id:
                    self.store.put_peer_device(current, now)
            listed_ids = {d.device_id for d in listed}
            for device_id in set(known) - listed_ids:
                self.store.forget_peer_device(account_id, device_id)
                self._sessions.pop((account_id, device_id), None)
        self._directory_checked[account_id] = time.monotonic()
        return self._recipients(account_id, self.store.peer_devices(account_id))

    def _recipients(self, account_id: str, devices: dict[int, PeerDevice]) -> list[PeerDevice]:
        if account_id == self.account_id:
            return [d for d in devices.values() if d.device_id != self.device_id]
        return list(devices.values())

    def trust_of(self, account_id: str) -> Trust:
        return self.store.trust(account_id)

    async def trust_identity(self, account_id: str, *, expect: str | None = None) -> None:
        """Accept a peer's current identity keys after comparing safety numbers.

        With ``expect`` (the safety number the two people compared), the keys are accepted
        only if they still give exactly that number, so a second swap in between is refused.
        """
        account_id = await self.resolve(account_id)
        if expect is not None:
            current = await self.safety_number(account_id)
            if " ".join(expect.split()) != current:
                raise IdentityNotTrusted(account_id)
        listed = await self.api.directory(account_id)
        now = _now_ms()
        with self.store.transaction():
            for device in listed:
                pinned = self.store.peer_devices(account_id).get(device.device_id)
                if pinned is not None and (pinned.curve25519, pinned.ed25519) != (
                    device.curve25519,
                    device.ed25519,
                ):
                    # Sessions with the old keys must not be used again.
                    self.store.drop_sessions(account_id, device.device_id)
                    self._sessions.pop((account_id, device.device_id), None)
                self.store.put_peer_device(
                    PeerDevice(
                        account_id,
                        device.device_id,
                        device.registration_id,
                        device.curve25519,
                        device.ed25519,
                    ),
                    now,
                )
            self.store.set_trust(account_id, Trust.TRUSTED, now)
        self._directory_checked[account_id] = time.monotonic()

    async def safety_number(self, peer: str) -> str:
        """60 digits both people see alike when no one is in between.

        Computed from the keys the relay presents now, so that a swapped key shows up as a
        difference when the two people compare, even before anyone trusted it.
        """
        identity = self._require_identity()
        account_id = await self.resolve(peer)
        await self._devices_of(account_id, refresh=True)
        mine = {d.ed25519 for d in await self.api.directory(self._require_account())}
        mine.add(identity.ed25519)
        theirs = {d.ed25519 for d in await self.api.directory(account_id)}
        their_phone = await self.phone_of(account_id)
        return safety_number(
            Party(self.phone or "", sorted(mine)), Party(their_phone or "", sorted(theirs))
        )

    # --- sessions ----------------------------------------------------------------------------

    def _session_list(self, account_id: str, device_id: int) -> list[OlmSession]:
        key = (account_id, device_id)
        if key not in self._sessions:
            self._sessions[key] = [
                OlmSession.from_pickle(pickle, self._key)
                for _, pickle in self.store.sessions(account_id, device_id)
            ]
        return self._sessions[key]

    def _keep_session(self, account_id: str, device_id: int, session: OlmSession) -> None:
        """Make ``session`` the one used next for that device, and store its new state."""
        self._promote(account_id, device_id, session)
        self._store_session(account_id, device_id, session)

    def _promote(self, account_id: str, device_id: int, session: OlmSession) -> None:
        sessions = self._session_list(account_id, device_id)
        if session in sessions:
            sessions.remove(session)
        sessions.insert(0, session)

    def _store_session(self, account_id: str, device_id: int, session: OlmSession) -> None:
        self.store.put_session(
            account_id, device_id, session.session_id, session.pickle(self._key), _now_ms()
        )

    async def _ensure_sessions(self, account_id: str, devices: list[PeerDevice]) -> None:
        identity = self._require_identity()
        without = [d for d in devices if not self._session_list(account_id, d.device_id)]
        if not without:
            return
        claimed = await self.api.claim(account_id, [d.device_id for d in without])
        pinned = {d.device_id: d for d in devices}
        for device in claimed:
            expected = pinned.get(device.device_id)
            if device.one_time_key is None or expected is None:
                continue
            key, is_fallback = device.one_time_key
            # The key must be signed by the identity we pinned, not merely by whoever answers.
            verify_signed_key(expected.ed25519, key, fallback=is_fallback)
            session = identity.create_outbound_session(expected.curve25519, key.public_key)
            self._keep_session(account_id, device.device_id, session)

    # --- sending -----------------------------------------------------------------------------

    async def send_text(
        self, to: str, text: str, *, reply_to: str | None = None, preview_url: bool = False
    ) -> SentMessage:
        """Send a text message. To a business, a text that is only STOP, STOPP or ABMELDEN
        (any case) also revokes marketing, and START or ANMELDEN opts in to it: signed here,
        confirmed by a ``ConsentChanged`` event and in ``SentMessage.consent``."""
        context = None if reply_to is None else ReplyContext(message_id=reply_to)
        sent = await self.send(to, Text(text=text, preview_url=preview_url, context=context))
        # After the text went out, so the business sees it whatever becomes of the change.
        changed = await self._keyword_consent(sent.chat, text)
        return sent if changed is None else dataclasses.replace(sent, consent=changed)

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
        account_id = await self.resolve(to)
        payload = self._received(account_id, message_id)
        if not isinstance(payload, Interactive):
            raise ValueError(f"message {message_id} is not an interactive message")
        choices = interactive_choices(payload)
        choice = next((c for c in choices if c.id == option_id), None)
        if choice is None:
            raise ValueError(
                f"“{option_id}” is not an option of message {message_id}; the options are "
                + ", ".join(f"{c.id} ({c.title})" for c in choices)
            )
        kind = ReplyKind.BUTTON_REPLY if payload.type == "button" else ReplyKind.LIST_REPLY
        reply = InteractiveReply(
            kind=kind,
            message_id=message_id,
            id=choice.id,
            title=choice.title,
            description=choice.description,
        )
        return await self.send(account_id, reply)

    async def tap_quick_reply(self, to: str, message_id: str, index: int) -> SentMessage:
        """Tap the QUICK_REPLY button ``index`` (its place among the template's buttons,
        from 0: its ``button:N``) of the template message ``message_id`` received from
        ``to``: sends a ``ButtonReply`` with the payload the business set for that button
        when it sent the message, else the button's text.

        Raises ``ValueError`` naming the quick replies if ``index`` is not one of them, or
        if the message is not a template message of this chat; ``TemplateRejected`` if its
        template cannot be checked now.
        """
        account_id = await self.resolve(to)
        payload = self._received(account_id, message_id)
        if not isinstance(payload, Template):
            raise ValueError(f"message {message_id} is not a template message")
        rendered = await self._rendered(payload, account_id)
        quick = quick_reply_choices(rendered)
        choice = next((c for c in quick if c.button_index == index), None)
        if choice is None:
            offered = ", ".join(f"{c.button_index} ({c.title})" for c in quick) or "none"
            raise ValueError(
                f"button {index} of message {message_id} is not a quick reply; its quick "
                f"replies are {offered}"
            )
        button = rendered.buttons[index]
        tap = ButtonReply(
            message_id=message_id, payload=button.payload or button.text, text=button.text
        )
        return await self.send(account_id, tap)

    async def choices(self, message_id: str) -> list[Choice]:
        """What the received message ``message_id`` offers to choose, numbered from 1: the
        buttons or list rows of an interactive message, the quick replies of a template
        message; none for other messages."""
        stored = self.store.message(message_id)
        if stored is None or stored.outgoing or stored.payload is None:
            return []
        try:
            payload = decode_payload(stored.payload)
        except ValueError:
            return []
        if isinstance(payload, Interactive):
            return interactive_choices(payload)
        if isinstance(payload, Template):
            return quick_reply_choices(await self._rendered(payload, stored.sender_account))
        return []

    async def choose(self, to: str, message_id: str, option: str) -> SentMessage:
        """Answer the message ``message_id`` from ``to`` with the option ``option`` names
        (its id, its number from 1, or its title): :meth:`answer` for an interactive
        message, :meth:`tap_quick_reply` for a template message. Raises ``ValueError``
        naming the choices."""
        account_id = await self.resolve(to)
        payload = self._received(account_id, message_id)
        if not isinstance(payload, Interactive | Template):
            raise ValueError(f"message {message_id} offers nothing to choose")
        choice = pick(await self.choices(message_id), option)
        if choice.button_index is not None:
            return await self.tap_quick_reply(account_id, message_id, choice.button_index)
        return await self.answer(account_id, message_id, choice.id)

    def _received(self, chat: str, message_id: str) -> Payload | Unsupported:
        """The payload of a message received in ``chat``; ``ValueError`` if there is none."""
        stored = self.store.message(message_id)
        if stored is None or stored.chat != chat or stored.outgoing or stored.payload is None:
            raise ValueError(f"no message {message_id} was received in this chat")
        return decode_payload(stored.payload)

    async def _rendered(self, payload: Template, sender: str) -> RenderedTemplate:
        template = await self.templates.template(int(payload.template_id))
        return check_template_message(template, payload, sender=sender, template_ref=None)

    async def typing(self, to: str, message_id: str) -> None:
        """Show ``to`` that this account is typing an answer to ``message_id``, for up to
        25 s or until the next message. Sent as class SYSTEM (from a business: inside the
        customer's window only, 131047 outside; no rate tokens, no price), never stored as
        a message, nothing to this account's other devices."""
        self._require_identity()
        account_id = await self.resolve(to)
        if account_id == self.account_id:
            raise RelayError(
                ErrorCode.RECIPIENT_IS_SENDER, "a chat needs someone else on the other side"
            )
        await self._deliver(
            account_id,
            encode_payload(Typing(message_id=message_id)),
            secrets.token_hex(16),
            wire.MessageClass.SYSTEM,
        )

    async def send_template(
        self,
        to: str,
        template_id: int | str,
        language: str,
        parameters: Parameters | None = None,
        *,
        components: list[dict[str, Any]] | None = None,
    ) -> SentMessage:
        """Send this business's approved template ``template_id`` in ``language``.

        ``parameters`` per component (``{"body": ["Anna", "4711"], "button:0": ["4711"]}``,
        a map of name to value for named placeholders; for a QUICK_REPLY button the payload
        its tap returns), or ``components`` as a Cloud API send gives them. The template is
        checked and rendered here first, as the recipient will: parameters that do not fit
        raise ``RelayError`` 132000 (with ``problems``), a template that is not this
        business's approved one in that language 132001.
        """
        self._require_identity()
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
        if template.business_account != self.account_id or template.language != language:
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
        rest, button_payloads = quick_reply_payloads(template, given)
        payload = Template(
            template_id=str(template.id),
            name=template.name,
            language=template.language,
            parameters=plain_parameters(rest),
            button_payloads=button_payloads,
        )
        return await self.send(
            to, payload, klass=wire.MessageClass.TEMPLATE, template_ref=str(template.id)
        )

    async def send(
        self,
        to: str,
        payload: Payload,
        *,
        klass: wire.MessageClass = wire.MessageClass.SESSION,
        template_ref: str | None = None,
    ) -> SentMessage:
        """Encrypt ``payload`` for every device of ``to`` (phone or account id) and send it.

        ``klass`` and ``template_ref`` are what the relay is told the send is (for a template
        message, :meth:`send_template` sets them); recipients check them against the content.

        The message is stored locally as sent, and a transcript goes to this account's other
        devices, so that every device shows the conversation.

        Raises ``IdentityNotTrusted`` while a peer's changed keys wait for the user,
        ``CryptoError`` when a claimed one-time key is not signed by the peer's pinned
        identity, and ``RelayError`` for the relay's rejections (with their codes).
        """
        self._require_identity()
        if isinstance(payload, Typing | SentTranscript | ReadReceipt):
            raise ValueError(f"a {payload.__struct_config__.tag} payload is not a chat message")
        account_id = await self.resolve(to)
        if account_id == self.account_id:
            raise RelayError(
                ErrorCode.RECIPIENT_IS_SENDER, "a chat needs someone else on the other side"
            )
        if self.store.trust(account_id) is Trust.CHANGED:
            raise IdentityNotTrusted(account_id)
        inner = encode_payload(payload)
        client_msg_id = secrets.token_hex(16)
        accepted = await self._deliver(account_id, inner, client_msg_id, klass, template_ref)
        assert accepted is not None
        assert self.account_id is not None
        assert self.device_id is not None
        self.store.put_message(
            StoredMessage(
                message_id=accepted.message_id,
                chat=account_id,
                outgoing=True,
                sender_account=self.account_id,
                sender_device=self.device_id,
                client_msg_id=client_msg_id,
                payload=inner,
                status=MessageStatus.SENT,
                server_ms=accepted.server_ms,
                error=None,
            )
        )
        self._apply_early_statuses(accepted.message_id)
        transcript = SentTranscript(
            to=account_id,
            message_id=accepted.message_id,
            client_msg_id=client_msg_id,
            server_ms=accepted.server_ms,
            payload=inner,
        )
        await self._deliver(
            self.account_id,
            encode_payload(transcript),
            secrets.token_hex(16),
            wire.MessageClass.SYSTEM,
        )
        return SentMessage(
            accepted.message_id,
            client_msg_id,
            account_id,
            accepted.server_ms,
            accepted.duplicate,
            pricing=accepted.pricing,
        )

    async def _deliver(
        self,
        account_id: str,
        plaintext: bytes,
        client_msg_id: str,
        klass: wire.MessageClass,
        template_ref: str | None = None,
    ) -> wire.Accepted | None:
        """Encrypt for each device and send; one retry after the device list changed."""
        for attempt in range(2):
            async with self._peer_locks[account_id]:
                devices = await self._devices_of(account_id, refresh=attempt > 0)
                if account_id != self.account_id and self.store.trust(account_id) is Trust.CHANGED:
                    raise IdentityNotTrusted(account_id)
                if not devices:
                    if account_id == self.account_id:
                        return None  # no other devices of our own to keep in sync
                    raise RelayError(ErrorCode.UNDELIVERABLE, "the recipient has no devices", {})
                await self._ensure_sessions(account_id, devices)
                copies = []
                for device in devices:
                    sessions = self._session_list(account_id, device.device_id)
                    if not sessions:
                        continue  # no key could be claimed; the relay names it as missing
                    session = sessions[0]
                    ciphertext = session.encrypt(plaintext)
                    self._keep_session(account_id, device.device_id, session)
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
                return await self._submit(frame)
            except RelayError as exc:
                if exc.code != ErrorCode.DEVICE_MISMATCH or attempt:
                    raise
                for device_id in [*exc.details.get("extra", []), *exc.details.get("stale", [])]:
                    self.store.drop_sessions(account_id, device_id)
                    self._sessions.pop((account_id, device_id), None)
        raise AssertionError("unreachable")

    async def _submit(self, frame: wire.Send) -> wire.Accepted:
        """Send over the live connection when there is one, else over HTTP.

        Both are idempotent on the client message id, so a send that was cut off can be
        repeated over the other path without being stored twice.
        """
        ws = self._ws
        if ws is not None:
            future: asyncio.Future[wire.Accepted] = asyncio.get_running_loop().create_future()
            self._pending[frame.client_msg_id] = future
            try:
                await ws.send(wire.encode(frame))
                return await asyncio.wait_for(asyncio.shield(future), 30)
            except (websockets.ConnectionClosed, TimeoutError):
                pass  # fall through to HTTP with the same client message id
            finally:
                self._pending.pop(frame.client_msg_id, None)
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

    async def mark_read(self, chat: str, message_ids: list[str] | None = None) -> int:
        """Mark received messages of ``chat`` read: the sender sees it, and so do our devices."""
        account_id = await self.resolve(chat)
        if message_ids is None:
            message_ids = [
                m.message_id
                for m in self.store.messages(account_id)
                if not m.outgoing and m.status is MessageStatus.RECEIVED
            ]
        unseen = self.store.unseen(message_ids)
        for start in range(0, len(unseen), 256):
            chunk = unseen[start : start + 256]
            await self.api.receipts(chunk)
            await self._deliver(
                self._require_account(),
                encode_payload(ReadReceipt(message_ids=chunk)),
                secrets.token_hex(16),
                wire.MessageClass.SYSTEM,
            )
            # Only now: a receipt that failed to go out is sent again next time.
            self.store.mark_seen(chunk)
        return len(unseen)

    def _require_account(self) -> str:
        if self.account_id is None:
            raise NotRegistered("register this client first")
        return self.account_id

    # --- receiving ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and keep receiving (reconnecting with backoff) until :meth:`close`."""
        self._require_identity()
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._receive_forever())

    async def events(self) -> AsyncIterator[Event]:
        while True:
            yield await self._events.get()

    async def next_event(self, within_s: float | None = None) -> Event:
        return await asyncio.wait_for(self._events.get(), within_s)

    async def wait_drained(self, within_s: float = 30) -> None:
        """Wait until the backlog the relay held at connection time is processed."""
        await asyncio.wait_for(self._drained.wait(), within_s)

    def _emit(self, event: Event) -> None:
        self._events.put_nowait(event)

    async def _receive_forever(self) -> None:
        backoff = 0.5
        ws_url = self.relay_url.replace("http", "ws", 1) + "/v1/ws"
        while not self._closing:
            reason = "closed"
            try:
                async with websockets.connect(
                    ws_url,
                    additional_headers={"Authorization": f"Bearer {self.api.token}"},
                    compression=None,
                    max_size=None,
                ) as ws:
                    self._ws = ws
                    backoff = 0.5
                    self._emit(Connected())
                    async for raw in ws:
                        if isinstance(raw, bytes):
                            await self._on_frame(ws, raw)
                    reason = f"closed by relay ({ws.close_code})"
                    if ws.close_code in (4401, 4409, 1008):
                        self._closing = True  # replaced, removed or logged out: stop
            except (OSError, websockets.WebSocketException) as exc:
                reason = type(exc).__name__
            finally:
                self._ws = None
                self._drained.clear()
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(websockets.ConnectionClosed(None, None))
            self._emit(Disconnected(reason))
            if self._closing:
                return
            await asyncio.sleep(backoff * (0.5 + secrets.randbelow(1000) / 1000))
            backoff = min(backoff * 2, RECONNECT_MAX_S)

    async def _on_frame(self, ws: ClientConnection, raw: bytes) -> None:
        try:
            frame = wire.decode_server_frame(raw)
        except (msgspec.DecodeError, RecursionError) as exc:
            # A frame of a newer protocol revision, or garbage: skipped, so one frame the
            # client cannot read never takes its connection (and every later message) down.
            log.warning("relay frame not understood", error=type(exc).__name__, size=len(raw))
            return
        if isinstance(frame, wire.MessageFrame):
            await self._on_message(frame)
            self._ack(ws, frame.id)
        elif isinstance(frame, wire.Delivered | wire.Read | wire.Failed):
            self._on_status(frame)
            self._ack(ws, frame.id)
        elif isinstance(frame, wire.Accepted):
            future = self._pending.get(frame.client_msg_id)
            if future is not None and not future.done():
                future.set_result(frame)
        elif isinstance(frame, wire.ErrorFrame):
            future = self._pending.get(frame.client_msg_id or "")
            if future is not None and not future.done():
                future.set_exception(RelayError(frame.code, frame.message, frame.details))
            else:
                log.warning("relay error", code=frame.code, message=frame.message)
        elif isinstance(frame, wire.Hello | wire.KeysLow):
            if isinstance(frame, wire.Hello):
                self._relay_offset_ms = frame.server_ms - self.clock.now_ms()
            if frame.one_time_keys < ONE_TIME_KEYS_TARGET // 5:
                asyncio.get_running_loop().create_task(self._replenish_quietly(frame.one_time_keys))
        elif isinstance(frame, wire.QueueEmpty):
            self._drained.set()
            self._emit(Drained())

    def _ack(self, ws: ClientConnection, envelope_id: int) -> None:
        """Acknowledge a stored envelope. The acks of every frame handled in one turn of the
        event loop go out together in one ``ack`` frame (fewer frames, and fewer operations
        in the relay's group commit, under load); an ack lost with the connection only means
        the relay sends the envelope again, which is recognized as stored."""
        self._acks.append(envelope_id)
        if len(self._acks) == 1:
            asyncio.get_running_loop().call_soon(self._flush_acks, ws)

    async def flush_acks(self) -> None:
        """Send the acks that wait for the end of this turn of the event loop now, and wait
        (up to 5 s) until every ack is written (``close`` does this first)."""
        if self._acks and self._ws is not None:
            self._flush_acks(self._ws)
        if self._ack_tasks:
            await asyncio.wait(set(self._ack_tasks), timeout=5)

    def _flush_acks(self, ws: ClientConnection) -> None:
        ids, self._acks = self._acks, []
        for start in range(0, len(ids), MAX_ACKS_PER_FRAME):
            frame = wire.encode(wire.Ack(ids=ids[start : start + MAX_ACKS_PER_FRAME]))
            task = asyncio.get_running_loop().create_task(self._send_quietly(ws, frame))
            self._ack_tasks.add(task)
            task.add_done_callback(self._ack_tasks.discard)

    async def _send_quietly(self, ws: ClientConnection, frame: bytes) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(frame)

    def _on_status(self, frame: _Report) -> None:
        if self._advance(frame):
            return
        if not self.store.has_message(frame.message_id):
            # The relay's report overtook the storing of the message: its ``accepted``
            # answer resolved ``send()``, but this loop read on before ``send()`` resumed
            # (or another device's transcript has not arrived yet). Kept until then.
            self._early.setdefault(frame.message_id, []).append(frame)
            while len(self._early) > EARLY_STATUSES_MAX:
                self._early.popitem(last=False)

    def _advance(self, frame: _Report) -> bool:
        """Move the stored message forward and tell the application; False if it is not
        stored (or already that far: a message delivered or read never becomes failed)."""
        failed = frame if isinstance(frame, wire.Failed) else None
        status = _REPORTED_STATUS[type(frame)]
        error = None if failed is None else failed.reason
        if not self.store.advance_status(frame.message_id, status, error=error):
            return False
        stored = self.store.message(frame.message_id)
        self._emit(
            StatusChanged(
                frame.message_id,
                stored.chat if stored else "",
                status,
                pricing=frame.pricing if isinstance(frame, wire.Delivered) else None,
                server_ms=frame.server_ms,
                error_code=None if failed is None else failed.code,
                error=error,
            )
        )
        return True

    def _apply_early_statuses(self, message_id: str) -> None:
        """Apply the reports on ``message_id`` that came before it was stored: delivered,
        then read, then failed (which then no longer applies)."""
        for frame in sorted(self._early.pop(message_id, ()), key=lambda f: _REPORT_ORDER[type(f)]):
            self._advance(frame)

    async def _replenish_quietly(self, stored: int) -> None:
        try:
            self._emit(KeysReplenished(await self._replenish(stored)))
        except (RelayError, httpx.HTTPError) as exc:
            log.warning("replenishing one-time keys failed", error=str(exc))

    async def _on_message(self, frame: wire.MessageFrame) -> None:
        if self.store.has_message(frame.message_id):
            return  # a redelivery: already stored, only the ack was lost
        if frame.sender != self.account_id and self.store.peer_phone(frame.sender) is None:
            # A first message from someone: learn the number and whether it is a business,
            # so that the chat is labelled from its first line.
            await self.phone_of(frame.sender)
        try:
            plaintext, session, inbound = await self._decrypt(frame)
        except CryptoError as exc:
            with self.store.transaction():
                self._reject(frame, str(exc) or type(exc).__name__)
            return
        refusal = self._class_verdict(frame, plaintext)
        template = None if refusal is not None else await self._template_verdict(frame, plaintext)
        if isinstance(template, TemplateRejected):
            report = REPORT_REASON if template.report else None
            refusal = _Refusal(template.kind, template.reason, report)
        # The new session state, the used-up one-time key and the message land together: a
        # crash before the ack then redelivers a message we already hold, never one whose
        # keys are gone.
        with self.store.transaction():
            self._store_session(frame.sender, frame.sender_device, session)
            if inbound:
                self._save_identity()
            try:
                payload = decode_payload(plaintext)
            except ValueError as exc:
                self._reject(frame, f"undecodable payload: {exc}")
                return
            if refusal is not None:
                self._record_incoming(frame, MessageStatus.FAILED, error=refusal.text)
            elif isinstance(template, RenderedTemplate) and isinstance(payload, Template):
                self._accept_template(frame, payload, template)
            elif isinstance(payload, Typing) or (
                frame.klass is wire.MessageClass.SYSTEM and isinstance(payload, Unsupported)
            ):
                # Nothing to show in the chat; kept only as handled (a redelivery is not
                # decrypted again).
                self._record_incoming(frame, MessageStatus.SEEN, chat="")
                if isinstance(payload, Typing) and frame.sender != self.account_id:
                    self._typing(frame, payload)
            else:
                self._accept(frame, payload, plaintext)
        if refusal is not None:
            await self._refuse(frame, refusal)

    def _class_verdict(self, frame: wire.MessageFrame, plaintext: bytes) -> _Refusal | None:
        """A message of class SYSTEM from another account must be a typing indicator: the
        relay lets those through without rate tokens or a price, so anything else sent
        under that class would slip past the rules (a newer client's system payload that
        this one does not know is left unshown, unreported)."""
        if frame.sender == self.account_id or frame.klass is not wire.MessageClass.SYSTEM:
            return None
        try:
            payload = decode_payload(plaintext)
        except ValueError:
            return None  # refused as undecodable with the rest
        if isinstance(payload, Typing | Unsupported):
            return None
        tag = payload.__struct_config__.tag
        return _Refusal(
            "class_mismatch",
            f"a message of class system carries a {tag} payload, not a typing indicator",
            CLASS_REPORT_REASON,
        )

    def _typing(self, frame: wire.MessageFrame, payload: Typing) -> None:
        # Shown for what is left of its 25 s by the relay's clock (an indicator drained
        # from the backlog long after is not shown at all).
        now = self.clock.now_ms()
        age = max(0, now + self._relay_offset_ms - frame.server_ms)
        if age < TYPING_MS:
            self._emit(TypingStarted(frame.sender, payload.message_id, now + TYPING_MS - age))

    async def _template_verdict(
        self, frame: wire.MessageFrame, plaintext: bytes
    ) -> RenderedTemplate | TemplateRejected | None:
        """For a template message from a peer (class TEMPLATE, or a ``Template`` payload):
        its rendering of the verified template, or why it is rejected; else ``None``."""
        if frame.sender == self.account_id:
            return None  # transcripts and receipts of our own devices
        try:
            payload = decode_payload(plaintext)
        except ValueError:
            return None  # refused as undecodable with the rest
        if frame.klass is not wire.MessageClass.TEMPLATE and not isinstance(payload, Template):
            return None
        try:
            # ``template_ref``: the template the relay accepted and bills the send as.
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
        self._record_incoming(frame, MessageStatus.RECEIVED, payload=encode_payload(payload))
        self._emit(
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
        self._emit(
            DecryptionFailed(frame.message_id, frame.sender, frame.sender_device, refusal.text)
        )

    async def _decrypt(self, frame: wire.MessageFrame) -> tuple[bytes, OlmSession, bool]:
        """Plaintext, the session that decrypted it, and whether that session is new."""
        identity = self._require_identity()
        message = Ciphertext(frame.type, frame.body)
        sender, device_id = frame.sender, frame.sender_device
        for session in self._session_list(sender, device_id):
            if message.type == 0 and not session.matches(message):
                continue
            try:
                plaintext = session.decrypt(message)
            except CryptoError:
                continue
            self._promote(sender, device_id, session)
            return plaintext, session, False
        if message.type != 0:
            raise CryptoError("no session can decrypt this message")
        device = self.store.peer_devices(sender).get(device_id)
        if device is None:
            await self._devices_of(sender, refresh=True)
            device = self.store.peer_devices(sender).get(device_id)
            if device is None:
                raise CryptoError("the sending device is not in the relay's directory")
        session, plaintext = identity.create_inbound_session(device.curve25519, message)
        self._promote(sender, device_id, session)
        return plaintext, session, True

    def _record_incoming(
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
        self._record_incoming(frame, MessageStatus.FAILED, error=reason)
        self._emit(DecryptionFailed(frame.message_id, frame.sender, frame.sender_device, reason))

    def _accept(self, frame: wire.MessageFrame, payload: Payload | Unsupported, raw: bytes) -> None:
        own = frame.sender == self.account_id
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
            # The relay message that carried the transcript is done with, too.
            self._record_incoming(frame, MessageStatus.SEEN, chat="")
            self._emit(
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
            self._apply_early_statuses(payload.message_id)
            return
        if own and isinstance(payload, ReadReceipt):
            self.store.mark_seen(list(payload.message_ids))
            self._record_incoming(frame, MessageStatus.SEEN, chat="")
            return
        self._record_incoming(frame, MessageStatus.RECEIVED, payload=raw)
        self._emit(
            MessageEvent(
                frame.message_id,
                frame.sender,
                False,
                frame.sender,
                frame.sender_device,
                payload,
                frame.server_ms,
            )
        )

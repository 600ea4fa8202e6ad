"""The operator's keys as this device trusts them, and the business tick decided with them.

``OperatorKeys`` pins the operator's key (from configuration, or on first use at
registration), follows its endorsed rotations and checks the signed revocation list.
``Businesses`` fetches business profiles and decides their tick on this device.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from typing import Any

import httpx

from tresen.client.api import RelayApi, RelayError
from tresen.client.business import (
    Business,
    BusinessProfile,
    BusinessSummary,
    Tick,
    TickState,
    judge,
)
from tresen.client.device import Device
from tresen.client.directory import Directory
from tresen.client.store import KnownBusiness, LocalStore, Trust
from tresen.client.transparency import KeyLogFailure
from tresen.core.clock import Clock
from tresen.core.errors import ErrorCode
from tresen.core.logging import get_logger
from tresen.crypto.certificates import (
    CertificateError,
    KeyRing,
    PublishedKey,
    RevocationList,
    RingUpdate,
    SignedCertificate,
    SignedRevocationList,
    UnknownOperatorKey,
    verify_revocations,
)

__all__ = ["REVOCATIONS_MAX_AGE_S", "Businesses", "OperatorKeyMismatch", "OperatorKeys"]

log = get_logger("tresen.client")

REVOCATIONS_MAX_AGE_S = 86_400
DIRECTORY_CHECKS = 4


class OperatorKeyMismatch(RuntimeError):
    """The configured operator key is not the one this client pinned before."""


class OperatorKeys:
    def __init__(
        self, api: RelayApi, store: LocalStore, clock: Clock, revocations_max_age_s: int
    ) -> None:
        self.api = api
        self.store = store
        self.clock = clock
        self.revocations_max_age_s = revocations_max_age_s
        ring = store.get_meta("operator_ring")
        self.ring: KeyRing | None = None if ring is None else KeyRing.from_json(json.loads(ring))

    @property
    def fingerprint(self) -> str | None:
        return None if self.ring is None else self.ring.fingerprint()

    def pin(self, public_key: str) -> None:
        """Pin the operator's Ed25519 public key (unpadded base64) from configuration.

        Pinning the key that is pinned already keeps what was learned since; another key
        than the pinned one is refused (:class:`OperatorKeyMismatch`): a client that changes
        operators starts from a new data folder.
        """
        ring = KeyRing(public_key.strip())
        if self.ring is not None:
            if self.ring.pinned_key_id == ring.pinned_key_id:
                return
            raise OperatorKeyMismatch(
                f"this client pinned operator key {self.ring.fingerprint()}, "
                f"not {ring.fingerprint()}"
            )
        self._set_ring(ring)

    async def learn(self) -> None:
        """At registration: trust on first use the key the relay names as current (its
        fingerprint shown to the user to compare with the operator's), unless one is pinned."""
        published = await self.api.operator_keys()
        if self.ring is None:
            current = next(
                k for k in published["keys"] if k["key_id"] == published["current_key_id"]
            )
            self._set_ring(KeyRing(str(current["public_key"])))
        self._follow(published)

    def _set_ring(self, ring: KeyRing) -> None:
        self.ring = ring
        self.store.set_meta("operator_ring", json.dumps(ring.to_json()).encode())

    def _follow(self, published: dict[str, Any]) -> RingUpdate:
        ring = self.ring
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

    async def refresh(self) -> RingUpdate:
        """Follow the operator's key rotations: keys endorsed by a trusted key join the ring."""
        return self._follow(await self.api.operator_keys())

    async def revoked_serials(self) -> set[int] | None:
        """The serials on a fresh, operator-signed revocation list; ``None`` if there is none."""
        if self.ring is None:
            return None
        try:
            signed = SignedRevocationList.from_json(await self.api.revoked_certificates())
            try:
                listing = self._check_revocations(signed)
            except UnknownOperatorKey:
                await self.refresh()  # signed by a key rotated in since
                listing = self._check_revocations(signed)
        except (CertificateError, RelayError, httpx.HTTPError) as exc:
            log.warning("revocation list not usable", error=str(exc))
            return None
        return set(listing.serials)

    def _check_revocations(self, signed: SignedRevocationList) -> RevocationList:
        assert self.ring is not None
        max_age_ms = self.revocations_max_age_s * 1000
        return verify_revocations(signed, self.ring, self.clock.now_ms(), max_age_ms)


class Businesses:
    """Business profiles and their tick, decided here against the operator's keys."""

    def __init__(
        self,
        api: RelayApi,
        store: LocalStore,
        clock: Clock,
        device: Device,
        directory: Directory,
        operator: OperatorKeys,
    ) -> None:
        self.api = api
        self.store = store
        self.clock = clock
        self.device = device
        self.directory = directory
        self.operator = operator
        self._logged_certificates: set[tuple[int, bytes]] = set()

    def known(self, account_id: str) -> KnownBusiness | None:
        return self.store.known_business(account_id)

    async def business(self, peer: str) -> Business:
        account_id = await self.directory.resolve(peer)
        try:
            profile = BusinessProfile.from_json(await self.api.business(account_id))
        except RelayError as exc:
            if exc.code == ErrorCode.UNDELIVERABLE and self.known(account_id) is not None:
                # Suspended or gone: the chat stays labelled, the tick goes.
                self.store.withdraw_tick(account_id, str(TickState.NOT_VERIFIED))
            raise
        phone = await self.directory.phone_of(account_id) or ""
        tick = await self._judge(profile, phone, await self.operator.revoked_serials())
        now = self.clock.now_ms()
        self.store.put_business(
            account_id, profile.display_name, str(tick.state), profile.to_json(), now
        )
        return Business(profile, phone, tick, now)

    async def _judge(self, profile: BusinessProfile, phone: str, revoked: set[int] | None) -> Tick:
        ring = self.operator.ring
        keys: list[str] = []
        changed = False
        if profile.certificate is not None and ring is not None:
            key_id = profile.certificate_key_id
            if key_id is not None and key_id not in ring:
                with contextlib.suppress(RelayError, httpx.HTTPError):
                    await self.operator.refresh()
            devices = await self.directory.devices_of(profile.account_id, refresh=True)
            keys = [d.ed25519 for d in devices]
            if profile.account_id == self.device.account_id:
                keys.append(self.device.require_identity().ed25519)
            changed = self.store.trust(profile.account_id) is not Trust.TRUSTED
        tick = judge(
            profile.certificate,
            self.operator.ring,
            self.clock.now_ms(),
            revoked=revoked,
            account_id=profile.account_id,
            phone=phone,
            display_name=profile.display_name,
            device_keys=keys,
            identity_changed=changed,
        )
        if tick.verified and tick.serial is not None:
            return await self._logged(profile, tick, tick.serial)
        return tick

    async def _logged(self, profile: BusinessProfile, tick: Tick, serial: int) -> Tick:
        """``tick`` if the certificate is in the key log, where the business and auditors see
        every certificate the operator issued (docs/architecture.md, "Key transparency")."""
        body = SignedCertificate.from_json(profile.certificate).body
        seen = (serial, hashlib.sha256(body).digest())
        if seen in self._logged_certificates:
            return tick  # the log only grows: once logged, logged for good
        try:
            asked_at = self.directory.keylog.epoch
            proof = await self.api.certificate_in_log(serial)
            await self.directory.keylog.check_certificate(
                profile.account_id, serial, body, proof, asked_at=asked_at
            )
        except RelayError as exc:
            if exc.code != ErrorCode.NOT_FOUND_IN_LOG:
                return Tick(TickState.NOT_LOGGED, f"not checked: {exc.message}", serial=serial)
            failure = KeyLogFailure(f"certificate {serial} is not in the key log")
            self.directory.distrust(profile.account_id, failure)
            return Tick(TickState.NOT_LOGGED, str(failure), serial=serial)
        except httpx.HTTPError as exc:
            return Tick(TickState.NOT_LOGGED, f"not checked: {exc}", serial=serial)
        except KeyLogFailure as exc:
            self.directory.distrust(profile.account_id, exc)
            return Tick(TickState.NOT_LOGGED, str(exc), serial=serial)
        if proof is not None:
            self._logged_certificates.add(seen)
        return tick

    async def find(self, query: str, category: str | None, limit: int) -> list[BusinessSummary]:
        hits = await self.api.search_businesses(query, category, limit)
        revoked = await self.operator.revoked_serials() if hits else None
        checks = asyncio.Semaphore(DIRECTORY_CHECKS)

        async def summarize(hit: dict[str, Any]) -> BusinessSummary:
            account_id = str(hit["account_id"])
            self.store.mark_business(account_id)
            tick = Tick(TickState.NOT_VERIFIED)
            if hit.get("verification") == "verified":
                async with checks:
                    with contextlib.suppress(RelayError):
                        profile = BusinessProfile.from_json(await self.api.business(account_id))
                        phone = await self.directory.phone_of(account_id) or ""
                        tick = await self._judge(profile, phone, revoked)
            return BusinessSummary(
                account_id,
                str(hit["display_name"]),
                str(hit.get("about", "")),
                str(hit.get("category", "")),
                tick,
            )

        return list(await asyncio.gather(*(summarize(h) for h in hits)))

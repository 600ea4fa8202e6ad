"""Peers: numbers and accounts, their devices as the relay lists them, and trust in them.

A peer's devices are pinned on first sight, and only once the relay's key log vouches for
them (:mod:`tresen.client.transparency`). A known device that later presents other identity
keys marks the peer as changed, keys the key log does not vouch for mark it
``key_transparency``: either way, sending to it waits until the user compared safety numbers
and trusted the keys (``IdentityNotTrusted``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from tresen.client.api import DirectoryDevice, RelayApi, RelayError
from tresen.client.business import TickState
from tresen.client.device import Device
from tresen.client.events import DeviceAdded, Event, IdentityChanged, KeyTransparencyFailed
from tresen.client.sessions import Sessions
from tresen.client.store import LocalStore, PeerDevice, Trust
from tresen.client.transparency import KeyLog, KeyLogFailure
from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.crypto import CryptoError
from tresen.crypto.safety import Party, safety_number

__all__ = ["PREPARE_MAX", "Directory", "IdentityNotTrusted"]

PREPARE_MAX = 64
"""Peers whose keys one :meth:`Directory.prepare` claims in one request (the relay's bound)."""

log = get_logger("tresen.client")


class IdentityNotTrusted(RuntimeError):
    """Sending to a peer whose identity keys changed, or whose keys the relay's key log does
    not vouch for (``reason`` ``key_transparency``), waits for ``Client.trust_identity``."""

    def __init__(self, account_id: str, reason: Trust = Trust.CHANGED) -> None:
        if reason is Trust.KEY_TRANSPARENCY:
            text = (
                f"the relay's key log does not vouch for the keys of {account_id}; "
                "compare safety numbers, then trust"
            )
        else:
            text = f"the identity keys of {account_id} changed; compare safety numbers, then trust"
        super().__init__(text)
        self.account_id = account_id
        self.reason = reason


class Directory:
    def __init__(
        self,
        api: RelayApi,
        store: LocalStore,
        clock: Clock,
        me: Device,
        sessions: Sessions,
        keylog: KeyLog,
        emit: Callable[[Event], None],
        *,
        max_age_s: float = 60.0,
    ) -> None:
        self.api = api
        self.store = store
        self.clock = clock
        self.me = me
        self.sessions = sessions
        self.keylog = keylog
        self.emit = emit
        self.max_age_s = max_age_s
        self._checked_ms: dict[str, int] = {}

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
            self.store.remember_peer(found["account_id"], found["phone"], self.clock.now_ms())
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
                self.store.remember_peer(account_id, phone, self.clock.now_ms())
        return phone

    async def devices_of(self, account_id: str, *, refresh: bool = False) -> list[PeerDevice]:
        """The peer's devices that receive our messages, checked against what we pinned.

        A known device presenting other identity keys marks the peer as changed and emits
        ``IdentityChanged``; new devices are pinned on first sight.
        """
        checked = self._checked_ms.get(account_id)
        known = self.store.peer_devices(account_id)
        now = self.clock.now_ms()
        fresh = checked is not None and now - checked < self.max_age_s * 1000
        if known and fresh and not refresh:
            return self._recipients(account_id, known)
        asked_at = self.keylog.epoch
        listed, proof = await self.api.directory_with_proof(account_id, self.keylog.since)
        try:
            await self.keylog.check(
                account_id, listed, proof, own=self._own(account_id), asked_at=asked_at
            )
        except KeyLogFailure as exc:
            # Nothing the log does not vouch for is pinned; what was pinned stays, unused
            # for sending until the user trusts the keys again.
            self.distrust(account_id, exc)
            self._checked_ms[account_id] = self.clock.now_ms()
            return self._recipients(account_id, known)
        with self.store.transaction():
            self._learn(account_id, known, listed, now)
        self._checked_ms[account_id] = self.clock.now_ms()
        return self._recipients(account_id, self.store.peer_devices(account_id))

    def _own(self, account_id: str) -> tuple[int, str, str] | None:
        """This device as the key log must list it, when ``account_id`` is our own."""
        identity = self.me.identity
        if account_id != self.me.account_id or identity is None or self.me.device_id is None:
            return None
        return (self.me.device_id, identity.curve25519, identity.ed25519)

    def distrust(self, account_id: str, failure: KeyLogFailure) -> None:
        """Stop sending to ``account_id`` (and, when the log forked, to every peer) until the
        user trusts their keys again."""
        now = self.clock.now_ms()
        concerned = [account_id]
        if failure.forked:
            concerned += [a for a in self.store.peers_with_devices() if a != account_id]
        log.warning(
            "key log does not vouch for keys",
            account_id=account_id,
            forked=failure.forked,
            reason=str(failure),
        )
        with self.store.transaction():
            for peer in concerned:
                if peer == self.me.account_id:
                    continue
                self.store.set_trust(peer, Trust.KEY_TRANSPARENCY, now)
                self.store.withdraw_tick(peer, str(TickState.IDENTITY_CHANGED))
        self.emit(KeyTransparencyFailed(account_id, str(failure), forked=failure.forked))

    def _learn(
        self,
        account_id: str,
        known: dict[int, PeerDevice],
        listed: Sequence[DirectoryDevice],
        now: int,
    ) -> None:
        """Pin what the relay lists: new devices on first sight, a known device with other
        identity keys marks the peer as changed, devices no longer listed are forgotten."""
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
                    self.emit(DeviceAdded(account_id, device.device_id))
            elif (pinned.curve25519, pinned.ed25519) != (device.curve25519, device.ed25519):
                if self.store.trust(account_id) is not Trust.CHANGED:
                    self.store.set_trust(account_id, Trust.CHANGED, now)
                    self.store.withdraw_tick(account_id, str(TickState.IDENTITY_CHANGED))
                    log.warning(
                        "identity keys of a peer device changed",
                        account_id=account_id,
                        device_id=device.device_id,
                    )
                    self.emit(
                        IdentityChanged(
                            account_id, device.device_id, pinned.ed25519, device.ed25519
                        )
                    )
            elif pinned.registration_id != device.registration_id:
                self.store.put_peer_device(current, now)
        listed_ids = {d.device_id for d in listed}
        for device_id in set(known) - listed_ids:
            self.store.forget_peer_device(account_id, device_id)
            self.sessions.forget(account_id, device_id)

    async def prepare(self, account_ids: Sequence[str]) -> list[str]:
        """Pin the devices of peers never seen before and start a session with each of them,
        up to :data:`PREPARE_MAX` peers in one request to the relay (a business about to
        write to many new customers); the accounts that do not exist. Peers known already
        are left to :meth:`devices_of` and the sessions' own checks."""
        new = [
            a
            for a in dict.fromkeys(account_ids)
            if a != self.me.account_id and not self.store.peer_devices(a)
        ][:PREPARE_MAX]
        if not new:
            return []
        asked_at = self.keylog.epoch
        claimed, unknown, proofs = await self.api.claim_many(
            new, transparency_since=self.keylog.since
        )
        vouched = {}
        for account_id, devices in claimed.items():
            try:
                await self.keylog.check(
                    account_id, devices, proofs.get(account_id), asked_at=asked_at
                )
            except KeyLogFailure as exc:
                self.distrust(account_id, exc)
                continue
            vouched[account_id] = devices
        now = self.clock.now_ms()
        with self.store.transaction():
            for account_id, devices in vouched.items():
                self._learn(account_id, {}, devices, now)
                self._checked_ms[account_id] = now
                pinned = list(self.store.peer_devices(account_id).values())
                try:
                    self.sessions.start_from(account_id, pinned, devices)
                except CryptoError as exc:
                    # A key not signed by the device's identity: left to the usual claim.
                    log.warning(
                        "claimed key refused", account_id=account_id, error=type(exc).__name__
                    )
        return unknown

    async def device(self, account_id: str, device_id: int) -> PeerDevice | None:
        """One pinned device of a peer, asking the relay if it is not known yet."""
        device = self.store.peer_devices(account_id).get(device_id)
        if device is None:
            await self.devices_of(account_id, refresh=True)
            device = self.store.peer_devices(account_id).get(device_id)
        return device

    def _recipients(self, account_id: str, devices: dict[int, PeerDevice]) -> list[PeerDevice]:
        if account_id == self.me.account_id:
            return [d for d in devices.values() if d.device_id != self.me.device_id]
        return list(devices.values())

    def trust_of(self, account_id: str) -> Trust:
        return self.store.trust(account_id)

    async def trust_identity(self, account_id: str, *, expect: str | None = None) -> None:
        account_id = await self.resolve(account_id)
        if expect is not None:
            current = await self.safety_number(account_id)
            if " ".join(expect.split()) != current:
                raise IdentityNotTrusted(account_id)
        listed = await self.api.directory(account_id)
        now = self.clock.now_ms()
        with self.store.transaction():
            for device in listed:
                pinned = self.store.peer_devices(account_id).get(device.device_id)
                if pinned is not None and (pinned.curve25519, pinned.ed25519) != (
                    device.curve25519,
                    device.ed25519,
                ):
                    # Sessions with the old keys must not be used again.
                    self.sessions.forget(account_id, device.device_id)
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
        self._checked_ms[account_id] = self.clock.now_ms()

    async def safety_number(self, peer: str) -> str:
        identity = self.me.require_identity()
        account_id = await self.resolve(peer)
        await self.devices_of(account_id, refresh=True)
        mine = {d.ed25519 for d in await self.api.directory(self.me.require_account())}
        mine.add(identity.ed25519)
        theirs = {d.ed25519 for d in await self.api.directory(account_id)}
        their_phone = await self.phone_of(account_id)
        return safety_number(
            Party(self.me.phone or "", sorted(mine)), Party(their_phone or "", sorted(theirs))
        )

"""This device: the account it belongs to, its Olm identity, and its published keys.

``Device`` is the state every part of the client reads (who am I, with which keys);
``DeviceKeys`` keeps the relay's stock of this device's one-time keys topped up.
"""

from __future__ import annotations

from dataclasses import dataclass

from tresen.client.api import RelayApi
from tresen.client.consent import Signer
from tresen.client.store import LocalStore
from tresen.core.logging import get_logger
from tresen.crypto.olm import DeviceIdentity

__all__ = ["ONE_TIME_KEYS_TARGET", "Device", "DeviceKeys", "NotRegistered"]

log = get_logger("tresen.client")

ONE_TIME_KEYS_TARGET = 50


class NotRegistered(RuntimeError):
    pass


@dataclass
class Device:
    """Who this client is: set at registration, read from the store when it opens."""

    store: LocalStore
    key: bytes
    account_id: str | None = None
    device_id: int | None = None
    phone: str | None = None
    identity: DeviceIdentity | None = None

    @classmethod
    def load(cls, store: LocalStore, key: bytes) -> Device:
        device = cls(store, key)
        account = store.get_meta("account_id")
        if account is None:
            return device
        device.account_id = account.decode()
        device.device_id = int((store.get_meta("device_id") or b"0").decode())
        device.phone = (store.get_meta("phone") or b"").decode() or None
        pickle = store.get_meta("identity")
        if pickle is not None:
            device.identity = DeviceIdentity.from_pickle(pickle.decode(), key)
        return device

    @property
    def registered(self) -> bool:
        return self.account_id is not None and self.identity is not None

    def require_identity(self) -> DeviceIdentity:
        if self.identity is None or self.account_id is None:
            raise NotRegistered("register this client first")
        return self.identity

    def require_account(self) -> str:
        if self.account_id is None:
            raise NotRegistered("register this client first")
        return self.account_id

    def require_device_id(self) -> int:
        if self.device_id is None:
            raise NotRegistered("register this client first")
        return self.device_id

    def save_identity(self) -> None:
        identity = self.require_identity()
        self.store.set_meta("identity", identity.pickle(self.key).encode())

    def signer(self) -> Signer:
        """What signs this account's consent records."""
        return Signer(
            self.require_account(),
            self.require_device_id(),
            self.phone or "",
            self.require_identity(),
        )

    def forget(self) -> None:
        """Drop a half-finished registration (nothing of it was stored)."""
        self.account_id = self.device_id = self.phone = self.identity = None

    def save_registration(self, token: str) -> None:
        account_id, device_id = self.require_account(), self.require_device_id()
        with self.store.transaction():
            self.store.set_meta("account_id", account_id.encode())
            self.store.set_meta("device_id", str(device_id).encode())
            self.store.set_meta("phone", (self.phone or "").encode())
            self.store.set_secret("token", token.encode())
            self.save_identity()


class DeviceKeys:
    """Publishes this device's identity and one-time keys."""

    def __init__(self, api: RelayApi, device: Device) -> None:
        self.api = api
        self.device = device

    async def publish(self, *, identity_keys: bool = False, fallback: bool = False) -> int:
        identity = self.device.require_identity()
        count = (
            await self.api.upload_keys(
                identity=(identity.curve25519, identity.ed25519) if identity_keys else None
            )
        )["one_time_keys"]
        return await self.replenish(count, fallback=fallback)

    async def replenish(self, stored: int, *, fallback: bool = False) -> int:
        """Top the relay's stock of this device's one-time keys back up."""
        identity = self.device.require_identity()
        missing = ONE_TIME_KEYS_TARGET - stored
        keys = identity.generate_one_time_keys(missing) if missing > 0 else []
        fallback_key = identity.generate_fallback_key() if fallback else None
        if not keys and fallback_key is None:
            return stored
        result = await self.api.upload_keys(one_time_keys=keys, fallback_key=fallback_key)
        identity.mark_published()
        self.device.save_identity()
        log.debug("one-time keys published", count=len(keys))
        return int(result["one_time_keys"])

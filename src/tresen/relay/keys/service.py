"""Key directory rules: signature checks, the one-time-key cap and atomic one-time-key claims.

Every device publishes its identity keys (Curve25519 and Ed25519), up to
``limits.max_one_time_keys`` (50) signed one-time keys and one signed fallback key. All keys
travel as unpadded standard base64, exactly as vodozemac's ``to_base64()`` writes them; the
relay accepts only that canonical form, so a key has one spelling everywhere.

Signed messages. Each one-time or fallback key is signed with the device's Ed25519 identity
key over these bytes (``\\x00`` is a zero byte, ``key_id`` and ``public_key`` UTF-8):

- one-time key: ``b"tresen-otk-v1\\x00" + key_id + b"\\x00" + public_key``
- fallback key: ``b"tresen-fallback-v1\\x00" + key_id + b"\\x00" + public_key``

where ``public_key`` is the base64 text of the Curve25519 key. The distinct prefixes keep a
one-time-key signature from being replayed as a fallback-key signature and vice versa.
:func:`one_time_key_message` and :func:`fallback_key_message` build these bytes.

Rules:

- The first upload of identity keys sets them. Different identity keys for the same device
  replace them, give the device a new ``registration_id`` and delete its stored one-time and
  fallback keys, which belonged to the old identity.
- The relay never holds more than ``max_one_time_keys`` one-time keys per device; vodozemac
  keeps at most 50 private one-time keys and silently drops the oldest beyond that, so a
  larger store would hand out keys whose private half is gone. An upload that would exceed the
  cap is rejected whole. Re-uploading a stored ``key_id`` with the same key is a no-op.
- A claim takes one one-time key per device of the target account (the oldest first) and
  deletes it in the same statement, so two claims never receive the same key. A device with
  no one-time key left hands out its fallback key, which stays stored; a device with neither
  is listed without a key. The claiming device itself is never included: a device needs no
  session with itself, and claiming would waste one of its keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import vodozemac
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.ids import AccountId, DeviceId, DevicePk, new_registration_id
from tresen.core.logging import get_logger
from tresen.core.settings import Limits
from tresen.relay.accounts.service import AccountKeysChanged, Principal
from tresen.relay.keys import repo
from tresen.relay.keys.repo import DeviceKeys, IdentityKeys, SignedKey
from tresen.relay.transparency.repo import queue_devices_change
from tresen.wire.keys import fallback_key_message, one_time_key_message

__all__ = [
    "ClaimedDevice",
    "ClaimedKey",
    "DeviceKeys",
    "IdentityKeys",
    "KeyService",
    "KeyUpload",
    "SignedKey",
    "UploadResult",
    "fallback_key_message",
    "one_time_key_message",
]

log = get_logger("tresen.relay.keys")


@dataclass(frozen=True, slots=True)
class KeyUpload:
    """What one ``PUT /v1/keys`` carries; every part is optional."""

    identity_keys: IdentityKeys | None = None
    one_time_keys: Sequence[SignedKey] = field(default_factory=tuple)
    fallback_key: SignedKey | None = None


@dataclass(frozen=True, slots=True)
class UploadResult:
    one_time_keys: int
    registration_id: int


@dataclass(frozen=True, slots=True)
class ClaimedKey:
    key: SignedKey
    fallback: bool


@dataclass(frozen=True, slots=True)
class ClaimedDevice:
    device: DeviceKeys
    one_time_key: ClaimedKey | None


class KeysLow(Protocol):
    """Told, after commit, that a claim left ``device_pk`` with ``remaining`` one-time keys
    (fewer than ``limits.one_time_keys_low``), so the device can upload more."""

    def __call__(self, device_pk: DevicePk, remaining: int, /) -> object: ...


class KeyService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        limits: Limits,
        *,
        on_keys_low: KeysLow,
        on_identity_keys_changed: AccountKeysChanged,
    ) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        self.on_keys_low = on_keys_low
        # A new device or a replaced identity: a certificate binding the old set is void.
        self.on_identity_keys_changed = on_identity_keys_changed

    # --- upload ------------------------------------------------------------------------------

    async def upload_keys(self, principal: Principal, upload: KeyUpload) -> UploadResult:
        """Verify and store the caller's identity, one-time and fallback keys (all or none)."""
        if upload.identity_keys is not None:
            _check_identity_keys(upload.identity_keys)
        fresh = _distinct_one_time_keys(upload.one_time_keys)
        for key in fresh:
            _check_signed_key(key, "one_time_keys")
        if upload.fallback_key is not None:
            _check_signed_key(upload.fallback_key, "fallback_key")
        signed = bool(fresh) or upload.fallback_key is not None

        # Verify signatures before taking the write lock: it is the expensive part, and on
        # SQLite every writer of the process waits while a write transaction is open.
        verified_with: str | None = None
        if signed:
            async with self.db.read() as conn:
                current = await repo.device_identity(conn, principal.device_pk)
                stored_count = await repo.count_one_time_keys(conn, principal.device_pk)
            identity = upload.identity_keys or (current.identity if current else None)
            if identity is None:
                raise _identity_keys_missing()
            # More distinct keys than the cap can never fit (any of them already stored count
            # against the cap too), so refuse before spending time on signatures.
            if len(fresh) > self.limits.max_one_time_keys:
                raise self._too_many(stored_count, len(fresh))
            self._verify_signatures(identity.ed25519, fresh, upload.fallback_key)
            verified_with = identity.ed25519

        identity_changed = False
        identity_set = False
        async with self.db.write() as conn:
            device = await repo.device_identity(conn, principal.device_pk, for_update=True)
            if device is None:
                raise TresenError(ErrorCode.INVALID_TOKEN, "this device no longer exists")
            registration_id = device.registration_id
            identity = device.identity
            if upload.identity_keys is not None and upload.identity_keys != identity:
                if identity is not None:
                    # New identity: old one-time and fallback keys are useless to senders, and
                    # a new registration id tells them their sessions with this device are stale.
                    identity_changed = True
                    registration_id = new_registration_id()
                    await repo.delete_device_keys(conn, principal.device_pk)
                identity = upload.identity_keys
                identity_set = True
                await repo.set_identity_keys(conn, principal.device_pk, identity, registration_id)
                # The account's device set changed: the key log records it in the next epoch.
                await queue_devices_change(conn, principal.account_id, self.clock.now_ms())
            if signed and identity is None:
                raise _identity_keys_missing()
            if signed and identity is not None and identity.ed25519 != verified_with:
                # The identity changed between the check above and this transaction.
                self._verify_signatures(identity.ed25519, fresh, upload.fallback_key)

            stored = await repo.stored_one_time_keys(
                conn, principal.device_pk, (k.key_id for k in fresh)
            )
            for key in fresh:
                if key.key_id in stored and stored[key.key_id] != key.public_key:
                    raise TresenError(
                        ErrorCode.INVALID_PARAMETER,
                        "a different one-time key is already stored under this key_id",
                        field="one_time_keys.key_id",
                        key_id=key.key_id,
                    )
            new = [k for k in fresh if k.key_id not in stored]
            count = await repo.count_one_time_keys(conn, principal.device_pk)
            if count + len(new) > self.limits.max_one_time_keys:
                raise self._too_many(count, len(new))
            await repo.insert_one_time_keys(conn, principal.device_pk, new)
            if upload.fallback_key is not None:
                await repo.put_fallback_key(
                    conn, principal.device_pk, upload.fallback_key, self.clock.now_ms()
                )
            count += len(new)

        if identity_set:
            await self.on_identity_keys_changed(principal.account_id)
        log.info(
            "keys uploaded",
            account_id=principal.account_id,
            device_id=principal.device_id,
            one_time_keys_added=len(new),
            one_time_keys=count,
            fallback_key=upload.fallback_key is not None,
            identity_changed=identity_changed,
        )
        return UploadResult(one_time_keys=count, registration_id=registration_id)

    def _too_many(self, stored: int, uploaded: int) -> TresenError:
        return TresenError(
            ErrorCode.TOO_MANY_ONE_TIME_KEYS,
            f"the relay holds at most {self.limits.max_one_time_keys} one-time keys per device",
            stored=stored,
            uploaded=uploaded,
            max=self.limits.max_one_time_keys,
        )

    @staticmethod
    def _verify_signatures(
        ed25519: str, one_time_keys: Sequence[SignedKey], fallback_key: SignedKey | None
    ) -> None:
        signer = vodozemac.Ed25519PublicKey.from_base64(ed25519)
        checks = [(k, one_time_key_message(k.key_id, k.public_key)) for k in one_time_keys]
        if fallback_key is not None:
            checks.append(
                (fallback_key, fallback_key_message(fallback_key.key_id, fallback_key.public_key))
            )
        for key, message in checks:
            try:
                signer.verify_signature(
                    message, vodozemac.Ed25519Signature.from_base64(key.signature)
                )
            except ValueError:
                raise TresenError(
                    ErrorCode.BAD_KEY_SIGNATURE,
                    "key signature does not verify with the device's Ed25519 identity key",
                    field="fallback_key" if key is fallback_key else "one_time_keys",
                    key_id=key.key_id,
                ) from None

    # --- directory and claims ----------------------------------------------------------------

    async def one_time_key_count(self, device_pk: DevicePk) -> int:
        """How many one-time keys the relay still holds for this device."""
        async with self.db.read() as conn:
            return await repo.count_one_time_keys(conn, device_pk)

    async def device_directory(self, account_id: AccountId) -> list[DeviceKeys]:
        """The account's devices that have identity keys, by device id.

        Raises ``UNDELIVERABLE`` (131026) for an unknown account.
        """
        async with self.db.read() as conn:
            if not await repo.account_exists(conn, account_id):
                raise _unknown_account(account_id)
            return await repo.device_directory(conn, account_id)

    async def claim_keys(
        self,
        principal: Principal,
        account_id: AccountId,
        device_ids: Sequence[DeviceId] | None = None,
    ) -> list[ClaimedDevice]:
        """Take one one-time key (else the fallback key) per device of ``account_id``.

        ``device_ids`` restricts the claim to those devices; naming a device that does not
        exist or has no identity keys is ``UNKNOWN_DEVICE``.
        """
        if (
            device_ids is not None
            and account_id == principal.account_id
            and principal.device_id in device_ids
        ):
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "a device does not claim its own keys",
                field="device_ids",
                device_id=principal.device_id,
            )
        low: list[tuple[DevicePk, int]] = []
        async with self.db.write() as conn:
            claimed = await self._claim_in(conn, principal, account_id, device_ids, low)
            if claimed is None:
                raise _unknown_account(account_id)
        log.info(
            "keys claimed",
            account_id=principal.account_id,
            device_id=principal.device_id,
            devices=len(claimed),
            fallback=sum(1 for c in claimed if c.one_time_key and c.one_time_key.fallback),
            missing=sum(1 for c in claimed if c.one_time_key is None),
        )
        self._notify_low(low)
        return claimed

    async def claim_many(
        self, principal: Principal, account_ids: Sequence[AccountId]
    ) -> dict[AccountId, list[ClaimedDevice] | None]:
        """:meth:`claim_keys` for every device of each of ``account_ids`` in one transaction
        (a business starting sessions with many new customers at once); ``None`` for an
        account that does not exist."""
        found: dict[AccountId, list[ClaimedDevice] | None] = {}
        low: list[tuple[DevicePk, int]] = []
        async with self.db.write() as conn:
            for account_id in dict.fromkeys(account_ids):
                found[account_id] = await self._claim_in(conn, principal, account_id, None, low)
        log.info(
            "keys claimed",
            account_id=principal.account_id,
            device_id=principal.device_id,
            targets=len(found),
            devices=sum(len(c) for c in found.values() if c is not None),
        )
        self._notify_low(low)
        return found

    async def _claim_in(
        self,
        conn: AsyncConnection,
        principal: Principal,
        account_id: AccountId,
        device_ids: Sequence[DeviceId] | None,
        low: list[tuple[DevicePk, int]],
    ) -> list[ClaimedDevice] | None:
        """Claim within ``conn``'s transaction; ``None`` for an unknown account. Devices left
        with few one-time keys are added to ``low``."""
        if not await repo.account_exists(conn, account_id):
            return None
        directory = [
            d
            for d in await repo.device_directory(conn, account_id)
            if d.device_pk != principal.device_pk
        ]
        if device_ids is not None:
            wanted = set(device_ids)
            missing = sorted(wanted - {d.device_id for d in directory})
            if missing:
                raise TresenError(
                    ErrorCode.UNKNOWN_DEVICE,
                    "no such device with identity keys",
                    account_id=account_id,
                    device_ids=missing,
                )
            directory = [d for d in directory if d.device_id in wanted]
        claimed: list[ClaimedDevice] = []
        for device in directory:
            key = await repo.claim_one_time_key(conn, device.device_pk)
            one_time_key: ClaimedKey | None = None
            if key is not None:
                one_time_key = ClaimedKey(key, fallback=False)
            else:
                fallback = await repo.get_fallback_key(conn, device.device_pk)
                if fallback is not None:
                    one_time_key = ClaimedKey(fallback, fallback=True)
            claimed.append(ClaimedDevice(device, one_time_key))
            remaining = await repo.count_one_time_keys(conn, device.device_pk)
            if remaining < self.limits.one_time_keys_low:
                low.append((device.device_pk, remaining))
        return claimed

    def _notify_low(self, low: Sequence[tuple[DevicePk, int]]) -> None:
        for device_pk, remaining in low:
            # The claim is committed; a failing notification must not turn it into an error
            # response, or the claimed keys would be lost to the caller.
            try:
                self.on_keys_low(device_pk, remaining)
            except Exception:
                log.exception("keys-low notification failed", device_pk=device_pk)


def _identity_keys_missing() -> TresenError:
    return TresenError(
        ErrorCode.IDENTITY_KEYS_MISSING, "upload identity keys before one-time or fallback keys"
    )


def _unknown_account(account_id: AccountId) -> TresenError:
    return TresenError(ErrorCode.UNDELIVERABLE, "no such account", account_id=account_id)


_PublicKey = type[vodozemac.Curve25519PublicKey] | type[vodozemac.Ed25519PublicKey]


def _canonical(kind: _PublicKey, value: str) -> bool:
    """``value`` decodes as a key of ``kind`` and is spelled as vodozemac spells it."""
    try:
        return kind.from_base64(value).to_base64() == value
    except ValueError:
        return False


def _check_identity_keys(identity: IdentityKeys) -> None:
    if not _canonical(vodozemac.Curve25519PublicKey, identity.curve25519):
        raise TresenError(
            ErrorCode.INVALID_PARAMETER,
            "not a Curve25519 public key in unpadded base64",
            field="identity_keys.curve25519",
        )
    if not _canonical(vodozemac.Ed25519PublicKey, identity.ed25519):
        raise TresenError(
            ErrorCode.INVALID_PARAMETER,
            "not an Ed25519 public key in unpadded base64",
            field="identity_keys.ed25519",
        )


def _check_signed_key(key: SignedKey, field_name: str) -> None:
    if not _canonical(vodozemac.Curve25519PublicKey, key.public_key):
        raise TresenError(
            ErrorCode.INVALID_PARAMETER,
            "not a Curve25519 public key in unpadded base64",
            field=f"{field_name}.public_key",
            key_id=key.key_id,
        )
    try:
        vodozemac.Ed25519Signature.from_base64(key.signature)
    except ValueError:
        raise TresenError(
            ErrorCode.INVALID_PARAMETER,
            "not an Ed25519 signature in unpadded base64",
            field=f"{field_name}.signature",
            key_id=key.key_id,
        ) from None


def _distinct_one_time_keys(keys: Sequence[SignedKey]) -> list[SignedKey]:
    """The upload without exact repeats; one key_id naming two different keys is an error."""
    seen: dict[str, SignedKey] = {}
    for key in keys:
        earlier = seen.get(key.key_id)
        if earlier is None:
            seen[key.key_id] = key
        elif earlier.public_key != key.public_key:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "two different one-time keys share a key_id",
                field="one_time_keys.key_id",
                key_id=key.key_id,
            )
    return list(seen.values())

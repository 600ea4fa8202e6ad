"""Registration by phone number, device tokens and authentication."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.ids import (
    AccountId,
    DeviceId,
    DevicePk,
    new_account_id,
    new_registration_id,
    new_token,
)
from tresen.core.logging import get_logger
from tresen.core.ratelimit import TokenBuckets
from tresen.core.settings import Limits
from tresen.relay.accounts import repo
from tresen.relay.accounts.phone import normalize_phone
from tresen.relay.accounts.sms import SmsSender

__all__ = ["AccountPublic", "AccountService", "Principal", "Registration", "hash_token"]

log = get_logger("tresen.relay.accounts")

CODE_DIGITS = 6


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated device behind a request or a socket."""

    account_id: AccountId
    device_id: DeviceId
    device_pk: DevicePk


@dataclass(frozen=True, slots=True)
class AccountPublic:
    account_id: AccountId
    phone: str
    kind: str


@dataclass(frozen=True, slots=True)
class Registration:
    account_id: AccountId
    device_id: DeviceId
    token: str
    new_account: bool


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _hash_code(phone: str, code: str) -> bytes:
    return hashlib.sha256(f"{phone}:{code}".encode()).digest()


class AccountKeysChanged(Protocol):
    """Told, after commit, that the set of device keys of ``account_id`` changed: a
    certificate that binds the old set no longer holds."""

    def __call__(self, account_id: AccountId, /) -> Awaitable[object]: ...


class AccountService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        limits: Limits,
        sms: SmsSender,
        *,
        on_device_removed: AccountKeysChanged,
    ) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        self.sms = sms
        self._lookups = TokenBuckets(clock, limits.lookups_per_hour / 3600, limits.lookup_burst)
        # Called with the account id after one of its devices was removed: a certificate that
        # names the removed device's key no longer holds.
        self.on_device_removed = on_device_removed

    async def request_code(self, raw_phone: str, client_address: str) -> int:
        """Send a one-time code to ``raw_phone``; returns its lifetime in seconds."""
        phone = normalize_phone(raw_phone)
        now = self.clock.now_ms()
        window_ms = self.limits.code_request_window_s * 1000
        since = now - window_ms
        buckets = (
            (f"code:phone:{phone}", self.limits.code_requests_per_number),
            (f"code:addr:{client_address}", self.limits.code_requests_per_address),
        )
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        async with self.db.write() as conn:
            await repo.lock_buckets(conn, [bucket for bucket, _ in buckets])
            for bucket, allowed in buckets:
                if await repo.count_rate_events(conn, bucket, since) >= allowed:
                    oldest = await repo.oldest_rate_event(conn, bucket, since) or now
                    retry_after_s = max(1, (oldest + window_ms - now + 999) // 1000)
                    raise TresenError(
                        ErrorCode.REGISTRATION_RATE_LIMITED,
                        "too many code requests; try again later",
                        scope=bucket.split(":")[1],
                        retry_after_s=retry_after_s,
                    )
            for bucket, _ in buckets:
                await repo.add_rate_event(conn, bucket, now)
            await repo.prune_rate_events(conn, since)
            expires = now + self.limits.code_ttl_s * 1000
            await repo.put_code(conn, phone, _hash_code(phone, code), now, expires)
        await self.sms.send_code(phone, code)
        log.info("registration code requested", phone_country=phone[:3])
        return self.limits.code_ttl_s

    async def verify_code(self, raw_phone: str, code: str, device_name: str = "") -> Registration:
        """Check ``code``; on success the account (kept if it exists) gets a new device."""
        phone = normalize_phone(raw_phone)
        now = self.clock.now_ms()
        failure: TresenError | None = None
        registration: Registration | None = None
        async with self.db.write() as conn:
            pending = await repo.get_code(conn, phone)
            if pending is None:
                failure = TresenError(
                    ErrorCode.CODE_EXPIRED, "no valid code for this number; request a new one"
                )
            elif now >= pending.expires_ms:
                await repo.delete_code(conn, phone)
                failure = TresenError(ErrorCode.CODE_EXPIRED, "the code has expired")
            elif pending.attempts >= self.limits.code_max_attempts:
                await repo.delete_code(conn, phone)
                failure = TresenError(
                    ErrorCode.CODE_ATTEMPTS_EXCEEDED, "too many wrong attempts; request a new code"
                )
            elif not hmac.compare_digest(pending.code_hash, _hash_code(phone, code.strip())):
                await repo.increment_code_attempts(conn, phone)
                failure = TresenError(
                    ErrorCode.CODE_INCORRECT,
                    "the code is not correct",
                    attempts_left=self.limits.code_max_attempts - pending.attempts - 1,
                )
            else:
                await repo.delete_code(conn, phone)
                registration = await self._add_device(conn, phone, device_name[:64], now)
        if failure is not None:
            raise failure
        assert registration is not None
        log.info(
            "device registered",
            account_id=registration.account_id,
            device_id=registration.device_id,
            new_account=registration.new_account,
        )
        return registration

    async def _add_device(
        self, conn: AsyncConnection, phone: str, name: str, now: int
    ) -> Registration:
        found = await repo.account_by_phone(conn, phone)
        new_account = found is None
        account_id = new_account_id() if found is None else found[0]
        if new_account:
            await repo.create_account(conn, account_id, phone, now)
        elif await repo.count_devices(conn, account_id) >= self.limits.max_devices_per_account:
            raise TresenError(
                ErrorCode.TOO_MANY_DEVICES,
                "this account has the maximum number of devices; remove one first",
                max_devices=self.limits.max_devices_per_account,
            )
        token = new_token()
        device = await repo.create_device(
            conn,
            account_id,
            token_hash=hash_token(token),
            registration_id=new_registration_id(),
            name=name,
            now_ms=now,
        )
        return Registration(account_id, device.device_id, token, new_account)

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise TresenError(ErrorCode.INVALID_TOKEN, "missing access token")
        digest = hash_token(token)
        async with self.db.read() as conn:
            device = await repo.device_by_token_hash(conn, digest)
        if device is None or not hmac.compare_digest(device.token_hash, digest):
            raise TresenError(ErrorCode.INVALID_TOKEN, "invalid access token")
        return Principal(device.account_id, device.device_id, device.pk)

    async def touch(self, principal: Principal) -> None:
        async with self.db.write() as conn:
            await repo.touch_device(conn, principal.device_pk, self.clock.now_ms())

    async def list_devices(self, account_id: AccountId) -> list[repo.DeviceRow]:
        async with self.db.read() as conn:
            return await repo.list_devices(conn, account_id)

    async def remove_device(self, principal: Principal, device_id: DeviceId) -> DevicePk:
        """Unlink one of the caller's own devices (its mailbox and keys go with it)."""
        removed: DevicePk | None = None
        async with self.db.write() as conn:
            for device in await repo.list_devices(conn, principal.account_id):
                if device.device_id == device_id:
                    await repo.delete_device(conn, device.pk)
                    removed = device.pk
                    break
        if removed is None:
            raise TresenError(ErrorCode.UNKNOWN_DEVICE, "no such device", device_id=device_id)
        await self.on_device_removed(principal.account_id)
        return removed

    async def lookup(self, principal: Principal, raw_phone: str) -> AccountPublic:
        """The account registered for a phone number, as a contact list would find it."""
        self._check_lookup_rate(principal)
        phone = normalize_phone(raw_phone)
        async with self.db.read() as conn:
            found = await repo.account_by_phone(conn, phone)
        if found is None:
            raise TresenError(
                ErrorCode.UNDELIVERABLE, "no account is registered for this number", phone=phone
            )
        return AccountPublic(found[0], phone, found[1])

    async def account(self, principal: Principal, account_id: AccountId) -> AccountPublic:
        self._check_lookup_rate(principal)
        async with self.db.read() as conn:
            entry = await repo.account_entry(conn, account_id)
        if entry is None:
            raise TresenError(ErrorCode.UNDELIVERABLE, "no such account", account_id=account_id)
        return AccountPublic(account_id, *entry)

    def _check_lookup_rate(self, principal: Principal) -> None:
        # Lookups reveal who uses the service; the limit keeps a device from enumerating it.
        wait_ms = self._lookups.take(principal.device_pk)
        if wait_ms:
            raise TresenError(
                ErrorCode.REQUEST_RATE_LIMITED,
                "too many account lookups; try again later",
                retry_after_ms=wait_ms,
            )

    async def phone_of(self, account_id: AccountId) -> str | None:
        async with self.db.read() as conn:
            return await repo.account_phone(conn, account_id)

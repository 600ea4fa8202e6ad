"""Registration by phone number, device tokens and authentication."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass, replace
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
from tresen.core.settings import Limits
from tresen.relay.accounts import personal_data_repo, repo
from tresen.relay.accounts.limits import (
    backoff_wait_ms,
    keeps_code,
    lookup_interval_ms,
    take_lookup,
    window_wait_ms,
)
from tresen.relay.accounts.phone import normalize_phone
from tresen.relay.accounts.sms import SmsSender
from tresen.relay.accounts.throttle import ThrottleKeys, throttle_window_ms
from tresen.relay.transparency.repo import queue_devices_change

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


def _new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def _matches(code: str, valid: list[str]) -> bool:
    # Compare with every valid code, always: the time taken says nothing about which matched.
    found = False
    for candidate in valid:
        found |= hmac.compare_digest(code.encode(), candidate.encode())
    return found


def _seconds(ms: int) -> int:
    return max(1, -(-ms // 1000))


def _code_buckets(phone: str, source: str) -> tuple[str, str]:
    """Rate buckets of code requests: per (number, source) and per source."""
    return f"code:pair:{phone}:{source}", f"code:addr:{source}"


def _verify_buckets(phone: str, source: str) -> tuple[str, str]:
    """Rate buckets of wrong codes: per (number, source) and per source."""
    return f"verify:pair:{phone}:{source}", f"verify:addr:{source}"


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
        self._lookup_interval_ms = lookup_interval_ms(limits.lookups_per_hour)
        self.throttle = ThrottleKeys(throttle_window_ms(limits))
        # Called with the account id after one of its devices was removed: a certificate that
        # names the removed device's key no longer holds.
        self.on_device_removed = on_device_removed

    async def request_code(self, raw_phone: str, source: str) -> int:
        """Send a one-time code to ``raw_phone`` for a request from ``source``; returns how
        long the code that was sent stays valid, in seconds.

        Limits count per (number, source) and per source, never per number alone: requests
        from elsewhere cannot use up the owner's. A code that still has half its life left is
        re-sent instead of replaced, so nobody's request changes the code the owner holds.
        """
        phone = normalize_phone(raw_phone)
        limits = self.limits
        now = self.clock.now_ms()
        window_ms = limits.code_request_window_s * 1000
        ttl_ms = limits.code_ttl_s * 1000
        buckets = _code_buckets(phone, source)
        async with self.db.write() as conn:
            await repo.lock_buckets(conn, [*buckets, f"code:{phone}"])
            pair, per_source = await self.throttle.stored(conn, buckets, now)
            pair_times = await repo.rate_event_times(conn, pair.both, now - window_ms)
            source_times = await repo.rate_event_times(conn, per_source.both, now - window_ms)
            waits = [
                (
                    "addr",
                    window_wait_ms(source_times, now, window_ms, limits.code_requests_per_address),
                ),
                (
                    "phone",
                    window_wait_ms(pair_times, now, window_ms, limits.code_requests_per_number),
                ),
                (
                    "backoff",
                    backoff_wait_ms(
                        pair_times,
                        now,
                        window_ms,
                        limits.code_request_backoff_s * 1000,
                        limits.code_request_backoff_max_s * 1000,
                    ),
                ),
            ]
            scope, wait_ms = max(waits, key=lambda w: w[1])
            if wait_ms > 0:
                raise TresenError(
                    ErrorCode.REGISTRATION_RATE_LIMITED,
                    "too many code requests; try again later",
                    scope=scope,
                    retry_after_s=_seconds(wait_ms),
                )
            await repo.add_rate_events(conn, [pair.current, per_source.current], now)
            pending = await repo.get_code(conn, phone)
            if pending is not None and keeps_code(pending.expires_ms, now, ttl_ms):
                sent = pending
            else:
                sent = repo.PendingCode(phone, _new_code(), now + ttl_ms)
                if pending is not None and now < pending.expires_ms:
                    sent = replace(
                        sent,
                        previous_code=pending.code,
                        previous_expires_ms=pending.expires_ms,
                    )
                await repo.put_code(conn, sent, now)
        await self.sms.send_code(phone, sent.code)
        log.info("registration code requested", phone_country=phone[:3], resent=sent is pending)
        return _seconds(sent.expires_ms - now)

    async def verify_code(
        self, raw_phone: str, code: str, device_name: str, source: str
    ) -> Registration:
        """Check ``code``; on success the account (kept if it exists) gets a new device.

        Wrong codes count against the source that sent them (per number and in all), and
        never against the pending code, which stays valid for its owner until it expires.
        """
        phone = normalize_phone(raw_phone)
        limits = self.limits
        now = self.clock.now_ms()
        ttl_ms = limits.code_ttl_s * 1000
        window_ms = limits.code_request_window_s * 1000
        buckets = _verify_buckets(phone, source)
        failure: TresenError | None = None
        registration: Registration | None = None
        async with self.db.write() as conn:
            await repo.lock_buckets(conn, list(buckets))
            pair, per_source, requests = await self.throttle.stored(
                conn, [*buckets, _code_buckets(phone, source)[0]], now
            )
            pair_times = await repo.rate_event_times(conn, pair.both, now - ttl_ms)
            source_times = await repo.rate_event_times(conn, per_source.both, now - window_ms)
            waits = [
                ("phone", window_wait_ms(pair_times, now, ttl_ms, limits.code_max_attempts)),
                (
                    "addr",
                    window_wait_ms(source_times, now, window_ms, limits.code_attempts_per_address),
                ),
            ]
            scope, wait_ms = max(waits, key=lambda w: w[1])
            pending = None if wait_ms else await repo.get_code(conn, phone)
            valid = [] if pending is None else pending.valid_codes(now)
            if wait_ms:
                failure = TresenError(
                    ErrorCode.CODE_ATTEMPTS_EXCEEDED,
                    "too many wrong codes; try again later",
                    scope=scope,
                    retry_after_s=_seconds(wait_ms),
                )
            elif not valid:
                if pending is not None:
                    await repo.delete_code(conn, phone)
                failure = TresenError(
                    ErrorCode.CODE_EXPIRED, "no valid code for this number; request a new one"
                )
            elif not _matches(code.strip(), valid):
                await repo.add_rate_events(conn, [pair.current, per_source.current], now)
                failure = TresenError(
                    ErrorCode.CODE_INCORRECT,
                    "the code is not correct",
                    attempts_left=max(0, limits.code_max_attempts - len(pair_times) - 1),
                )
            else:
                await repo.delete_code(conn, phone)
                # The source proved it holds the number: its requests and guesses start afresh
                # (a second device is registered without waiting out a back-off).
                await repo.clear_rate_events(conn, [*pair.both, *requests.both])
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
            # The blocks a deleted account of this number made protect its holder again.
            await personal_data_repo.adopt_retired_blocks(conn, phone, account_id)
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
                    # The key log records the smaller device set in the next epoch.
                    await queue_devices_change(conn, principal.account_id, self.clock.now_ms())
                    break
        if removed is None:
            raise TresenError(ErrorCode.UNKNOWN_DEVICE, "no such device", device_id=device_id)
        await self.on_device_removed(principal.account_id)
        return removed

    async def lookup(self, principal: Principal, raw_phone: str) -> AccountPublic:
        """The account registered for a phone number, as a contact list would find it."""
        await self._check_lookup_rate(principal)
        phone = normalize_phone(raw_phone)
        async with self.db.read() as conn:
            found = await repo.account_by_phone(conn, phone)
        if found is None:
            raise TresenError(
                ErrorCode.UNDELIVERABLE, "no account is registered for this number", phone=phone
            )
        return AccountPublic(found[0], phone, found[1])

    async def account(self, principal: Principal, account_id: AccountId) -> AccountPublic:
        await self._check_lookup_rate(principal)
        async with self.db.read() as conn:
            entry = await repo.account_entry(conn, account_id)
        if entry is None:
            raise TresenError(ErrorCode.UNDELIVERABLE, "no such account", account_id=account_id)
        return AccountPublic(account_id, *entry)

    async def _check_lookup_rate(self, principal: Principal) -> None:
        # Lookups reveal who uses the service; the budget keeps an account (all its devices
        # together, across restarts) from enumerating it.
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            arrival = await repo.lookup_arrival(conn, principal.account_id)
            arrival, wait_ms = take_lookup(
                arrival, now, self._lookup_interval_ms, self.limits.lookup_burst
            )
            if arrival is not None:
                await repo.save_lookup_arrival(conn, principal.account_id, arrival)
        if wait_ms:
            raise TresenError(
                ErrorCode.REQUEST_RATE_LIMITED,
                "too many account lookups; try again later",
                retry_after_ms=wait_ms,
            )

    async def phone_of(self, account_id: AccountId) -> str | None:
        async with self.db.read() as conn:
            return await repo.account_phone(conn, account_id)

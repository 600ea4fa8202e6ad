"""A person's rights over what the relay holds about their account: a copy (export) and
erasure (account deletion). ``docs/privacy.md`` says what each returns and what stays."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.ids import AccountId, DevicePk
from tresen.core.logging import get_logger
from tresen.core.settings import Limits
from tresen.relay.accounts import personal_data_repo as repo
from tresen.relay.accounts import repo as accounts_repo
from tresen.relay.accounts.service import Principal
from tresen.relay.audit import add_audit
from tresen.relay.transparency.repo import queue_devices_change

__all__ = ["EXPORT_FORMAT", "AccountDeleted", "AccountExport", "PersonalDataService"]

log = get_logger("tresen.relay.accounts")

EXPORT_FORMAT = "tresen.relay.export/1"
EXPORT_WINDOW_MS = 3_600_000
WITHDRAWAL_NOTE = "account deleted"
SELF_ACTOR = "account holder"
"""The ``operator`` of an audit row written for an action the account took on itself."""


@dataclass(frozen=True, slots=True)
class AccountExport:
    generated_ms: int
    sections: dict[str, Any]
    truncated: list[str]
    row_limit: int


@dataclass(frozen=True, slots=True)
class AccountDeleted:
    account_id: AccountId
    devices: list[DevicePk]
    counts: dict[str, int]


class BlobDeleter(Protocol):
    """Deletes an attachment's bytes from the blob store (its row goes with the account)."""

    def __call__(self, attachment_id: str, /) -> Awaitable[None]: ...


class PersonalDataService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        limits: Limits,
        *,
        delete_blob: BlobDeleter,
        on_account_deleted: Callable[[AccountId], None],
    ) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        self.delete_blob = delete_blob
        # Told after commit, so that caches of the send path forget the account.
        self.on_account_deleted = on_account_deleted

    async def export(self, principal: Principal) -> AccountExport:
        """Everything the relay holds about the caller's account, as of now.

        Limited to ``limits.exports_per_hour`` per account (all its devices together, across
        restarts and relay nodes), each section to ``limits.export_rows`` rows, newest first.
        """
        now = self.clock.now_ms()
        bucket = repo.export_bucket(principal.account_id)
        async with self.db.write() as conn:
            await accounts_repo.lock_buckets(conn, [bucket])
            times = await accounts_repo.rate_event_times(conn, [bucket], now - EXPORT_WINDOW_MS)
            if len(times) >= self.limits.exports_per_hour:
                wait_ms = times[-self.limits.exports_per_hour] + EXPORT_WINDOW_MS - now
                raise TresenError(
                    ErrorCode.REQUEST_RATE_LIMITED,
                    "too many exports; try again later",
                    retry_after_s=max(1, -(-wait_ms // 1000)),
                )
            await accounts_repo.add_rate_events(conn, [bucket], now)
            sections, truncated = await repo.export_sections(
                conn, principal.account_id, self.limits.export_rows
            )
        return AccountExport(now, sections, truncated, self.limits.export_rows)

    async def delete_account(self, principal: Principal) -> AccountDeleted:
        """Delete the caller's account: every device and token, keys, queued messages to and
        from it, consents (withdrawn in their history), uploads, codes and budgets. Its
        number is free to register again, as a new account. A business account is closed by
        the operator, not here: its certificates, templates and bill outlive a device."""
        account_id = principal.account_id
        now = self.clock.now_ms()
        async with self.db.read() as conn:
            entry = await accounts_repo.account_entry(conn, account_id)
            blob_ids = await repo.attachment_ids(conn, account_id)
        if entry is None:
            raise TresenError(ErrorCode.INVALID_TOKEN, "invalid access token")
        phone, kind = entry
        if kind != "customer":
            raise TresenError(
                ErrorCode.BUSINESS_ACCOUNT_NOT_DELETABLE,
                "a business account is closed by the operator; ask them",
            )
        # The bytes first: a row without its file is harmless, a file without its row is
        # never swept.
        for blob_id in blob_ids:
            await self.delete_blob(blob_id)
        async with self.db.write() as conn:
            erased = await repo.erase_account(
                conn, account_id, phone, now, withdrawal_note=WITHDRAWAL_NOTE
            )
            await accounts_repo.clear_rate_events(conn, [repo.export_bucket(account_id)])
            # The key log's next epoch states that the account has no device left, so that
            # no relay can go on showing its old keys as current.
            await queue_devices_change(conn, account_id, now)
            await add_audit(
                conn,
                at_ms=now,
                operator=SELF_ACTOR,
                action="account_deleted",
                account_id=account_id,
                details={"removed": erased.counts},
            )
        self.on_account_deleted(account_id)
        log.info("account deleted", account_id=account_id, devices=len(erased.device_pks))
        return AccountDeleted(account_id, erased.device_pks, erased.counts)

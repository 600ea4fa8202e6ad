"""A customer's rights at the business: a copy of what its gateway holds about them (asked
end to end from the customer's app, answered automatically), and erasure on request (by the
business: ``tresen gateway customers erase`` or the inbox's API). Each is one action that
writes its audit row in the same transaction."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.logging import get_logger
from tresen.gateway.customers import repo
from tresen.gateway.customers.audit import add_audit, subject_of

__all__ = ["EXPIRED_BATCH", "EXPORT_FORMAT", "CustomerData", "CustomerNotFound", "Erased"]

log = get_logger("tresen.gateway.customers")

EXPORT_FORMAT = "tresen.gateway.export/1"
EXPORT_ROWS = 2000
"""Rows per section of a customer's export, newest first."""
EXPIRED_BATCH = 100
"""Customers erased in one transaction by the conversation period."""


class CustomerNotFound(LookupError):
    """No contact, subscriber or campaign recipient has this number or account id."""


@dataclass(frozen=True, slots=True)
class Erased:
    subject: str
    """The customer as the audit trail names them."""
    counts: dict[str, int]


class PeerForgetter(Protocol):
    """Forgets a peer in the gateway's device store (``device/client.db``)."""

    def __call__(self, account_id: str, /) -> Awaitable[int]: ...


class CustomerData:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        business: Callable[[], dict[str, Any]],
        delete_media: Callable[[str], Awaitable[object]],
        forget_peer: PeerForgetter,
        on_erased: Callable[[str], None] = lambda _account_id: None,
        export_rows: int = EXPORT_ROWS,
    ) -> None:
        self.db = db
        self.clock = clock
        # Who answers an export (the business's account, number and name).
        self.business = business
        self.delete_media = delete_media
        self.forget_peer = forget_peer
        # Told after an erasure, so that what the running gateway caches of the customer goes.
        self.on_erased = on_erased
        self.export_rows = export_rows

    async def export(self, account_id: str, *, actor: str = "gateway") -> bytes:
        """The JSON document of what the gateway holds about ``account_id`` (audited)."""
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            sections, truncated = await repo.export_customer(conn, account_id, self.export_rows)
            await add_audit(
                conn,
                at_ms=now,
                actor=actor,
                action="export_answered",
                account_id=account_id,
                details={"messages": len(sections["messages"]), "truncated": truncated},
            )
        document = {
            "format": EXPORT_FORMAT,
            "generated_ms": now,
            "business": self.business(),
            "customer": account_id,
            "row_limit": self.export_rows,
            "truncated": truncated,
            **sections,
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    async def find(self, phone_or_account: str) -> tuple[str, str | None]:
        async with self.db.read() as conn:
            found = await repo.find_customer(conn, phone_or_account)
        if found is None:
            raise CustomerNotFound(phone_or_account)
        return found

    async def erase(self, phone_or_account: str, *, actor: str, reason: str) -> Erased:
        """Delete the customer's conversation, messages, files, contact, labels, automation
        state, activity, subscriptions, webhook events and device-store rows; campaigns keep
        a row without the person (their figures stay right). Audited with ``reason``."""
        account_id, phone = await self.find(phone_or_account)
        async with self.db.read() as conn:
            media_ids = await repo.inbound_media_ids(conn, account_id)
        for media_id in media_ids:
            await self.delete_media(media_id)
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            erasure = await repo.erase_customer(conn, account_id, phone)
            counts = {**erasure.counts, "media": len(media_ids)}
            counts = {k: v for k, v in counts.items() if v}
            await add_audit(
                conn,
                at_ms=now,
                actor=actor,
                action="customer_erased",
                account_id=account_id,
                reason=reason,
                details=counts,
            )
        forgotten = await self.forget_peer(account_id)
        if forgotten:
            counts["device_store_messages"] = forgotten
        self.on_erased(account_id)
        log.info("customer erased", subject=subject_of(account_id), actor=actor)
        return Erased(subject_of(account_id), counts)

    async def erase_inactive(
        self, before_ms: int, *, limit: int = EXPIRED_BATCH, reason: str
    ) -> dict[str, int]:
        """Erase, as :meth:`erase` does, at most ``limit`` customers whose resolved
        conversation saw nothing since ``before_ms`` (the business's conversation period),
        with one audit row for all of them (``conversations_expired``, counts only). The
        counts include ``customers``: how many were erased."""
        now = self.clock.now_ms()
        media_ids: list[str] = []
        total: dict[str, int] = {}
        async with self.db.write() as conn:
            # Chosen in the transaction that erases them: a customer who wrote meanwhile stays.
            erased = await repo.inactive_customers(conn, before_ms, limit)
            if not erased:
                return {}
            for account_id in erased:
                found = await repo.find_customer(conn, account_id)
                phone = None if found is None else found[1]
                media_ids += await repo.inbound_media_ids(conn, account_id)
                for name, n in (await repo.erase_customer(conn, account_id, phone)).counts.items():
                    total[name] = total.get(name, 0) + n
            total = {"customers": len(erased), **{k: v for k, v in total.items() if v}}
            if media_ids:
                total["media"] = len(media_ids)
            await add_audit(
                conn,
                at_ms=now,
                actor="gateway",
                action="conversations_expired",
                account_id=None,
                reason=reason,
                details=total,
            )
        # The rows are gone; the customers' files and device-store rows follow.
        for media_id in media_ids:
            await self.delete_media(media_id)
        for account_id in erased:
            forgotten = await self.forget_peer(account_id)
            if forgotten:
                total["device_store_messages"] = total.get("device_store_messages", 0) + forgotten
            self.on_erased(account_id)
        return total

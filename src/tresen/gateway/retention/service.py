"""``Retention``: deletes or reduces what the gateway's rules no longer need, every
``retention.interval_s``.

Each cut is one rule's period (docs/privacy.md, the gateway's section), applied in
transactions of at most ``retention.chunk_rows`` rows, so that the gateway's own writes wait
for none of them long; a backlog takes several. Times come from the gateway's clock. The log
line names tables and counts, nothing else.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import DAY_MS, Clock
from tresen.core.db import Database
from tresen.core.logging import get_logger
from tresen.core.periodic import Periodic, repeat_in_chunks
from tresen.gateway.customers.service import EXPIRED_BATCH
from tresen.gateway.retention import repo
from tresen.gateway.settings import GatewaySettings

__all__ = ["Retention"]

log = get_logger("tresen.gateway.retention")

CONVERSATIONS_REASON = "retention.conversation_days"

# One cut in one transaction: (connection, now, limit) → rows deleted or reduced.
_Cut = Callable[[AsyncConnection, int, int], Awaitable[int]]


class PayloadClearer(Protocol):
    """Clears the device store's sealed payloads of messages accepted before a time
    (``LocalStore.clear_payloads``)."""

    def __call__(self, accepted_before_ms: int, limit: int, /) -> int: ...


class InactiveEraser(Protocol):
    """Erases customers whose resolved conversation saw nothing since a time
    (``CustomerData.erase_inactive``)."""

    def __call__(self, before_ms: int, *, reason: str) -> Awaitable[dict[str, int]]: ...


class Retention:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: GatewaySettings,
        *,
        clear_payloads: PayloadClearer | None = None,
        erase_inactive: InactiveEraser | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        kept = settings.retention
        self.chunk = kept.chunk_rows
        self._periodic = Periodic("retention", clock, kept.interval_s, self.run)
        self._clear_payloads = clear_payloads
        self._erase_inactive = erase_inactive
        self._device_payload_ms = kept.device_payload_days * DAY_MS
        self._conversation_ms = (
            None if kept.conversation_days is None else kept.conversation_days * DAY_MS
        )
        throttle_ms = settings.inbox.throttle_window_s * 1000
        idle_ms = settings.inbox.session_idle_s * 1000

        def days(n: int) -> int:
            return n * DAY_MS

        # In the order of docs/privacy.md's gateway tables.
        self._cuts: dict[str, _Cut] = {
            "early_statuses": lambda conn, now, n: repo.delete_old_early_statuses(
                conn, now - days(kept.early_status_days), n
            ),
            "bot_log": lambda conn, now, n: repo.delete_old_bot_log(
                conn, now - days(kept.bot_log_days), n
            ),
            "subscribers": lambda conn, now, n: repo.reduce_unsubscribed(
                conn, now - days(kept.unsubscribed_days), n
            ),
            "subscriber_imports": lambda conn, now, n: repo.clear_import_reports(
                conn, now - days(kept.import_report_days), n
            ),
            "campaigns": lambda conn, now, n: repo.reduce_finished_campaigns(
                conn, now - days(kept.campaign_detail_days), n
            ),
            "campaign_recipients": lambda conn, now, n: repo.delete_reduced_recipients(conn, n),
            "delivery_receipts": lambda conn, now, n: repo.delete_old_delivery_receipts(
                conn, now - days(kept.delivery_receipt_days), n
            ),
            "agent_sessions": lambda conn, now, n: repo.delete_expired_sessions(
                conn, now, idle_ms, n
            ),
            "login_failures": lambda conn, now, n: repo.delete_old_login_failures(
                conn, now - throttle_ms, n
            ),
        }
        if kept.dead_webhook_days is not None:
            dead_ms = days(kept.dead_webhook_days)
            self._cuts["webhook_events"] = lambda conn, now, n: repo.delete_dead_webhook_events(
                conn, now - dead_ms, n
            )

    async def start(self) -> None:
        """Apply every period every ``retention.interval_s`` (on the gateway's clock)."""
        self._periodic.start()

    async def close(self) -> None:
        await self._periodic.close()

    async def run(self) -> dict[str, int]:
        """Apply every period once; how many rows each cut deleted or reduced."""
        now = self.clock.now_ms()
        done: dict[str, int] = {}
        for name, cut in self._cuts.items():
            done[name] = await repeat_in_chunks(
                functools.partial(self._in_transaction, cut, now), self.chunk
            )
        if self._clear_payloads is not None:
            clear, before = self._clear_payloads, now - self._device_payload_ms

            async def clear_some(n: int) -> int:
                return clear(before, n)

            done["device_payloads"] = await repeat_in_chunks(clear_some, self.chunk)
        if self._erase_inactive is not None and self._conversation_ms is not None:
            done["conversations"] = await self._erase_conversations(now - self._conversation_ms)
        if any(done.values()):
            log.info("retention applied", **{k: v for k, v in done.items() if v})
        return done

    async def run_if_due(self) -> dict[str, int] | None:
        """Run if ``retention.interval_s`` has passed on the gateway's clock since the last
        time (what the periodic task does); None if it has not."""
        return await self.run() if self._periodic.take_due() else None

    async def _in_transaction(self, cut: _Cut, now: int, limit: int) -> int:
        async with self.db.write() as conn:
            return await cut(conn, now, limit)

    async def _erase_conversations(self, before_ms: int) -> int:
        assert self._erase_inactive is not None
        erased = 0
        while True:
            counts = await self._erase_inactive(before_ms, reason=CONVERSATIONS_REASON)
            erased += counts.get("customers", 0)
            if counts.get("customers", 0) < EXPIRED_BATCH:
                return erased
            await asyncio.sleep(0)

"""``Retention``: deletes what the relay's rules no longer need, every ``retention.interval_s``.

Each cut is one rule's period (docs/privacy.md, "What was cut"), applied in transactions of at
most ``retention.chunk_rows`` rows, so that sends and acks wait for none of them long; a
backlog (after an upgrade, or a relay that was down) takes several. Times come from the
relay's clock. The log line names tables and counts, nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import DAY_MS, Clock
from tresen.core.db import Database
from tresen.core.logging import get_logger
from tresen.core.periodic import Periodic, repeat_in_chunks
from tresen.core.settings import Settings
from tresen.relay.accounts.throttle import throttle_window_ms
from tresen.relay.billing import repo as billing_repo
from tresen.relay.billing.service import month_start_ms
from tresen.relay.retention import repo

__all__ = ["Retention"]

log = get_logger("tresen.relay.retention")

HOUR_MS = 3_600_000

# One cut: (connection, now, limit) → rows deleted or erased.
_Cut = Callable[[AsyncConnection, int, int], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class _Periods:
    """Every period in milliseconds, from the settings."""

    dedupe_ms: int
    business_message_ms: int
    throttle_ms: int
    window_ms: int
    reach_ms: int
    recipient_ms: int
    quality_ms: int
    quality_detail_ms: int
    consent_evidence_ms: int
    ledger_dispute_ms: int

    @classmethod
    def of(cls, settings: Settings) -> _Periods:
        kept, policy = settings.retention, settings.policy
        dedupe_ms = kept.dedupe_window_s * 1000
        return cls(
            dedupe_ms=dedupe_ms,
            # A business's message stays at least as long as any other.
            business_message_ms=max(dedupe_ms, kept.business_message_days * DAY_MS),
            throttle_ms=throttle_window_ms(settings.limits),
            window_ms=int(policy.window_hours * HOUR_MS),
            # Tiers count unique customers over 24 h, and upgrades over tier_usage_days.
            reach_ms=max(DAY_MS, policy.tier_usage_days * DAY_MS),
            recipient_ms=policy.quality_recipient_days * DAY_MS,
            quality_ms=policy.quality_days * DAY_MS,
            # A block or report rates the business (once per customer) over quality_days.
            quality_detail_ms=max(kept.quality_detail_days, policy.quality_days) * DAY_MS,
            consent_evidence_ms=kept.consent_evidence_days * DAY_MS,
            ledger_dispute_ms=kept.ledger_dispute_days * DAY_MS,
        )


class Retention:
    def __init__(self, db: Database, clock: Clock, settings: Settings) -> None:
        self.db = db
        self.clock = clock
        self.chunk = settings.retention.chunk_rows
        self._periods = _Periods.of(settings)
        self._periodic = Periodic("retention", clock, settings.retention.interval_s, self.run)
        p = self._periods
        # In the order of docs/privacy.md's table; message records before their pricing facts.
        self._cuts: dict[str, _Cut] = {
            "messages": lambda conn, now, n: repo.delete_received_messages(
                conn, now - p.dedupe_ms, n, customers_only=True
            ),
            "business_messages": lambda conn, now, n: repo.delete_received_messages(
                conn, now - p.business_message_ms, n, customers_only=False
            ),
            "message_pricing": lambda conn, now, n: repo.delete_orphan_pricing(conn, n),
            "rate_events": lambda conn, now, n: repo.delete_old_rate_events(
                conn, now - p.throttle_ms, n
            ),
            "throttle_keys": lambda conn, now, n: repo.delete_old_throttle_keys(
                # The previous window's key reads events up to one window back.
                conn,
                now // p.throttle_ms - 1,
            ),
            "verification_codes": repo.delete_expired_codes,
            "service_windows": lambda conn, now, n: repo.delete_closed_windows(
                conn, now - p.window_ms, n
            ),
            "reach": lambda conn, now, n: repo.delete_old_reach(conn, now - p.reach_ms, n),
            "recipients": lambda conn, now, n: repo.delete_old_recipients(
                conn, now - p.recipient_ms, n
            ),
            "quality_events": lambda conn, now, n: repo.erase_quality_details(
                conn, now - p.quality_detail_ms, n
            ),
            "ledger": lambda conn, now, n: billing_repo.reduce_ledger(
                conn, month_start_ms(now - p.ledger_dispute_ms), n, month_start_ms
            ),
            "lookup_budgets": repo.delete_full_lookup_budgets,
            "consents": lambda conn, now, n: repo.erase_ended_consents(
                conn, now - p.consent_evidence_ms, n
            ),
            "consent_log": lambda conn, now, n: repo.delete_ended_consent_history(
                conn, now - p.consent_evidence_ms, n
            ),
            "delivery_counts": lambda conn, now, n: repo.delete_old_delivery_counts(
                # Quality reads the days from (now - quality_days)'s on.
                conn,
                (now - p.quality_ms) // DAY_MS,
                n,
            ),
        }

    async def start(self) -> None:
        """Apply every period every ``retention.interval_s`` (on the relay's clock)."""
        self._periodic.start()

    async def close(self) -> None:
        await self._periodic.close()

    async def run(self) -> dict[str, int]:
        """Apply every period once; how many rows each cut deleted or erased."""
        now = self.clock.now_ms()
        done: dict[str, int] = {}
        for name, cut in self._cuts.items():
            done[name] = await repeat_in_chunks(
                functools.partial(_in_transaction, self.db, cut, now), self.chunk
            )
        if any(done.values()):
            log.info("retention applied", **{k: v for k, v in done.items() if v})
        return done

    async def run_if_due(self) -> dict[str, int] | None:
        """Run if ``retention.interval_s`` has passed on the relay's clock since the last
        time (what the periodic task does); None if it has not."""
        return await self.run() if self._periodic.take_due() else None


async def _in_transaction(db: Database, cut: _Cut, now: int, limit: int) -> int:
    async with db.write() as conn:
        return await cut(conn, now, limit)

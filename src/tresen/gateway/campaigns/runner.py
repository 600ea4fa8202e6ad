"""The campaign runner: inside the gateway process, it sends what is due, at the pace the
relay allows, so that no refusal of the relay is self-inflicted.

Pace: a token bucket at the business's throughput (``GET /v1/business/quality``), never above
the device's send rate; the tier's budget of new customers per 24 h (a customer outside the
service window costs one: when the budget is spent, those recipients wait for it while the
ones whose window is open still go); quiet hours. The standing is read again periodically
and after a 131048, so a tier or throughput change mid-campaign is picked up.

Exactly once: a recipient is marked ``sending`` before the relay is asked and ``sent`` after,
always with the same client message id, so a send repeated after a crash is the relay's
duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tresen.core.batching import GroupCommitter
from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.core.ratelimit import TokenBuckets
from tresen.gateway.campaigns.model import (
    ACTIVE,
    CampaignId,
    CampaignState,
    CampaignSummary,
    RecipientState,
)
from tresen.gateway.campaigns.pacing import (
    DEFAULT_QUIET_HOURS,
    WINDOW_MS,
    budget_of,
    quiet_until,
)
from tresen.gateway.campaigns.repo import CampaignRepo, Mark, RecipientRow, is_unresolved
from tresen.gateway.campaigns.sending import CampaignSender
from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.settings import CampaignSettings

__all__ = ["CampaignRunner", "Standing", "quiet_hours_of"]

log = get_logger("tresen.gateway.campaigns")

BATCH = 64
"""Recipients of one campaign sent before the next campaign's turn (fairness)."""
IN_FLIGHT = 16
"""Sends of one campaign waiting for the relay at once."""
RETRY_MS = 5_000
"""After a send the relay could not answer (it may hold it: the same id goes again)."""
TEMPLATE_TROUBLE = frozenset({132001, 132015, 132016})


class Standing(Protocol):
    """The business's standing at the relay (``GET /v1/business/quality``)."""

    async def __call__(self) -> dict[str, Any]: ...


LastInbound = Callable[[str], Awaitable[int | None]]
"""When a customer last wrote (their service window is open for 24 h after)."""


def quiet_hours_of(campaign: CampaignSummary) -> tuple[str, str] | None:
    hours = campaign.schedule.quiet_hours
    if hours is None:
        return DEFAULT_QUIET_HOURS if campaign.category.upper() == "MARKETING" else None
    return hours if len(hours) == 2 else None


class CampaignRunner:
    def __init__(
        self,
        repo: CampaignRepo,
        sender: CampaignSender,
        standing: Standing,
        last_inbound: LastInbound,
        clock: Clock,
        settings: CampaignSettings,
        *,
        time_zone: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.repo = repo
        self.sender = sender
        self.standing = standing
        self.last_inbound = last_inbound
        self.clock = clock
        self.settings = settings
        self.time_zone = time_zone
        self._kick = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._read_at: int | None = None
        self._budget: int | None = None
        self._rate = 0.0
        self._bucket: TokenBuckets | None = None
        self._reading = asyncio.Lock()
        self._reserved = 0
        """Units of the tier's budget taken by sends still waiting for the relay's answer."""
        self._marks: GroupCommitter[Mark, None] | None = None
        self._held: dict[CampaignId, int] = {}
        """Campaigns with recipients put off until the tier's budget may have room: until when."""

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._marks = GroupCommitter(self.repo.apply_marks, max_batch=IN_FLIGHT * 4)
            self._marks.start()
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._marks is not None:
            await self._marks.close()
            self._marks = None

    def wake(self) -> None:
        """Look again now (a campaign changed, or the clock was moved)."""
        self._idle.clear()
        self._kick.set()

    async def settled(self, within_s: float = 30) -> None:
        """Wait until the runner has done everything it can at the clock's current time."""
        async with asyncio.timeout(within_s):
            await self._idle.wait()

    async def _run(self) -> None:
        while True:
            self._kick.clear()
            try:
                next_ms = await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("campaign pass failed")
                next_ms = self.clock.now_ms() + RETRY_MS
            now = self.clock.now_ms()
            if next_ms is not None and next_ms <= now:
                continue
            wait_s = self.settings.max_wait_s
            if next_ms is not None:
                wait_s = min(wait_s, (next_ms - now) / 1000)
            if not self._kick.is_set():
                self._idle.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._kick.wait()

    async def _pass(self) -> int | None:
        """One turn of every active campaign (oldest first); when to look again."""
        active = sorted(await self.repo.find(states=list(ACTIVE)), key=lambda c: c.id)
        soonest: int | None = None
        for campaign in active:
            at = await self._turn(campaign)
            if at is not None and (soonest is None or at < soonest):
                soonest = at
        return soonest

    # --- one campaign ------------------------------------------------------------------------

    async def _turn(self, campaign: CampaignSummary) -> int | None:
        now = self.clock.now_ms()
        if campaign.start_ms is not None and campaign.start_ms > now:
            return campaign.start_ms
        if campaign.state is CampaignState.WAITING:
            if campaign.resume_ms is not None and campaign.resume_ms > now:
                return campaign.resume_ms
            # Running again: who still needs the budget is put off again if it has no room.
            await self._read_standing(force=True)
            self._held.pop(campaign.id, None)
            await self._move(campaign.id, CampaignState.RUNNING, [CampaignState.WAITING])
        elif campaign.state is CampaignState.SCHEDULED:
            await self._move(campaign.id, CampaignState.RUNNING, [CampaignState.SCHEDULED])
        rows, later = await self.repo.next_due(campaign.id, now, BATCH)
        if not rows:
            if later is None and await self.repo.left(campaign.id) == 0:
                self._held.pop(campaign.id, None)
                await self._move(campaign.id, CampaignState.DONE, list(ACTIVE))
            elif later is not None and later >= self._held.get(campaign.id, later + 1):
                # Only recipients who wait for the tier's budget are left.
                await self._move(
                    campaign.id,
                    CampaignState.WAITING,
                    [CampaignState.RUNNING, CampaignState.SCHEDULED],
                    reason="The tier's limit of new customers per 24 hours is reached",
                    resume_ms=later,
                )
            return later
        hours = quiet_hours_of(campaign)
        tz = campaign.schedule.time_zone or self.time_zone()
        # Several sends at once: each waits for the relay's answer (and, for a new customer,
        # for a key claim and a new Olm session), so one at a time would leave the pace the
        # relay allows unused. The token bucket still decides when each may start.
        flying: set[asyncio.Task[int | None]] = set()
        wait_until: list[int] = []

        def landed(done: set[asyncio.Task[int | None]]) -> None:
            for task in done:
                at = task.result()
                if at is not None:
                    wait_until.append(at)

        prepared = False
        try:
            for at, row in enumerate(rows):
                now = self.clock.now_ms()
                if hours is not None:
                    ends = quiet_until(now, hours, tz)
                    if ends is not None:
                        wait_until.append(ends)
                        break
                # Pause and cancel take effect before the next send.
                if await self.repo.state_of(campaign.id) not in ACTIVE:
                    break
                while len(flying) >= IN_FLIGHT:
                    done, flying = await asyncio.wait(flying, return_when=asyncio.FIRST_COMPLETED)
                    landed(done)
                if wait_until:
                    break  # the pace says wait: nothing more starts now
                if not prepared:
                    prepared = True
                    await self._prepare(rows[at:])
                flying.add(asyncio.create_task(self._send(campaign, row)))
            if flying:
                done, flying = await asyncio.wait(flying)
                landed(done)
        finally:
            for task in flying:
                task.cancel()
        if await self.repo.state_of(campaign.id) not in ACTIVE:
            return None
        return min(wait_until) if wait_until else self.clock.now_ms()

    async def _prepare(self, rows: list[RecipientRow]) -> None:
        """Keys and sessions of the recipients about to be sent to, in one request (each send
        would otherwise ask the relay twice); a failure leaves it to each send."""
        try:
            await self.sender.prepare(
                [r.account_id for r in rows if not is_unresolved(r.account_id)]
            )
        except Exception as exc:
            log.warning("campaign recipients not prepared", error=type(exc).__name__)

    async def _mark(self, mark: Mark) -> None:
        """Record a recipient's state; marks of sends running side by side share a write."""
        if self._marks is None:
            await self.repo.apply_marks([mark])
        else:
            await self._marks.submit(mark)

    async def _send(self, campaign: CampaignSummary, row: RecipientRow) -> int | None:
        """Send to one recipient if the pace allows; else when to try again."""
        if is_unresolved(row.account_id):
            found = await self._resolve(campaign, row)
            if not isinstance(found, RecipientRow):
                return found
            row = found
        await self._read_standing()
        now = self.clock.now_ms()
        last = await self.last_inbound(row.account_id)
        new_customer = last is None or last <= now - WINDOW_MS
        if new_customer and self._budget == 0:
            await self._hold(campaign.id, row, now)
            return None
        assert self._bucket is not None
        wait_ms = self._bucket.take("campaigns")
        if wait_ms:
            return now + wait_ms
        # A new customer's unit of the tier's budget is taken before the send (sends run
        # side by side), and given back if the relay did not count one.
        reserved = new_customer and self._budget is not None
        if reserved:
            assert self._budget is not None
            self._budget -= 1
            self._reserved += 1
        counted = spent = False
        try:
            if row.state is not RecipientState.SENDING:
                await self._mark(Mark(campaign.id, row.account_id, RecipientState.SENDING))
            try:
                accepted = await self.sender.send_template(
                    row.phone,
                    campaign.template_name,
                    campaign.language,
                    row.parameters,
                    client_msg_id=row.client_msg_id,
                )
            except GraphError as exc:
                spent = exc.code == 131048  # the relay says the budget is spent: it stays 0
                return await self._refused(campaign, row, exc)
            except Exception as exc:
                log.warning("campaign send not answered", error=type(exc).__name__)
                await self._requeue(campaign.id, row)
                return self.clock.now_ms() + RETRY_MS
            counted = not accepted.duplicate
            await self._mark(
                Mark(
                    campaign.id,
                    row.account_id,
                    RecipientState.SENT,
                    wamid=accepted.wamid,
                    sent_ms=self.clock.now_ms(),
                    pricing=accepted.pricing,
                )
            )
            return None
        finally:
            if reserved:
                self._reserved -= 1
                if not counted and not spent and self._budget is not None:
                    self._budget += 1

    async def _resolve(
        self, campaign: CampaignSummary, row: RecipientRow
    ) -> RecipientRow | int | None:
        """Look up a number the campaign's start could not (the relay's look-ups were spent):
        the row keyed by its account, or when to try again, or ``None`` when it is done."""
        try:
            account_id = await self.sender.resolve(row.phone)
        except GraphError as exc:
            if exc.code == 130429:
                retry = exc.extra.get("retry_after_ms")
                wait = int(retry) if isinstance(retry, int | float) and retry > 0 else RETRY_MS
                await self.repo.set_recipient(
                    campaign.id, row.account_id, due_ms=self.clock.now_ms() + wait
                )
                return self.clock.now_ms() + wait
            await self._finish(campaign.id, row, RecipientState.FAILED, exc.code, exc.details)
            return None
        except Exception as exc:
            log.warning("campaign recipient not looked up", error=type(exc).__name__)
            return self.clock.now_ms() + RETRY_MS
        return await self.repo.resolve_recipient(campaign.id, row.phone, account_id)

    async def _refused(
        self, campaign: CampaignSummary, row: RecipientRow, exc: GraphError
    ) -> int | None:
        now = self.clock.now_ms()
        code = exc.code
        if code == 131050:
            await self._finish(
                campaign.id,
                row,
                RecipientState.OPTED_OUT,
                code,
                "The customer has not agreed to these messages or opted out",
            )
            return None
        if code == 131026:
            await self._finish(
                campaign.id,
                row,
                RecipientState.FAILED,
                code,
                "The customer cannot be reached on this network",
            )
            return None
        if code == 131048:
            await self._requeue(campaign.id, row)
            self._budget = 0
            await self._hold(campaign.id, row, now)
            return None
        if code in (130429, 131056):
            await self._requeue(campaign.id, row)
            retry = exc.extra.get("retry_after_ms")
            return now + (int(retry) if isinstance(retry, int | float) and retry > 0 else 1000)
        if code in (131016, 131000):
            await self._requeue(campaign.id, row)
            return now + RETRY_MS
        if code in TEMPLATE_TROUBLE:
            await self._requeue(campaign.id, row)
            await self._move(
                campaign.id,
                CampaignState.PAUSED,
                list(ACTIVE),
                reason=f"The template cannot be sent now ({code}): {exc.details}",
            )
            return None
        await self._finish(campaign.id, row, RecipientState.FAILED, code, exc.details)
        return None

    async def _finish(
        self,
        campaign_id: CampaignId,
        row: RecipientRow,
        state: RecipientState,
        code: int,
        reason: str,
    ) -> None:
        await self.repo.set_recipient(
            campaign_id, row.account_id, state=state, error_code=code, reason=reason[:256]
        )

    async def _requeue(self, campaign_id: CampaignId, row: RecipientRow) -> None:
        await self.repo.set_recipient(campaign_id, row.account_id, state=RecipientState.QUEUED)

    async def _hold(self, campaign_id: CampaignId, row: RecipientRow, now: int) -> None:
        """Put off a recipient the tier's budget has no room for until it may have: the next
        campaign reach leaving the 24-hour period, or the next read of the standing."""
        until = self._held.get(campaign_id)
        if until is None or until <= now:
            reached = await self.repo.reached_since(now - WINDOW_MS)
            reread = now + int(self.settings.quality_every_s * 1000)
            frees = reached[0] + WINDOW_MS if reached else reread
            until = self._held[campaign_id] = max(now + 1, min(frees, reread))
        await self.repo.set_recipient(campaign_id, row.account_id, due_ms=until)

    async def _move(
        self,
        campaign_id: CampaignId,
        to: CampaignState,
        only_from: list[CampaignState],
        *,
        reason: str | None = None,
        resume_ms: int | None = None,
    ) -> None:
        await self.repo.change_state(
            campaign_id,
            to,
            self.clock.now_ms(),
            only_from=only_from,
            reason=reason,
            resume_ms=resume_ms,
        )

    async def _read_standing(self, *, force: bool = False) -> None:
        """The tier's budget and the throughput, read again when due (one read at a time:
        sends run side by side)."""
        async with self._reading:
            now = self.clock.now_ms()
            every_ms = int(self.settings.quality_every_s * 1000)
            fresh = self._read_at is not None and now - self._read_at < every_ms
            if fresh and not (force and self._read_at != now):
                return
            standing = await self.standing()
            self._read_at = now
            limit = standing.get("tier_limit")
            budget = budget_of(
                int(limit) if limit is not None else None, int(standing.get("reached_24h", 0))
            )
            # Units taken by sends still waiting for the relay are not in its count yet.
            self._budget = None if budget is None else max(0, budget - self._reserved)
            self._apply_rate(standing)

    def _apply_rate(self, standing: dict[str, Any]) -> None:
        rate = min(float(standing.get("throughput_mps", 1)), self.settings.device_rate_per_s)
        if rate != self._rate or self._bucket is None:
            # The relay keeps a bucket per throughput, full when first used: so does this.
            self._rate = rate
            self._bucket = TokenBuckets(self.clock, rate, max(1, int(rate)))

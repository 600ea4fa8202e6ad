"""The pace of a campaign follows the business's throughput and tier, on a clock shared by
the relay and the gateway; quiet hours send nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from campaign_support import campaigns_of, draft, news_template
from gateway_support import RunningGateway, customer, serve_gateway
from support import Backend, MakeRelay, RunningRelay

from tresen.client import Client
from tresen.core.clock import ManualClock, SystemClock
from tresen.gateway.campaigns import CampaignState, Schedule

pytestmark = pytest.mark.slow

POLICY = {"business_throughput_mps": 3, "tier_ladder": [4, 8, 0], "verified_start_tier": 0}


@pytest.fixture
async def world(
    make_relay: MakeRelay, backend: Backend, tmp_path: Path
) -> AsyncIterator[tuple[ManualClock, RunningRelay, RunningGateway]]:
    # Starts at the real time: the customers' clients sign their opt-ins with their own clock.
    clock = ManualClock(SystemClock().now_ms())
    async with (
        make_relay(clock=clock, policy=POLICY) as relay,
        serve_gateway(relay, backend, tmp_path, clock=clock, campaigns={"max_wait_s": 600}) as gw,
    ):
        yield clock, relay, gw


async def opted_in(relay: RunningRelay, gw: RunningGateway, tmp_path: Path, n: int) -> list[Client]:
    people = [await customer(relay, tmp_path / f"c{i}") for i in range(n)]
    for person in people:
        await person.opt_in(gw.gateway.phone)
    return people


async def sent_after(
    gw: RunningGateway, campaign_id: int, clock: ManualClock, **move: float
) -> int:
    campaigns = campaigns_of(gw)
    clock.advance(**move)
    campaigns.runner.wake()
    await campaigns.runner.settled()
    summary = await campaigns.get(campaign_id)  # type: ignore[arg-type]
    return summary.counts["sent"] + summary.counts["delivered"] + summary.counts["read"]


async def test_the_pace_follows_throughput_and_tier_including_a_tier_change(
    world: tuple[ManualClock, RunningRelay, RunningGateway], tmp_path: Path
) -> None:
    clock, relay, gw = world
    await news_template(relay, gw)
    people = await opted_in(relay, gw, tmp_path, 11)
    try:
        campaigns = campaigns_of(gw)
        campaign_id = await draft(gw, people)
        await campaigns.start(campaign_id)
        # 3 a second (the throughput), and 4 new customers per 24 h (tier 0).
        assert await sent_after(gw, campaign_id, clock) == 3
        assert await sent_after(gw, campaign_id, clock, seconds=1) == 4
        waiting = await campaigns.get(campaign_id)
        assert waiting.state is CampaignState.WAITING
        assert waiting.resume_ms is not None
        assert await sent_after(gw, campaign_id, clock, seconds=30) == 4
        # A day later the relay's evaluation has moved the business up (4 of 4 used): 8 more
        # may be reached, still 3 a second.
        assert await sent_after(gw, campaign_id, clock, hours=24, seconds=1) == 7
        assert await sent_after(gw, campaign_id, clock, seconds=1) == 10
        assert await sent_after(gw, campaign_id, clock, seconds=1) == 11
        done = await campaigns.get(campaign_id)
        assert done.state is CampaignState.DONE
        assert done.counts["queued"] == 0
        assert done.counts["failed"] == 0  # never a 130429 or 131048 of its own making
    finally:
        for person in people:
            await person.close()


async def test_nothing_is_sent_in_quiet_hours(
    world: tuple[ManualClock, RunningRelay, RunningGateway], tmp_path: Path
) -> None:
    clock, relay, gw = world
    await news_template(relay, gw)
    people = await opted_in(relay, gw, tmp_path, 2)
    try:
        campaigns = campaigns_of(gw)
        now_h = (clock.now_ms() // 3_600_000) % 24
        # Quiet from this hour (UTC) for two hours.
        quiet = (f"{now_h:02d}:00", f"{(now_h + 2) % 24:02d}:00")
        campaign_id = await draft(gw, people, schedule=Schedule(quiet_hours=quiet, time_zone="UTC"))
        await campaigns.start(campaign_id)
        assert await sent_after(gw, campaign_id, clock) == 0
        assert await sent_after(gw, campaign_id, clock, minutes=50) == 0
        assert await sent_after(gw, campaign_id, clock, hours=2) == 2
    finally:
        for person in people:
            await person.close()

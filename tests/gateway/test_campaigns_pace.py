"""The pace of a campaign follows the business's throughput and tier, on a clock shared by
the relay and the gateway; quiet hours send nothing; a pause holds every send until it is
resumed, a cancel for good."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from campaign_support import (
    campaigns_of,
    draft,
    news_template,
    no_template_within,
    templates_seen,
)
from gateway_support import RunningGateway, customer, serve_gateway
from support import Backend, MakeRelay, RunningRelay

from tresen.client import Client
from tresen.core.clock import ManualClock, SystemClock
from tresen.gateway.campaigns import CampaignProblem, CampaignState, Schedule

pytestmark = pytest.mark.slow

POLICY = {"business_throughput_mps": 3, "tier_ladder": [4, 8, 0], "verified_start_tier": 0}


World = tuple[ManualClock, RunningRelay, RunningGateway]


@asynccontextmanager
async def shared_clock(
    make_relay: MakeRelay, backend: Backend, tmp_path: Path, policy: dict[str, Any]
) -> AsyncIterator[World]:
    # Starts at the real time: the customers' clients sign their opt-ins with their own clock.
    clock = ManualClock(SystemClock().now_ms())
    async with (
        make_relay(clock=clock, policy=policy) as relay,
        serve_gateway(relay, backend, tmp_path, clock=clock, campaigns={"max_wait_s": 600}) as gw,
    ):
        yield clock, relay, gw


@pytest.fixture
async def world(make_relay: MakeRelay, backend: Backend, tmp_path: Path) -> AsyncIterator[World]:
    async with shared_clock(make_relay, backend, tmp_path, POLICY) as running:
        yield running


@pytest.fixture
async def roomy_world(
    make_relay: MakeRelay, backend: Backend, tmp_path: Path
) -> AsyncIterator[World]:
    """3 a second, and the tier of a verified business (far more new customers than here)."""
    policy = {"business_throughput_mps": 3}
    async with shared_clock(make_relay, backend, tmp_path, policy) as running:
        yield running


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
    world: World, tmp_path: Path
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


async def test_nothing_is_sent_in_quiet_hours(world: World, tmp_path: Path) -> None:
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


async def test_a_pause_mid_way_holds_every_send_until_resume_finishes_it(
    roomy_world: World, tmp_path: Path
) -> None:
    clock, relay, gw = roomy_world
    await news_template(relay, gw)
    people = await opted_in(relay, gw, tmp_path, 7)
    try:
        campaigns = campaigns_of(gw)
        campaign_id = await draft(gw, people)
        await campaigns.start(campaign_id)
        assert await sent_after(gw, campaign_id, clock) == 3  # the first second's worth
        paused = await campaigns.pause(campaign_id)
        assert paused.state is CampaignState.PAUSED

        # Long enough for the rest at 3 a second: nothing moves while paused.
        assert await sent_after(gw, campaign_id, clock, seconds=10) == 3
        assert await sent_after(gw, campaign_id, clock, minutes=5) == 3
        held = await campaigns.get(campaign_id)
        assert held.state is CampaignState.PAUSED
        assert held.counts["queued"] == 4
        rows = {r.account_id: r for r in await campaigns.recipients(campaign_id)}
        waiting = [p for p in people if rows[p.account_id or ""].sent_ms is None]
        assert len(waiting) == 4
        assert all(await asyncio.gather(*(no_template_within(p) for p in waiting)))

        await campaigns.resume(campaign_id)
        assert await sent_after(gw, campaign_id, clock) == 6
        assert await sent_after(gw, campaign_id, clock, seconds=1) == 7
        done = await campaigns.get(campaign_id)
        assert done.state is CampaignState.DONE
        # Everyone has it once: the three before the pause, the four after the resume.
        got = await asyncio.gather(*(templates_seen(p, 1) for p in people))
        assert [len(bodies) for bodies in got] == [1] * 7
        assert all(await asyncio.gather(*(no_template_within(p) for p in people)))
    finally:
        for person in people:
            await person.close()


async def test_a_cancel_mid_way_sends_nothing_more_and_cannot_be_resumed(
    roomy_world: World, tmp_path: Path
) -> None:
    clock, relay, gw = roomy_world
    await news_template(relay, gw)
    people = await opted_in(relay, gw, tmp_path, 5)
    try:
        campaigns = campaigns_of(gw)
        campaign_id = await draft(gw, people)
        await campaigns.start(campaign_id)
        assert await sent_after(gw, campaign_id, clock) == 3
        cancelled = await campaigns.cancel(campaign_id)
        assert cancelled.state is CampaignState.CANCELLED
        assert await sent_after(gw, campaign_id, clock, minutes=5) == 3
        with pytest.raises(CampaignProblem, match="cancelled"):
            await campaigns.resume(campaign_id)
        after = await campaigns.get(campaign_id)
        assert after.state is CampaignState.CANCELLED
        assert after.counts["queued"] == cancelled.counts["queued"] == 2
        rows = {r.account_id: r for r in await campaigns.recipients(campaign_id)}
        never = [p for p in people if rows[p.account_id or ""].sent_ms is None]
        assert len(never) == 2
        assert all(await asyncio.gather(*(no_template_within(p) for p in never)))
    finally:
        for person in people:
            await person.close()


async def test_when_the_tier_is_spent_customers_with_an_open_window_still_get_it(
    world: World, tmp_path: Path
) -> None:
    clock, relay, gw = world
    await news_template(relay, gw)
    people = await opted_in(relay, gw, tmp_path, 9)
    new, talking = people[:6], people[6:]
    try:
        # Three wrote to the shop today: their window is open, so they cost no tier budget.
        for person in talking:
            await person.send_text(gw.gateway.phone, "Any news this week?")
        for person in talking:
            await written(gw, person)
        campaigns = campaigns_of(gw)
        # Spread over a second, in this order: the talking customers come after the new ones.
        campaign_id = await draft(gw, people, schedule=Schedule(quiet_hours=(), spread_s=1))
        await campaigns.start(campaign_id)
        assert await sent_after(gw, campaign_id, clock) == 1
        # 3 a second; tier 0 lets 4 new customers be reached.
        assert await sent_after(gw, campaign_id, clock, seconds=1) == 4
        assert await sent_after(gw, campaign_id, clock, seconds=1) == 7
        waiting = await campaigns.get(campaign_id)
        assert waiting.state is CampaignState.WAITING
        rows = {r.account_id: r for r in await campaigns.recipients(campaign_id)}
        assert all(rows[p.account_id or ""].sent_ms is not None for p in talking)
        assert [rows[p.account_id or ""].sent_ms is not None for p in new] == [True] * 4 + [
            False
        ] * 2
        got = await asyncio.gather(*(templates_seen(p, 1) for p in talking))
        assert [len(bodies) for bodies in got] == [1, 1, 1]

        # A day later the business is on the next tier: the two left go.
        assert await sent_after(gw, campaign_id, clock, hours=24, seconds=1) == 9
        done = await campaigns.get(campaign_id)
        assert done.state is CampaignState.DONE
        assert done.counts["failed"] == 0  # never a 131048 of its own making
    finally:
        for person in people:
            await person.close()


async def written(gw: RunningGateway, person: Client, within_s: float = 15) -> None:
    """Wait until the gateway has recorded a message from ``person``."""
    assert person.account_id is not None
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        contact = await gw.gateway.store.contact(person.account_id)
        if contact is not None and contact.last_inbound_ms is not None:
            return
        assert asyncio.get_running_loop().time() < deadline, "the gateway never got it"
        await asyncio.sleep(0.02)

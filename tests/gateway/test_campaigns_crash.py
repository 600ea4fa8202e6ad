"""``kill -9`` of the gateway in the middle of a campaign: after a restart the campaign
completes, and every recipient received it exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from campaign_support import campaigns_of, draft, news_template
from gateway_support import (
    GatewayProcess,
    become_business,
    customer,
    gateway_settings,
    relay_codes,
    run_gateway,
)
from support import Backend, MakeRelay, RunningRelay, drop_schema

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.core.db import Database
from tresen.gateway.campaigns import CampaignId, CampaignRepo, CampaignState, RecipientState
from tresen.gateway.campaigns.model import CampaignSummary
from tresen.gateway.database import open_database
from tresen.gateway.ids import decode_wamid
from tresen.relay.billing.service import Month

pytestmark = pytest.mark.slow

RECIPIENTS = 30
THROUGHPUT = 5
"""Messages a second the relay allows the business: the campaign takes about six seconds."""
KILL_AFTER = 10
"""Recipients handed to the relay when the gateway is killed."""
GONE = (RecipientState.SENT, RecipientState.DELIVERED, RecipientState.READ)
PENDING = (RecipientState.QUEUED, RecipientState.SENDING)


def handed_over(summary: CampaignSummary) -> int:
    return sum(summary.counts[str(s)] for s in GONE)


async def watch(
    repo: CampaignRepo,
    campaign_id: CampaignId,
    done: Callable[[CampaignSummary], bool],
    within_s: float = 60,
) -> CampaignSummary:
    """Read the campaign in the gateway's database until ``done(summary)``."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        summary = await repo.get(campaign_id)
        assert summary is not None
        if done(summary):
            return summary
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the campaign did not get there: {summary.counts}")
        await asyncio.sleep(0.02)


async def templates_received(
    person: Client, business: str, within_s: float = 30
) -> list[tuple[str, str]]:
    """The template messages ``person`` received from ``business`` (message id, text), once
    the first has arrived and nothing more for a second."""
    got: list[MessageEvent] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        wait_s = deadline - loop.time() if not got else 1.0
        try:
            event = await person.next_event(max(0.01, wait_s))
        except TimeoutError:
            if got:
                return [(e.message_id, e.template.body) for e in got if e.template]
            raise
        if isinstance(event, MessageEvent) and event.template is not None:
            assert event.chat == business
            got.append(event)


async def test_a_campaign_survives_kill_9_and_reaches_everyone_exactly_once(
    make_relay: MakeRelay, backend: Backend, tmp_path: Path
) -> None:
    policy = {"business_throughput_mps": THROUGHPUT}
    async with make_relay(policy=policy) as relay:
        settings, schema = gateway_settings(relay, backend, tmp_path)
        people: list[Client] = []
        db: Database | None = None
        child = GatewayProcess(
            settings, tmp_path / "gateway.log", TRESEN_GATEWAY_CAMPAIGNS__MAX_WAIT_S="0.5"
        )
        try:
            # Set up in this process: the business, its template, customers who agreed, and
            # the campaign started (its recipients queued) while the runner here is stopped.
            async with run_gateway(settings, codes=relay_codes(relay)) as first:
                await become_business(relay, first)
                await news_template(relay, first)
                for i in range(RECIPIENTS):
                    person = await customer(relay, tmp_path / f"c{i}")
                    people.append(person)
                    await person.opt_in(first.gateway.phone)
                campaigns = campaigns_of(first)
                await campaigns.runner.close()
                campaign_id = await draft(first, people)
                started = await campaigns.start(campaign_id)
                business = first.gateway.account_id
            assert started.counts[str(RecipientState.QUEUED)] == RECIPIENTS

            db = await open_database(settings)
            repo = CampaignRepo(db)
            await child.start()
            at_kill = await watch(repo, campaign_id, lambda s: handed_over(s) >= KILL_AFTER)
            child.kill()
            at_kill = await repo.get(campaign_id) or at_kill
            assert KILL_AFTER <= handed_over(at_kill) < RECIPIENTS  # the kill landed mid-way
            assert at_kill.state is CampaignState.RUNNING

            # A kill between the relay's answer and the ``sent`` mark leaves the recipient
            # ``sending``; as a kill seldom hits those milliseconds, the last recipient sent
            # is put back as such a kill would have left it.
            rows = await repo.recipients(campaign_id)
            sending = [r for r in rows if r.state is RecipientState.SENDING]
            if not sending:
                last = max((r for r in rows if r.sent_ms is not None), key=lambda r: r.sent_ms or 0)
                await repo.set_recipient(campaign_id, last.account_id, state=RecipientState.SENDING)
                sending = [last]
            wamids_before = {r.account_id: r.wamid for r in sending}

            await child.start()
            done = await watch(repo, campaign_id, lambda s: s.state is CampaignState.DONE)
            await child.stop()

            # Every recipient handed to the relay exactly once, and nothing left to send.
            assert handed_over(done) == RECIPIENTS, done.counts
            assert all(done.counts[str(s)] == 0 for s in PENDING), done.counts
            rows = await repo.recipients(campaign_id)
            assert len({r.wamid for r in rows}) == RECIPIENTS
            for account_id, wamid in wamids_before.items():
                again = next(r for r in rows if r.account_id == account_id)
                if wamid is not None:  # the repeat was the relay's duplicate of the first send
                    assert again.wamid == wamid

            # Each customer got one template message, with their own name in it: by message
            # id, by text, and as their app keeps it.
            received = await asyncio.gather(
                *(templates_received(person, business) for person in people)
            )
            by_account = {r.account_id: r for r in rows}
            for i, (person, got) in enumerate(zip(people, received, strict=True)):
                assert person.account_id is not None
                wamid = by_account[person.account_id].wamid
                assert wamid is not None
                assert got == [(decode_wamid(wamid), f"Hi Customer{i}, this week: fresh rolls.")]
                kept = [m.message_id for m in person.store.messages(business) if not m.outgoing]
                assert kept == [got[0][0]]

            # The relay charged each recipient once (at delivery).
            await charged_once_each(relay, business, people)
        finally:
            await child.stop()
            for person in people:
                await person.close()
            if db is not None:
                await db.dispose()
            if schema is not None:
                await drop_schema(schema)


async def charged_once_each(relay: RunningRelay, business: str, people: list[Client]) -> None:
    now = dt.datetime.now(dt.UTC)
    month = Month(now.year, now.month)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        statement = await relay.ctx.billing.statement(business, month)  # type: ignore[arg-type]
        if statement.items_total >= RECIPIENTS:
            break
        assert asyncio.get_running_loop().time() < deadline, statement.items_total
        await asyncio.sleep(0.05)
    assert statement.items_total == RECIPIENTS
    assert sorted(i.recipient_account for i in statement.items) == sorted(
        p.account_id or "" for p in people
    )

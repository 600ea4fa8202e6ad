"""Campaigns through a real relay: who never gets one, parameters per recipient, the cost
preview (pause, resume and cancel: test_campaigns_pace.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from campaign_support import (
    campaigns_of,
    draft,
    news_template,
    no_template_within,
    templates_seen,
    until,
)
from gateway_support import RunningGateway, customer, serve_gateway
from support import Backend, RunningRelay

from tresen.gateway.campaigns import CampaignState, RecipientState
from tresen.gateway.campaigns.model import CampaignSummary
from tresen.gateway.campaigns.repo import is_unresolved

pytestmark = pytest.mark.slow


def finished(summary: CampaignSummary) -> bool:
    return summary.state is CampaignState.DONE


async def test_a_campaign_reaches_only_customers_who_agreed_and_did_not_block(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    await news_template(relay, gw)
    agreed = await customer(relay, tmp_path / "agreed")
    never_asked = await customer(relay, tmp_path / "never")
    stopped = await customer(relay, tmp_path / "stopped")
    blocker = await customer(relay, tmp_path / "blocker")
    later_out = await customer(relay, tmp_path / "later")
    people = [agreed, never_asked, stopped, blocker, later_out]
    try:
        for person in (agreed, stopped, blocker, later_out):
            await person.opt_in(gw.gateway.phone)
        await stopped.send_text(gw.gateway.phone, "STOP")
        await blocker.block(gw.gateway.phone)
        campaigns = campaigns_of(gw)
        campaign_id = await draft(gw, people)
        # The opt-out lands after the campaign was made, before its turn.
        await later_out.opt_out(gw.gateway.phone, ["marketing"])
        await campaigns.start(campaign_id)
        summary = await until(campaigns, campaign_id, finished)

        assert await templates_seen(agreed, 1) == ["Hi Customer0, this week: fresh rolls."]
        by_account = {r.account_id: r for r in await campaigns.recipients(campaign_id)}
        assert by_account[agreed.account_id].state is RecipientState.SENT or by_account[
            agreed.account_id
        ].state in (RecipientState.DELIVERED, RecipientState.READ)
        for person in (never_asked, stopped, later_out):
            row = by_account[person.account_id]
            assert row.state is RecipientState.OPTED_OUT, row
            assert row.error_code == 131050
        blocked = by_account[blocker.account_id]
        assert blocked.state is RecipientState.FAILED
        assert blocked.reason is not None
        assert "block" not in blocked.reason.lower()
        assert summary.counts["opted_out"] == 3
        for person in (never_asked, stopped, blocker, later_out):
            assert await no_template_within(person)
    finally:
        for person in people:
            await person.close()


async def test_numbers_the_relay_would_not_look_up_yet_still_get_the_campaign_once(
    make_relay: Any, backend: Backend, tmp_path: Path
) -> None:
    # The relay looks up two numbers at once, then one every 5 s: a campaign to five new
    # numbers meets its limit when it starts.
    async with (
        make_relay(limits={"lookup_burst": 2, "lookups_per_hour": 720}) as relay,
        serve_gateway(relay, backend, tmp_path / "gw") as gw,
    ):
        await news_template(relay, gw)
        people = [await customer(relay, tmp_path / f"c{i}") for i in range(5)]
        try:
            for person in people:
                await person.opt_in(gw.gateway.phone)
            campaigns = campaigns_of(gw)
            campaign_id = await draft(gw, people)
            await campaigns.start(campaign_id)
            keyed = [r.account_id for r in await campaigns.recipients(campaign_id)]
            assert any(is_unresolved(k) for k in keyed)  # some were put off
            assert len(keyed) == 5

            summary = await until(campaigns, campaign_id, finished, within_s=90)

            rows = await campaigns.recipients(campaign_id)
            assert sorted(r.account_id for r in rows) == sorted(p.account_id for p in people)
            sent = (RecipientState.SENT, RecipientState.DELIVERED, RecipientState.READ)
            assert all(r.state in sent for r in rows), rows
            assert summary.counts["opted_out"] == summary.counts["failed"] == 0
            for i, person in enumerate(people):
                assert await templates_seen(person, 1) == [
                    f"Hi Customer{i}, this week: fresh rolls."
                ]
                assert await no_template_within(person)  # once
        finally:
            for person in people:
                await person.close()


async def test_parameters_per_recipient_and_a_missing_attribute_is_never_sent(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    await news_template(relay, gw)
    anna = await customer(relay, tmp_path / "anna")
    ben = await customer(relay, tmp_path / "ben")
    try:
        for person in (anna, ben):
            await person.opt_in(gw.gateway.phone)
        campaigns = campaigns_of(gw)
        campaign_id = await draft(gw, [anna, ben], names=["Anna", ""])
        await campaigns.start(campaign_id)
        await until(campaigns, campaign_id, finished)
        assert await templates_seen(anna, 1) == ["Hi Anna, this week: fresh rolls."]
        ben_row = next(
            r for r in await campaigns.recipients(campaign_id) if r.account_id == ben.account_id
        )
        assert ben_row.state is RecipientState.FAILED
        assert ben_row.reason == "The recipient has no name"
        assert await no_template_within(ben)
    finally:
        await anna.close()
        await ben.close()


async def test_the_cost_preview_prices_each_number_by_its_country(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    await news_template(relay, gw)
    people = [await customer(relay, tmp_path / f"c{i}") for i in range(3)]
    try:
        campaigns = campaigns_of(gw)
        campaign_id = await draft(gw, people)
        preview = await campaigns.preview_cost(campaign_id)
        # Test numbers are German: marketing is 0.131 EUR each on the default card.
        assert {p.phone[:3] for p in people} == {"+49"}
        assert preview.currency == "EUR"
        assert preview.recipients == 3
        assert preview.total_micros == 3 * 131_000
        assert preview.by_country == {"DE": (3, 393_000)}
    finally:
        for person in people:
            await person.close()

"""Helpers of the campaign tests: a marketing template, customers and counting what they got."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from gateway_support import RunningGateway, approved_template

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.core.clock import SystemClock
from tresen.core.http import tls_context
from tresen.gateway.campaigns import (
    AudienceSpec,
    CampaignDraft,
    CampaignId,
    Campaigns,
    Recipient,
    Schedule,
)
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import Agents, Role
from tresen.gateway.inbox.tokens import AgentTokens

API = "/inbox/api/v1"
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

NEWS: dict[str, Any] = {
    "name": "weekly_news",
    "language": "en_US",
    "category": "MARKETING",
    "components": [
        {
            "type": "BODY",
            "text": "Hi {{1}}, this week: {{2}}.",
            "example": {"body_text": [["Anna", "new bread"]]},
        },
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
    ],
}

BODY = [
    {
        "type": "body",
        "parameters": [
            {"type": "text", "text": "{{name}}"},
            {"type": "text", "text": "{{offer}}"},
        ],
    }
]

ALWAYS = Schedule(quiet_hours=())
"""No quiet hours: the tests run at any time of day."""


def campaigns_of(gw: RunningGateway) -> Campaigns:
    found: Campaigns = gw.app.state.campaigns
    return found


async def news_template(relay: Any, gw: RunningGateway) -> None:
    await approved_template(relay, gw, NEWS)


async def draft(
    gw: RunningGateway,
    people: list[Client],
    *,
    offer: str | None = "fresh rolls",
    schedule: Schedule = ALWAYS,
    names: list[str] | None = None,
) -> CampaignId:
    recipients = tuple(
        Recipient(
            phone=p.phone,
            name=(names[i] if names else f"Customer{i}"),
            attributes={} if offer is None else {"offer": offer},
        )
        for i, p in enumerate(people)
    )
    return await campaigns_of(gw).create(
        CampaignDraft(
            name="News",
            template_name="weekly_news",
            language="en_US",
            audience=AudienceSpec(recipients=recipients),
            components=BODY,
            schedule=schedule,
        )
    )


async def templates_seen(client: Client, count: int, within_s: float = 20) -> list[str]:
    """The next ``count`` template bodies ``client`` receives."""
    bodies: list[str] = []
    deadline = asyncio.get_running_loop().time() + within_s
    while len(bodies) < count:
        left = deadline - asyncio.get_running_loop().time()
        event = await client.next_event(max(0.01, left))
        if isinstance(event, MessageEvent) and event.template is not None:
            bodies.append(event.template.body)
    return bodies


async def until(
    campaigns: Campaigns, campaign_id: CampaignId, done: Any, within_s: float = 30
) -> Any:
    """Poll the campaign (through its actions) until ``done(summary)``."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        summary = await campaigns.get(campaign_id)
        if done(summary):
            return summary
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"campaign did not get there: {summary}")
        await asyncio.sleep(0.05)


async def no_template_within(client: Client, within_s: float = 0.5) -> bool:
    """Whether ``client`` receives no template message for ``within_s`` seconds."""
    deadline = asyncio.get_running_loop().time() + within_s
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            event = await client.next_event(left)
        except TimeoutError:
            return True
        if isinstance(event, MessageEvent) and event.template is not None:
            return False
    return True


@pytest.fixture
async def tokens(gw: RunningGateway) -> AsyncIterator[dict[str, str]]:
    """An owner's and an agent's personal access tokens."""
    db = await open_database(gw.settings)
    agents = Agents(db, SystemClock(), hasher=FAST)
    made = {}
    for username, role in (("anna", Role.OWNER), ("cem", Role.AGENT)):
        agent = await agents.create(username, username.title(), role, "Korrekt Pferd Batterie")
        _listed, made[username] = await AgentTokens(db, agents.clock, agents).create(
            agent.id, "tests"
        )
    yield made
    await db.dispose()


def api(gw: RunningGateway, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=tls_context(),
        base_url=gw.url + API,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )

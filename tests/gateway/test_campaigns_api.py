"""Campaigns through the inbox's JSON API: a newsletter's subscribers as the audience, the
cost before it goes, a test send, start, results and the CSV; only owners and admins change
campaigns, and bad input is a 4xx in the API's envelope."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from campaign_support import BODY, api, news_template, templates_seen, tokens
from gateway_support import RunningGateway, customer
from support import RunningRelay

from tresen.client import Client
from tresen.gateway.subscribers import Subscribers
from tresen.gateway.subscribers.model import ListSpec, Purpose, State

__all__ = ["tokens"]  # the fixture


async def subscribed(gw: RunningGateway, people: list[Client]) -> int:
    """A marketing list the customers subscribed to (their own signed opt-in)."""
    subscribers: Subscribers = gw.app.state.subscribers
    made = await subscribers.lists.create_list(
        ListSpec(
            name="Wochenpost",
            purpose=Purpose.MARKETING,
            keyword="NEWS",
            description="News",
            confirmation="Möchten Sie unsere Wochenpost?",
        )
    )
    for person in people:
        await person.send_text(gw.gateway.phone, "START NEWS")
        await person.send_text(gw.gateway.phone, "START")
    for _ in range(400):
        listed = await subscribers.lists.get_list(made.id)
        if listed is not None and listed.counts.get(State.SUBSCRIBED, 0) == len(people):
            return made.id
        await asyncio.sleep(0.05)
    raise AssertionError(f"not subscribed: {listed}")


async def test_a_campaign_to_a_newsletter_through_the_api(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path, tokens: dict[str, str]
) -> None:
    await news_template(relay, gw)
    anna = await customer(relay, tmp_path / "anna")
    ben = await customer(relay, tmp_path / "ben")
    outsider = await customer(relay, tmp_path / "outsider")
    owner, agent = api(gw, tokens["anna"]), api(gw, tokens["cem"])
    try:
        list_id = await subscribed(gw, [anna, ben])
        body: dict[str, Any] = {
            "name": "Wochenpost 49",
            "template": "weekly_news",
            "language": "en_US",
            "audience": {"lists": [list_id]},
            "components": [
                {
                    **BODY[0],
                    "parameters": [
                        {"type": "text", "text": "there"},
                        {"type": "text", "text": "fresh rolls"},
                    ],
                }
            ],
            "schedule": {"quiet_hours": []},
        }
        refused = await agent.post("/campaigns", json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
        made = await owner.post("/campaigns", json=body)
        assert made.status_code == 201, made.text
        campaign = made.json()
        assert (campaign["state"], campaign["category"]) == ("draft", "MARKETING")

        cost = (await owner.get(f"/campaigns/{campaign['id']}/cost")).json()
        assert cost["recipients"] == 2  # the two subscribers, not the outsider
        assert cost["total_micros"] > 0
        assert cost["currency"] == "EUR"

        tested = await owner.post(
            f"/campaigns/{campaign['id']}/test", json={"phone": outsider.phone}
        )
        # A test send is still a marketing template: the outsider never agreed.
        assert tested.status_code == 409
        assert "131050" in tested.json()["error"]["message"]

        started = await owner.post(f"/campaigns/{campaign['id']}/start")
        assert started.status_code == 200, started.text
        assert await templates_seen(anna, 1) == ["Hi there, this week: fresh rolls."]
        assert await templates_seen(ben, 1) == ["Hi there, this week: fresh rolls."]
        for _ in range(400):
            shown = (await agent.get(f"/campaigns/{campaign['id']}")).json()
            if shown["state"] == "done":
                break
            await asyncio.sleep(0.05)
        assert shown["state"] == "done", shown
        results = (await agent.get(f"/campaigns/{campaign['id']}/results")).json()
        assert results["sent"] == 2
        rows = list(
            csv.DictReader(
                io.StringIO((await agent.get(f"/campaigns/{campaign['id']}/results.csv")).text)
            )
        )
        assert sorted(r["phone"] for r in rows) == sorted([anna.phone, ben.phone])
        assert {r["state"] for r in rows} <= {"sent", "delivered", "read"}

        again = await owner.post(f"/campaigns/{campaign['id']}/start")
        assert again.status_code == 400
        assert (await owner.get("/campaigns/999999")).status_code == 404
        bad = await owner.post("/campaigns", json={**body, "audience": {"recipients": [{}]}})
        assert bad.status_code == 400
        # Thousands of recipients in one request (far over the API's usual 64 KiB body).
        many = {"recipients": [{"phone": f"+49151{i:08d}"} for i in range(3_000)]}
        big = await owner.post("/campaigns", json={**body, "audience": many})
        assert big.status_code == 201, big.text
        unknown = await owner.post("/campaigns", json={**body, "template": "no_such"})
        assert unknown.status_code == 400
        # Conditions on the recipients' attributes: "has" takes anyone with a value.
        attributed = {
            "recipients": [
                {"phone": anna.phone, "attributes": {"loyalty_id": "A-17"}},
                {"phone": ben.phone, "attributes": {"city": "Berlin"}},
            ],
            "conditions": [{"attribute": "loyalty_id", "op": "has"}],
        }
        having = await owner.post("/campaigns", json={**body, "audience": attributed})
        assert having.status_code == 201, having.text
        having_cost = (await owner.get(f"/campaigns/{having.json()['id']}/cost")).json()
        assert having_cost["recipients"] == 1
        wrong = {**attributed, "conditions": [{"attribute": "city", "op": "has", "values": ["x"]}]}
        assert (await owner.post("/campaigns", json={**body, "audience": wrong})).status_code == 400
        no_list = await owner.post("/campaigns", json={**body, "audience": {"lists": [4242]}})
        assert (await owner.get(f"/campaigns/{no_list.json()['id']}/cost")).status_code == 400
    finally:
        await owner.aclose()
        await agent.aclose()
        for person in (anna, ben, outsider):
            await person.close()


def campaigns_cli(gw: RunningGateway, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tresen", "gateway", "campaigns", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "TRESEN_GATEWAY_URL": gw.url,
            "TRESEN_INBOX_TOKEN": token,
            "COLUMNS": "200",
        },
        check=False,
    )


async def test_the_command_line_makes_starts_follows_and_reports_a_campaign(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path, tokens: dict[str, str]
) -> None:
    await news_template(relay, gw)
    people = [await customer(relay, tmp_path / f"c{i}") for i in range(3)]
    try:
        for person in people:
            await person.opt_in(gw.gateway.phone)
        table = tmp_path / "recipients.csv"
        table.write_text(
            "phone,name,offer\n"
            + "".join(f"{p.phone},Kunde{i},Brezeln\n" for i, p in enumerate(people)),
            encoding="utf-8",
        )
        components = json.dumps(
            [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "{{name}}"},
                        {"type": "text", "text": "{{offer}}"},
                    ],
                }
            ]
        )
        owner = tokens["anna"]
        made = await asyncio.to_thread(
            campaigns_cli,
            gw,
            owner,
            "create",
            "--name",
            "Brezeltag",
            "--template",
            "weekly_news",
            "--language",
            "en_US",
            "--csv",
            str(table),
            "--components",
            components,
            "--quiet-hours",
            "none",
        )
        assert made.returncode == 0, made.stdout + made.stderr
        campaign = made.stdout.split("Campaign ")[1].split()[0]
        cost = await asyncio.to_thread(campaigns_cli, gw, owner, "cost", campaign)
        assert "3 recipients" in cost.stdout, cost.stdout
        started = await asyncio.to_thread(campaigns_cli, gw, owner, "start", campaign, "--watch")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "3/3" in started.stdout
        for i, person in enumerate(people):
            assert await templates_seen(person, 1) == [f"Hi Kunde{i}, this week: Brezeln."]
        out = tmp_path / "results.csv"
        results = await asyncio.to_thread(
            campaigns_cli, gw, tokens["cem"], "results", campaign, "--csv", str(out)
        )
        assert results.returncode == 0, results.stdout + results.stderr
        assert "sent" in results.stdout
        assert len(out.read_text(encoding="utf-8").splitlines()) == 4
        # An agent may read campaigns but not start or cancel them.
        refused = await asyncio.to_thread(campaigns_cli, gw, tokens["cem"], "cancel", campaign)
        assert refused.returncode == 1
        assert "forbidden" in refused.stdout
    finally:
        for person in people:
            await person.close()

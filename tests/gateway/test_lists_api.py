"""Subscriber lists through the inbox's JSON API: make a newsletter, customers subscribe by
keyword, the list shows them, a CSV import reports every row, the link and QR code, and only
owners and admins change lists."""

from __future__ import annotations

import asyncio
from pathlib import Path

from campaign_support import api, tokens
from gateway_support import RunningGateway, customer
from support import RunningRelay

from tresen.client.events import MessageEvent

__all__ = ["tokens"]  # the fixture, shared with the campaign API's tests


async def test_a_newsletter_through_the_api(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path, tokens: dict[str, str]
) -> None:
    owner, agent = api(gw, tokens["anna"]), api(gw, tokens["cem"])
    anna = await customer(relay, tmp_path / "anna")
    try:
        spec = {
            "name": "Wochenpost",
            "purpose": "marketing",
            "keyword": "news",
            "description": "Jeden Freitag",
            "confirmation": "Möchten Sie die Wochenpost?",
        }
        assert (await agent.post("/lists", json=spec)).status_code == 403
        made = await owner.post("/lists", json=spec)
        assert made.status_code == 201, made.text
        newsletter = made.json()
        assert newsletter["keyword"] == "NEWS"
        bad = await owner.post("/lists", json={**spec, "name": "Zweite", "keyword": "STOP"})
        assert bad.status_code == 400
        assert "STOP" in bad.json()["error"]["message"]

        await anna.send_text(gw.gateway.phone, "START NEWS")
        while True:
            event = await anna.next_event(within_s=20)
            if isinstance(event, MessageEvent) and not event.outgoing:
                break
        await anna.send_text(gw.gateway.phone, "START")
        path = f"/lists/{newsletter['id']}"
        for _ in range(400):
            shown = (await agent.get(path)).json()
            if shown["counts"]["subscribed"] == 1:
                break
            await asyncio.sleep(0.05)
        assert shown["counts"]["subscribed"] == 1, shown
        members = (await agent.get(f"{path}/subscribers?state=subscribed")).json()
        assert [m["phone"] for m in members["subscribers"]] == [anna.phone]

        link = (await agent.get(f"{path}/link")).json()["link"]
        assert link.endswith(f"/app/#/chat/{gw.gateway.account_id}?text=START%20NEWS")
        svg = await agent.get(f"{path}/qr.svg")
        assert svg.headers["content-type"] == "image/svg+xml"
        assert svg.text.lstrip().startswith(("<?xml", "<svg"))
        png = await agent.get(f"{path}/qr.png")
        assert png.content.startswith(b"\x89PNG")

        upload = "phone,name\n+49 151 0000 0000,Nobody\nnot-a-number,X\n"
        imported = await owner.post(
            f"{path}/import", content=upload.encode(), headers={"Content-Type": "text/csv"}
        )
        assert imported.status_code == 200, imported.text
        report = imported.json()
        assert (report["accepted"], report["refused"]) == (0, 2)
        assert [r["row"] for r in report["rows"]] == [2, 3]
        assert all(r["reason"] for r in report["rows"])
        assert report["rows"][1]["code"] == "not_a_phone"
        assert report["rows"][1]["reason"] == "not a phone number (write it like +4915112345678)"
        # The import is kept: listed, and its report read again, by any agent.
        listed = (await agent.get(f"{path}/imports")).json()["imports"]
        assert [(i["id"], i["accepted"], i["refused"]) for i in listed] == [(report["id"], 0, 2)]
        again = await agent.get(f"{path}/imports/{report['id']}")
        assert again.json()["rows"] == report["rows"]
        assert again.json()["complete"] is True
        assert (await agent.get(f"{path}/imports/999")).json()["error"]["code"] == "not_found"
        too_large = await owner.post(
            f"{path}/import",
            content=b"phone\n" + b"+4915100000000\n" * 800_000,
            headers={"Content-Type": "text/csv"},
        )
        assert too_large.status_code == 413

        assert (await agent.delete(f"{path}/subscribers/{anna.account_id}")).status_code == 403
        removed = await owner.delete(f"{path}/subscribers/{anna.account_id}")
        assert removed.json()["counts"]["subscribed"] == 0
        assert (await owner.delete(path)).json()["lists"] == []
        assert (await agent.get(path)).status_code == 404
    finally:
        await owner.aclose()
        await agent.aclose()
        await anna.close()

"""``tresen chat`` with a business's reply buttons, template quick replies and typing
indicator, as a script meets them: ``listen`` prints them (``--json`` with their options),
``choose`` answers them; the business an SDK client, the customer's commands child processes
against a relay in this process (with a clock that stands still, so the 25 s of "typing…"
do not run out while a process starts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chat_support import run_chat
from sqlalchemy import insert
from support import DELIVERY_TOMORROW, registered_client

from tresen.client import Client
from tresen.core.clock import ManualClock
from tresen.relay.schema import consents
from tresen.wire.e2e import Button, Interactive, InteractiveKind

pytestmark = pytest.mark.slow

YES_NO = Interactive(
    type=InteractiveKind.BUTTON,
    header="Parcel #4711",
    body="May we leave it with a neighbour?",
    buttons=[Button(id="yes", title="Yes"), Button(id="no", title="No, keep it")],
)


async def test_listen_shows_the_choices_and_choose_answers_them(
    make_relay: Any, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        shop_dir, folder = tmp_path / "shop", tmp_path / "customer"
        shop: Client = await registered_client(
            relay.url, relay.sms_file, shop_dir, relay.next_phone()
        )
        try:
            await shop.save_business_profile(display_name="Tresen Versand")
            created = await shop.api.submit_template(DELIVERY_TOMORROW)
            token = await relay.ctx.operator.create_token("ops", by="test")
            r = await relay.http.post(
                f"/v1/admin/templates/{created['id']}/approve",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text
            customer = await registered_client(
                relay.url, relay.sms_file, folder, relay.next_phone()
            )
            phone, customer_id = customer.phone or "", customer.account_id
            await customer.close()
            async with relay.ctx.db.write() as conn:
                await conn.execute(
                    insert(consents).values(
                        business_account=shop.account_id,
                        customer_account=customer_id,
                        scope="utility",
                        state="opted_in",
                        source="customer",
                        updated_ms=clock.now_ms(),
                    )
                )
            business = shop.phone or ""

            [asked] = (
                await run_chat(folder, "send", "--to", business, "--text", "Parcel?", "--json")
            ).records()
            await shop.typing(phone, asked["message_id"])
            question = await shop.send_interactive(phone, YES_NO)

            listened = await run_chat(folder, "listen", "--json", "--count", "1", "--timeout", "60")
            records = [r for r in listened.records() if r["event"] in ("typing", "message")]
            assert records[0]["event"] == "typing"
            assert (records[0]["chat"], records[0]["message_id"]) == (
                shop.account_id,
                asked["message_id"],
            )
            assert records[0]["until_ms"] > 0
            message = records[1]
            assert (message["message_id"], message["type"]) == (question.message_id, "interactive")
            assert message["text"] == (
                "Parcel #4711\nMay we leave it with a neighbour?\n[1] Yes\n[2] No, keep it"
            )
            assert message["interactive"] == {
                "type": "button",
                "header": "Parcel #4711",
                "body": "May we leave it with a neighbour?",
                "footer": None,
                "button": None,
            }
            assert [(o["number"], o["id"], o["title"]) for o in message["options"]] == [
                (1, "yes", "Yes"),
                (2, "no", "No, keep it"),
            ]

            refused = await run_chat(folder, "choose", business, question.message_id, "maybe")
            assert refused.returncode == 1
            assert (
                "nothing was sent: “maybe” is not one of the choices: 1 (yes: Yes), 2 (no: No, "
                "keep it)"
            ) in refused.stderr
            [chosen] = (
                await run_chat(folder, "choose", business, question.message_id, "2", "--json")
            ).records()
            assert (chosen["reply_to"], chosen["option"]["id"]) == (question.message_id, "no")

            components = [
                {"type": "body", "parameters": [{"type": "text", "text": "#4711"}]},
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": 0,
                    "parameters": [{"type": "text", "text": "4711"}],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": 1,
                    "parameters": [{"type": "payload", "payload": "NEIGHBOUR-4711"}],
                },
            ]
            offer = await shop.send_template(phone, created["id"], "en_US", components=components)
            human = (await run_chat(folder, "listen", "--count", "1", "--timeout", "60")).ok
            assert (
                "[template · utility] Your parcel #4711 arrives tomorrow. / [Track] "
                "https://shop.example/o/4711 / [1] Leave with neighbour / [2] Stop updates"
            ) in human
            assert f"  answer: tresen chat choose {business} {offer.message_id} NUMBER" in human
            tapped = (await run_chat(folder, "choose", business, offer.message_id, "1")).ok
            assert len(tapped.strip()) == 32  # the answer's message id
        finally:
            await shop.close()

        # What the business's device receives, as its own listener prints it.
        seen = (
            await run_chat(shop_dir, "listen", "--json", "--count", "3", "--timeout", "60")
        ).records()
        replies = [r for r in seen if r["event"] == "message"][1:]
        assert [(r["type"], r["text"], r["reply_to"]) for r in replies] == [
            ("interactive_reply", "No, keep it", question.message_id),
            ("button_reply", "Leave with neighbour", offer.message_id),
        ]
        assert replies[0]["reply"] == {
            "kind": "button_reply",
            "id": "no",
            "title": "No, keep it",
            "description": None,
        }
        assert replies[1]["payload"] == "NEIGHBOUR-4711"
        [delivered] = [
            r for r in seen if r["event"] == "status" and r["message_id"] == question.message_id
        ]
        assert delivered["status"] == "delivered"
        assert delivered["server_ms"] == clock.now_ms()
        assert delivered["pricing"] == {
            "billable": False,
            "pricing_model": "PMP",
            "type": "free_customer_service",
            "category": "service",
        }

"""``tresen chat`` consent, block and report commands and template messages in ``listen
--json``, as a script uses them: the customer's commands in child processes against a relay
in this process, the business an SDK client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chat_support import run_chat
from support import RunningRelay, registered_client

pytestmark = pytest.mark.slow

ORDER: dict[str, Any] = {
    "name": "order_shipped",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "BODY",
            "text": "Hi {{1}}, your order ships on {{2}}.",
            "example": {"body_text": [["Anna", "Monday"]]},
        },
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
    ],
}


async def test_consents_blocks_reports_and_template_messages_from_scripts(
    relay: RunningRelay, tmp_path: Path
) -> None:
    shop = await registered_client(relay.url, relay.sms_file, tmp_path / "shop", relay.next_phone())
    try:
        await shop.save_business_profile(display_name="Tresen Air", category="TRAVEL")
        created = await shop.api.submit_template(ORDER)
        token = await relay.ctx.operator.create_token("ops", by="test")
        r = await relay.http.post(
            f"/v1/admin/templates/{created['id']}/approve",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        folder = tmp_path / "customer"
        customer = await registered_client(relay.url, relay.sms_file, folder, relay.next_phone())
        phone = customer.phone
        assert phone is not None
        await customer.close()
        business = shop.phone or ""

        assert (
            await run_chat(folder, "optin", business)
        ).ok == "Tresen Air: utility on, marketing on\n"
        optout = await run_chat(folder, "optout", "tresen air", "--scope", "marketing")
        assert optout.ok == "Tresen Air: marketing off\n"
        assert (await run_chat(folder, "consents")).ok == (
            "Tresen Air · utility on (you agreed) · marketing off (you withdrew)  "
            f"({shop.account_id})\n"
        )
        [line] = json.loads((await run_chat(folder, "consents", "--json")).ok)
        assert (line["account_id"], line["display_name"], line["opted_in"]) == (
            shop.account_id,
            "Tresen Air",
            ["utility"],
        )
        assert {s: c["state"] for s, c in line["consents"].items()} == {
            "utility": "opted_in",
            "marketing": "opted_out",
        }

        # A template message is printed as its signed template renders it.
        sent = await shop.send_template(phone, created["id"], "en_US", {"body": ["Anna", "Mon"]})
        listened = await run_chat(folder, "listen", "--json", "--count", "1", "--timeout", "60")
        [record] = [r for r in map(json.loads, listened.ok.splitlines()) if r["event"] == "message"]
        assert record["message_id"] == sent.message_id
        assert record["type"] == "template"
        assert record["text"] == "Hi Anna, your order ships on Mon.\nReply STOP to opt out"
        assert record["template"] == {
            "id": created["id"],
            "name": "order_shipped",
            "category": "UTILITY",
        }

        assert (await run_chat(folder, "block", business)).ok == f"Blocked {business}.\n"
        refused = await run_chat(folder, "send", "--to", business, "--text", "hello?")
        assert refused.returncode == 1
        assert (
            f"nothing was sent: you blocked {business}; run `tresen chat unblock {business}`"
            in refused.stderr
        )
        assert (await run_chat(folder, "unblock", business)).ok == f"Unblocked {business}.\n"
        reported = await run_chat(folder, "report", business, "--reason", "spam", "--block")
        assert reported.ok == f"Reported {business} (spam) and blocked them.\n"
        standing = await shop.quality()
        # The customer received the shop's template, so the block counts; the report after it
        # is kept, but one customer lowers the rating once per quality period.
        assert (standing["blocks"], standing["reports"], standing["uncounted"]) == (1, 0, 1)

        revoked = await run_chat(folder, "revoke", "Tresen Air")
        assert revoked.ok == "Tresen Air: utility off, marketing off\n"
    finally:
        await shop.close()

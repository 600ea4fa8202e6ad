"""Sending through the Cloud API's messages endpoint to real customers, and the errors
Cloud API clients see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gateway_support import RunningGateway, approved_template, customer, next_of
from support import RunningRelay
from transparency_support import remove_entry

from tresen.client.events import MessageEvent
from tresen.client.store import Trust
from tresen.gateway.ids import decode_wamid
from tresen.wire.e2e import Interactive, Text


def error_of(r: Any) -> dict[str, Any]:
    body = r.json()
    assert "error" in body, body
    return body["error"]


async def test_text_reaches_a_customer_who_wrote_first(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        await alice.send_text(gw.gateway.phone, "Is my order on its way?")
        r = await gw.send({"to": alice.phone, "type": "text", "text": {"body": "Yes, today!"}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["messaging_product"] == "whatsapp"
        assert body["contacts"][0]["input"] == alice.phone
        assert body["contacts"][0]["wa_id"] == alice.phone.lstrip("+")
        assert body["contacts"][0]["user_id"].startswith("DE.")
        wamid = body["messages"][0]["id"]
        assert wamid.startswith("wamid.")
        event = await next_of(alice, MessageEvent)
        assert isinstance(event.payload, Text)
        assert event.payload.text == "Yes, today!"
        assert event.message_id == decode_wamid(wamid)
    finally:
        await alice.close()


async def test_closed_window_is_131047(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        r = await gw.send({"to": alice.phone, "type": "text", "text": {"body": "Hello?"}})
        assert r.status_code == 400
        assert error_of(r)["code"] == 131047
        assert error_of(r)["error_data"]["details"]
    finally:
        await alice.close()


async def test_blocked_is_131026(relay: RunningRelay, gw: RunningGateway, tmp_path: Path) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        await alice.send_text(gw.gateway.phone, "hi")
        await alice.block(gw.gateway.phone)
        r = await gw.send({"to": alice.phone, "type": "text", "text": {"body": "Hello?"}})
        assert r.status_code == 400
        assert error_of(r)["code"] == 131026
    finally:
        await alice.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_keys_the_key_log_does_not_vouch_for_are_never_accepted(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    """A changed customer key is accepted by the gateway (a reinstall); keys the relay's own
    log does not vouch for are not: nothing is sent, 131026."""
    alice = await customer(relay, tmp_path / "alice")
    try:
        assert alice.account_id is not None
        await alice.send_text(gw.gateway.phone, "hi")  # the window is open
        await remove_entry(relay, alice.account_id)
        client = gw.gateway.client
        await client.directory.devices_of(alice.account_id, refresh=True)
        r = await gw.send({"to": alice.phone, "type": "text", "text": {"body": "Hello?"}})
        assert r.status_code == 400
        assert error_of(r)["code"] == 131026
        assert "key log" in error_of(r)["error_data"]["details"]
        assert client.trust_of(alice.account_id) is Trust.KEY_TRANSPARENCY
    finally:
        await alice.close()


async def test_unknown_template_is_132001(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        r = await gw.send(
            {
                "to": alice.phone,
                "type": "template",
                "template": {"name": "no_such_template", "language": {"code": "en_US"}},
            }
        )
        assert r.status_code == 400
        assert error_of(r)["code"] == 132001
    finally:
        await alice.close()


async def test_bad_token_is_190_and_missing_token_104(gw: RunningGateway) -> None:
    r = await gw.http.post(
        f"/{gw.phone_number_id}/messages",
        json={"messaging_product": "whatsapp", "to": "+4915100000000", "text": {"body": "x"}},
        headers={"Authorization": "Bearer tgw_not-a-token"},
    )
    assert r.status_code == 401
    assert error_of(r)["code"] == 190
    r = await gw.http.post(
        f"/{gw.phone_number_id}/messages",
        json={"messaging_product": "whatsapp"},
        headers={"Authorization": ""},
    )
    assert error_of(r)["code"] == 104


async def test_revoked_token_stops_working(gw: RunningGateway) -> None:
    info, token = await gw.gateway.store.create_token("short-lived")
    headers = {"Authorization": f"Bearer {token}"}
    r = await gw.http.get(f"/{gw.waba_id}/message_templates", headers=headers)
    assert r.status_code == 200, r.text
    assert await gw.gateway.store.revoke_token(str(info.id)) == 1
    r = await gw.http.get(f"/{gw.waba_id}/message_templates", headers=headers)
    assert error_of(r)["code"] == 190


async def test_malformed_bodies_are_100_with_details(gw: RunningGateway) -> None:
    cases: list[tuple[Any, str]] = [
        ({"to": "+4915100000000", "type": "text", "text": {}}, "text['body']"),
        ({"to": "+4915100000000", "type": "text"}, "text"),
        ({"type": "text", "text": {"body": "x"}}, "to"),
        (
            {"to": "+4915100000000", "type": "interactive", "interactive": {"type": "button"}},
            "interactive['body']",
        ),
        (
            {
                "to": "+4915100000000",
                "type": "reaction",
                "reaction": {"message_id": "wamid.nope", "emoji": "👍"},
            },
            "reaction['message_id']",
        ),
        ({"to": "+4915100000000", "type": "carrier_pigeon", "carrier_pigeon": {}}, "type"),
    ]
    for body, named in cases:
        r = await gw.send(body)
        assert r.status_code == 400, (body, r.text)
        error = error_of(r)
        assert error["code"] == 100, (body, error)
        assert named in error["error_data"]["details"], (named, error)
    r = await gw.http.post(
        f"/{gw.phone_number_id}/messages",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert error_of(r)["code"] == 100
    r = await gw.http.post(f"/{gw.phone_number_id}/messages", json={"to": "1"})
    assert "messaging_product" in error_of(r)["error_data"]["details"]


async def test_other_phone_number_ids_and_versions(gw: RunningGateway) -> None:
    r = await gw.http.get(f"/{gw.phone_number_id}")
    assert r.status_code == 200
    assert r.json()["display_phone_number"] == gw.gateway.phone
    r = await gw.http.get("/123456/whatsapp_business_profile")
    assert error_of(r)["code"] == 100
    for version in ("v14.0", "v17.0", "v26.0"):
        r = await gw.http.get(f"{gw.url}/{version}/{gw.phone_number_id}/whatsapp_business_profile")
        assert r.status_code == 200, (version, r.text)


async def test_template_interactive_and_statuses(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        await approved_template(relay, gw)
        await alice.opt_in(gw.gateway.phone)
        r = await gw.send(
            {
                "to": alice.phone.lstrip("+"),
                "type": "template",
                "template": {
                    "name": "order_shipped",
                    "language": {"code": "en_US"},
                    "components": [
                        {"type": "HEADER", "parameters": [{"type": "text", "text": "#4711"}]},
                        {
                            "type": "body",
                            "parameters": [
                                {"type": "text", "text": "Alice"},
                                {"type": "text", "text": "Friday"},
                            ],
                        },
                        {
                            "type": "button",
                            "sub_type": "url",
                            "index": "0",
                            "parameters": [{"type": "text", "text": "4711"}],
                        },
                    ],
                },
            }
        )
        assert r.status_code == 200, r.text
        assert r.json()["messages"][0]["message_status"] == "accepted"
        event = await next_of(alice, MessageEvent)
        assert event.template is not None
        assert "Hi Alice, your order ships on Friday." in event.template.body
        # The customer answers, which opens the window for free-form messages.
        await alice.send_text(gw.gateway.phone, "Can I pick it up instead?")
        r = await gw.send(
            {
                "recipient": r.json()["contacts"][0]["user_id"],
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "header": {"type": "text", "text": "Pick-up"},
                    "body": {"text": "Which shop?"},
                    "footer": {"text": "Open 9-18"},
                    "action": {
                        "buttons": [
                            {"type": "reply", "reply": {"id": "mitte", "title": "Mitte"}},
                            {"type": "reply", "reply": {"id": "kreuzberg", "title": "Kreuzberg"}},
                        ]
                    },
                },
            }
        )
        assert r.status_code == 200, r.text
        event = await next_of(alice, MessageEvent)
        assert isinstance(event.payload, Interactive)
        assert [b.title for b in event.payload.buttons] == ["Mitte", "Kreuzberg"]
    finally:
        await alice.close()


async def test_interactive_messages_the_rules_refuse_are_100(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    """Whatever rule an interactive message breaks (the gateway's or the end-to-end
    payload's), the client gets 400 with code 100 naming it, never a server error."""
    alice = await customer(relay, tmp_path / "alice")
    try:
        await alice.send_text(gw.gateway.phone, "Show me the options")

        def buttons(*titles: str) -> dict[str, Any]:
            return {
                "type": "button",
                "body": {"text": "Pick one"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": f"b{i}", "title": title}}
                        for i, title in enumerate(titles)
                    ]
                },
            }

        def rows(*titles: str, section_title: str | None = None) -> dict[str, Any]:
            section: dict[str, Any] = {
                "rows": [{"id": f"r{i}", "title": t} for i, t in enumerate(titles)]
            }
            if section_title is not None:
                section["title"] = section_title
            return {
                "type": "list",
                "body": {"text": "Pick one"},
                "action": {
                    "button": "Options",
                    "sections": [section, section | {"rows": [{"id": "x", "title": "X"}]}],
                },
            }

        refused = [
            buttons("   "),
            buttons("Yes", " "),
            buttons("\t\n"),
            rows("   ", section_title="Morning"),
            rows("Row", section_title="   "),
            {**buttons("Yes"), "body": {"text": "   "}},
            {**buttons("Yes"), "header": {"type": "text", "text": " "}},
            {**buttons("Yes"), "footer": {"text": "\u0000"}},
        ]
        for interactive in refused:
            r = await gw.send(
                {"to": alice.phone, "type": "interactive", "interactive": interactive}
            )
            assert r.status_code == 400, (interactive, r.text)
            assert error_of(r)["code"] == 100, interactive
            assert error_of(r)["error_data"]["details"], interactive
    finally:
        await alice.close()

"""A resend is the same message, not a new one: a template is billed once, when the first copy
is acked normally, and never for a copy its device could not decrypt; and a resend passes no
platform rule again (the original paid for them)."""

from __future__ import annotations

import base64
from typing import Any

from relay.billing.factories import HOUR_MS, Billing

from tresen.core.errors import ErrorCode


async def resend(
    b: Billing, sender: Any, message_id: str, device: Any, body: bytes, client_msg_id: str = "r1"
) -> dict[str, Any]:
    r = await b.http.post(
        f"/v1/messages/{message_id}/resend",
        json={
            "client_msg_id": client_msg_id,
            "device_id": device.device_id,
            "type": 0,
            "body": base64.b64encode(body).decode(),
        },
        headers=sender.auth,
    )
    answer: dict[str, Any] = r.json()
    return answer


async def ack_undecryptable(b: Billing, device: Any, ids: list[int]) -> None:
    r = await b.http.post(
        "/v1/messages/ack", json={"ids": ids, "undecryptable": ids}, headers=device.auth
    )
    assert r.json() == {"deleted": len(ids)}, r.text


async def test_a_template_is_billed_once_when_a_resent_copy_is_decrypted(billing: Billing) -> None:
    b = billing
    shop = await b.business()
    phone_owner = await b.customer()
    tablet = await b.second_device(phone_owner)
    offer = await b.template(shop, "MARKETING")
    await b.consent(shop, phone_owner, "marketing")
    sent = await b.send(shop, phone_owner, "template", offer, devices=[phone_owner, tablet])
    assert sent["pricing"]["billable"] is True
    [original] = await b.pending(phone_owner)

    # The phone cannot decrypt its copy: gone, but neither delivered nor billed.
    await ack_undecryptable(b, phone_owner, [original["id"]])
    assert await b.ledger() == {}
    assert await b.pending(shop) == []

    b.clock.advance(ms=HOUR_MS)
    answer = await resend(b, shop, sent["message_id"], phone_owner, b"\x02re-encrypted")
    assert answer["resends"] == 1
    [copy] = await b.pending(phone_owner)
    # The template and class of the original, whatever the resend says; its time, too.
    assert copy["message_id"] == sent["message_id"]
    assert (copy["class"], copy["template_ref"]) == ("template", str(offer))
    assert copy["server_ms"] == original["server_ms"] == sent["server_ms"]
    assert copy["peer_device"] == shop.device_id
    assert base64.b64decode(copy["body"]) == b"\x02re-encrypted"
    # The tablet has only its own copy of the original.
    [own] = await b.pending(tablet)
    assert base64.b64decode(own["body"]) == b"\x01" * 40  # what factories.Billing.send sends

    assert await b.ack(phone_owner, [copy["id"]]) == 1
    assert set(await b.ledger()) == {sent["message_id"]}
    [delivered] = await b.pending(shop)
    assert delivered["kind"] == "delivered"
    assert delivered["pricing"] == sent["pricing"]
    # The tablet's ack changes nothing: one delivery, one charge.
    assert await b.deliver(tablet) == [sent["message_id"]]
    assert len(await b.ledger()) == 1
    assert [e["kind"] for e in await b.pending(shop)] == ["delivered"]


async def test_a_resend_passes_no_platform_rule_again(billing: Billing) -> None:
    b = billing
    shop = await b.business()
    customer = await b.customer()
    question = await b.send(customer, shop)
    assert await b.deliver(shop) == [question["message_id"]]
    reply = await b.send(shop, customer)  # inside the customer service window: free
    [copy] = [e for e in await b.pending(customer) if e["kind"] == "message"]
    await ack_undecryptable(b, customer, [copy["id"]])

    b.clock.advance(ms=25 * HOUR_MS)
    # The window has closed: a new free-form message is refused ...
    late = await b.send(shop, customer)
    assert late["code"] == ErrorCode.REENGAGEMENT
    # ... but the reply sent while it was open may be resent.
    assert (await resend(b, shop, reply["message_id"], customer, b"\x02again"))["resends"] == 1
    assert await b.deliver(customer) == [reply["message_id"]]
    assert await b.ledger() == {}
    delivered = [e for e in await b.pending(shop) if e["kind"] == "delivered"]
    assert [(e["message_id"], e["pricing"]["billable"]) for e in delivered] == [
        (reply["message_id"], False)
    ]

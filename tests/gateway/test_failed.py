"""A message the relay could not deliver before its envelope expired: the gateway's webhook
subscriber gets the Cloud API's ``failed`` status with error 131026, and the stored message
says so."""

from __future__ import annotations

from pathlib import Path

from gateway_support import customer, serve_gateway, subscribed_inbox
from support import Backend, MakeRelay

from tresen.core.clock import ManualClock

HOUR_S = 3600


async def test_an_expired_send_becomes_a_failed_status(
    make_relay: MakeRelay, backend: Backend, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with (
        make_relay(clock=clock, limits={"envelope_ttl_s": HOUR_S}) as relay,
        serve_gateway(relay, backend, tmp_path) as gw,
        subscribed_inbox(gw) as inbox,
    ):
        alice = await customer(relay, tmp_path / "alice")
        await alice.send_text(gw.gateway.phone, "Please call me back")
        await inbox.next_message("text")
        # Alice's phone goes away before the answer reaches it.
        await alice.close()
        r = await gw.send({"to": alice.phone, "type": "text", "text": {"body": "Calling at 3"}})
        assert r.status_code == 200, r.text
        wamid = r.json()["messages"][0]["id"]
        await inbox.next_status(wamid, "sent")

        clock.advance(seconds=HOUR_S + 1)
        purged = await relay.ctx.mailbox.purge_expired()
        assert purged.failed == 1

        value = await inbox.next_status(wamid, "failed")
        status = value["statuses"][0]
        assert status["errors"][0]["code"] == 131026
        assert status["errors"][0]["title"] == "Message undeliverable"
        assert status["recipient_id"] == alice.phone.lstrip("+")
        assert value["contacts"][0]["wa_id"] == alice.phone.lstrip("+")
        stored = await gw.gateway.store.message(wamid)
        assert stored is not None
        assert stored.status == "failed"
        assert [s for s, _ in await gw.gateway.store.statuses(wamid)] == ["sent", "failed"]

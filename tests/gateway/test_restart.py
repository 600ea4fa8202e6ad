"""A gateway that stops and starts again on the same data folder and database: it reopens its
device (no new registration), catches up on what customers sent while it was down, delivers
in order, and keeps its API tokens, app secret, subscriptions and undelivered webhooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from gateway_support import (
    become_business,
    customer,
    gateway_settings,
    next_of,
    relay_codes,
    run_gateway,
    subscribe,
    webhook_inbox,
)
from support import ORDER_SHIPPED, Backend, RunningRelay, drop_schema

from tresen.client.events import MessageEvent
from tresen.gateway.ids import encode_wamid
from tresen.gateway.settings import GatewaySettings
from tresen.relay.operator.service import OperatorPrincipal
from tresen.wire.e2e import Text


async def never_registers(number: str) -> str:
    raise AssertionError(f"the gateway asked for a registration code for {number} again")


@asynccontextmanager
async def gateway_data(
    relay: RunningRelay, backend: Backend, tmp_path: Path, **overrides: object
) -> AsyncIterator[GatewaySettings]:
    """Settings of a gateway whose data outlives its runs (the database dropped after)."""
    settings, schema = gateway_settings(relay, backend, tmp_path, **overrides)
    try:
        yield settings
    finally:
        if schema is not None:
            await drop_schema(schema)


async def test_messages_sent_while_down_arrive_in_order_after_a_restart(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        async with gateway_data(relay, backend, tmp_path) as settings, AsyncExitStack() as stack:
            async with run_gateway(settings, codes=relay_codes(relay)) as first:
                await become_business(relay, first)
                inbox = await stack.enter_async_context(webhook_inbox(first.gateway.app_secret))
                await subscribe(first, inbox)
                await alice.send_text(first.gateway.phone, "Before the restart")
                before = (await inbox.next_message("text"))["messages"][0]
                r = await first.send(
                    {"to": alice.phone, "text": {"body": "We are closing for an update"}}
                )
                assert r.status_code == 200, r.text
                notice = r.json()["messages"][0]["id"]
                notice_event = await next_of(alice, MessageEvent)
                await inbox.next_status(notice, "delivered")
                token, secret = first.token, first.gateway.app_secret
                account, device = first.gateway.account_id, first.gateway.client.device_id
                phone = first.gateway.phone
                info, revoked = await first.gateway.store.create_token("revoked before restart")
                assert await first.gateway.store.revoke_token(str(info.id)) == 1

            # The gateway is down; the relay keeps what Alice sends, and that she read.
            await alice.mark_read(phone, [notice_event.message_id])
            texts = ["Are you there?", "I will wait"]
            sent = [await alice.send_text(phone, text) for text in texts]

            async with run_gateway(settings, codes=never_registers, token=token) as second:
                assert second.gateway.account_id == account
                assert second.gateway.client.device_id == device
                assert len(await alice.api.directory(account)) == 1  # no new device
                assert second.gateway.app_secret == secret  # webhooks verify as before
                # Everything, in the order it happened: the read, then the two messages.
                read, *arrived = [(await inbox.next()).value for _ in range(3)]
                assert [(s["id"], s["status"]) for s in read["statuses"]] == [(notice, "read")]
                assert read["statuses"][0]["recipient_id"] == before["from"]
                messages = [value["messages"][0] for value in arrived]
                assert [m["text"]["body"] for m in messages] == texts
                assert [m["id"] for m in messages] == [encode_wamid(s.message_id) for s in sent]

                # The old token still works, the revoked one still does not.
                r = await second.http.get(f"/{second.waba_id}/subscribed_apps")
                assert r.status_code == 200, r.text
                assert [a["override_callback_uri"] for a in r.json()["data"]] == [inbox.url]
                r = await second.http.get(
                    f"/{second.waba_id}/subscribed_apps",
                    headers={"Authorization": f"Bearer {revoked}"},
                )
                assert r.json()["error"]["code"] == 190

                # The conversation goes on, quoting a message from before the restart.
                r = await second.send(
                    {
                        "to": alice.phone,
                        "context": {"message_id": before["id"]},
                        "text": {"body": "Sorry, we were updating. How can I help?"},
                    }
                )
                assert r.status_code == 200, r.text
                event = await next_of(alice, MessageEvent)
                assert isinstance(event.payload, Text)
                assert event.payload.context is not None
                assert encode_wamid(event.payload.context.message_id) == before["id"]
    finally:
        await alice.close()


async def test_webhooks_not_delivered_before_a_stop_are_delivered_after_it(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        async with (
            gateway_data(relay, backend, tmp_path, webhooks={"retry_initial_s": 0.2}) as settings,
            AsyncExitStack() as stack,
        ):
            async with run_gateway(settings, codes=relay_codes(relay)) as first:
                await become_business(relay, first)
                inbox = await stack.enter_async_context(webhook_inbox(first.gateway.app_secret))
                await subscribe(first, inbox)
                inbox.status = 503  # the integrator's endpoint is failing
                await alice.send_text(first.gateway.phone, "Hello, anyone?")
                refused = await inbox.next()
                assert refused.value["messages"][0]["text"]["body"] == "Hello, anyone?"
                token = first.token

            while not inbox.posts.empty():  # the retries made before the stop
                inbox.posts.get_nowait()
            inbox.status = 200
            async with run_gateway(settings, codes=never_registers, token=token):
                delivered = await inbox.next()
                assert delivered.raw == refused.raw  # the same signed body, sent again
                assert (
                    delivered.headers["x-tresen-event-id"] == refused.headers["x-tresen-event-id"]
                )
    finally:
        await alice.close()


async def test_a_review_decided_while_down_is_announced_after_a_restart(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    async with gateway_data(relay, backend, tmp_path) as settings, AsyncExitStack() as stack:
        async with run_gateway(settings, codes=relay_codes(relay)) as first:
            await become_business(relay, first)
            inbox = await stack.enter_async_context(webhook_inbox(first.gateway.app_secret))
            await subscribe(first, inbox)
            r = await first.http.post(f"/{first.waba_id}/message_templates", json=ORDER_SHIPPED)
            assert r.status_code == 200, r.text
            template_id = int(r.json()["id"])
            await first.gateway.poll_templates()  # seen as PENDING before the stop
            token = first.token

        await relay.ctx.templates.approve(OperatorPrincipal("tests"), template_id)

        async with run_gateway(settings, codes=never_registers, token=token):
            post = await inbox.next(lambda p: p.field == "message_template_status_update")
            assert post.value["event"] == "APPROVED"
            assert post.value["message_template_id"] == template_id

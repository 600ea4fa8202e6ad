"""Against pywa's own webhook server (its Starlette routes, served by uvicorn on a free port):
the verification handshake, and a signed ``messages`` event that fires ``on_message`` — or,
signed with the wrong app secret, does not."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pywa import WhatsApp, types
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from webhook_support import APP_SECRET, VERIFY_TOKEN, WABA_ID, serve_asgi

from tresen.core.db import Database
from tresen.core.http import tls_context
from tresen.gateway.schema import webhook_events, webhook_subscriptions
from tresen.gateway.webhooks import Outbox, SubscriptionRefused, WebhookDispatcher

PHONE_ID = "4930901820"


@dataclass
class Bot:
    """A pywa bot as a business would write it; ``url`` is where its webhook listens."""

    wa: WhatsApp
    url: str
    messages: list[types.Message] = field(default_factory=list)
    got: threading.Event = field(default_factory=threading.Event)

    async def next_message(self) -> types.Message:
        assert await asyncio.to_thread(self.got.wait, 10), "on_message did not fire"
        return self.messages[-1]


@pytest.fixture
async def bot() -> AsyncIterator[Bot]:
    server = Starlette()
    wa = WhatsApp(
        phone_id=PHONE_ID,
        token="token-of-the-shop",
        server=server,
        verify_token=VERIFY_TOKEN,
        app_secret=APP_SECRET,
    )
    async with serve_asgi(server) as url:
        running = Bot(wa, url + "/")

        @wa.on_message()
        def on_message(_: WhatsApp, message: types.Message) -> None:
            running.messages.append(message)
            running.got.set()

        yield running


def inbound_text(text: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "+49 30 901820", "phone_number_id": PHONE_ID},
        "contacts": [
            {
                "profile": {"name": "Anna Müller"},
                "wa_id": "4917612345678",
                "user_id": "DE.123456789",
            }
        ],
        "messages": [
            {
                "from": "4917612345678",
                "from_user_id": "DE.123456789",
                "id": "wamid.HBgLNDkxNzYxMjM0NTY3OBUCABIYFDNBMDM",
                "timestamp": "1767225600",
                "type": "text",
                "text": {"body": "Grüß dich! Habt ihr heute offen? 👋"},
            }
        ],
    }


async def send(outbox: Outbox, db: Database, value: dict[str, Any]) -> None:
    async with db.write() as conn:
        await outbox.enqueue(
            conn, waba_id=WABA_ID, conversation="anna", field="messages", value=value
        )


async def test_pywa_answers_our_handshake_and_handles_a_signed_message(
    outbox: Outbox, db: Database, bot: Bot
) -> None:
    subscription = await outbox.subscribe(bot.url, VERIFY_TOKEN, APP_SECRET, ["messages"])
    assert [s.url for s in await outbox.list()] == [bot.url]

    await send(outbox, db, inbound_text("Grüß dich! Habt ihr heute offen? 👋"))
    dispatcher = WebhookDispatcher(outbox)
    dispatcher.start()
    try:
        dispatcher.wake()
        await dispatcher.settle()
    finally:
        await dispatcher.close()

    message = await bot.next_message()
    assert message.text == "Grüß dich! Habt ihr heute offen? 👋"
    assert message.from_user.name == "Anna Müller"
    assert message.from_user.wa_id == "4917612345678"
    assert message.id == "wamid.HBgLNDkxNzYxMjM0NTY3OBUCABIYFDNBMDM"
    assert message.metadata.phone_number_id == PHONE_ID
    async with db.read() as conn:
        (row,) = (await conn.execute(select(webhook_events))).all()
    assert (row.subscription_id, row.state, row.attempts) == (subscription.id, "delivered", 1)


async def test_pywa_refuses_an_event_signed_with_another_app_secret(
    outbox: Outbox, db: Database, bot: Bot
) -> None:
    await outbox.subscribe(bot.url, VERIFY_TOKEN, "not-the-app-secret", ["messages"])
    await send(outbox, db, inbound_text("hallo"))
    dispatcher = WebhookDispatcher(outbox)
    dispatcher.start()
    try:
        dispatcher.wake()
        await dispatcher.settle()
    finally:
        await dispatcher.close()

    async with db.read() as conn:
        (row,) = (await conn.execute(select(webhook_events))).all()
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "HTTP 403")
    assert not bot.got.is_set()
    assert bot.messages == []


async def test_a_wrong_verify_token_is_refused_and_nothing_is_stored(
    outbox: Outbox, db: Database, bot: Bot
) -> None:
    with pytest.raises(SubscriptionRefused) as refused:
        await outbox.subscribe(bot.url, "a-wrong-token", APP_SECRET, ["messages"])
    assert refused.value.url == bot.url
    assert "HTTP 403 'Forbidden'" in str(refused.value)
    assert await outbox.list() == []
    async with db.read() as conn:
        assert (await conn.execute(select(webhook_subscriptions))).all() == []


async def test_the_handshake_sends_the_hub_parameters_and_needs_the_exact_challenge(
    outbox: Outbox,
) -> None:
    seen: list[dict[str, str]] = []
    answer: dict[str, Any] = {"status": 200, "extra": ""}

    async def callback(request: Request) -> PlainTextResponse:
        seen.append(dict(request.query_params))
        challenge = request.query_params.get("hub.challenge", "")
        return PlainTextResponse(challenge + answer["extra"], status_code=answer["status"])

    app = Starlette()
    app.add_route("/hook", callback, methods=["GET"])
    async with serve_asgi(app) as url:
        await outbox.subscribe(url + "/hook?tenant=7", VERIFY_TOKEN, APP_SECRET, ["messages"])
        params = seen[-1]
        assert params["hub.mode"] == "subscribe"
        assert params["hub.verify_token"] == VERIFY_TOKEN
        assert params["hub.challenge"].isdigit()
        assert params["tenant"] == "7"

        answer["extra"] = "\n"
        with pytest.raises(SubscriptionRefused, match="instead of the challenge"):
            await outbox.subscribe(url + "/hook", VERIFY_TOKEN, APP_SECRET, ["messages"])
        answer.update(status=500, extra="")
        with pytest.raises(SubscriptionRefused, match="HTTP 500"):
            await outbox.subscribe(url + "/hook", VERIFY_TOKEN, APP_SECRET, ["messages"])
        with pytest.raises(SubscriptionRefused, match="HTTP 404"):
            await outbox.subscribe(url + "/elsewhere", VERIFY_TOKEN, APP_SECRET, ["messages"])
    with pytest.raises(SubscriptionRefused, match="could not be reached"):
        await outbox.subscribe(url + "/hook", VERIFY_TOKEN, APP_SECRET, ["messages"])
    assert [s.url for s in await outbox.list()] == [url + "/hook?tenant=7"]


async def test_a_handshake_that_never_answers_times_out(outbox: Outbox) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    async with httpx.AsyncClient(verify=tls_context(), transport=httpx.MockTransport(hang)) as http:
        with pytest.raises(SubscriptionRefused, match="no answer within"):
            await outbox.subscribe(
                "https://slow.example/", VERIFY_TOKEN, APP_SECRET, ["messages"], http=http
            )

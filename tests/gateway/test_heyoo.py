"""An unmodified heyoo (another Cloud API client) sends through the gateway: text, template,
reply buttons, a list, a read mark, and images and documents by upload and by link; the
webhooks it would parse arrive signed, and it downloads a customer's photo."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from gateway_support import (
    RunningGateway,
    approved_template,
    customer,
    next_of,
    serve_gateway,
)
from heyoo import WhatsApp
from media_support import file_server, pdf, png
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from support import Backend, RunningRelay, serve_asgi

from tresen.client.events import MessageEvent
from tresen.gateway.settings import MediaSettings
from tresen.gateway.webhooks.signature import verify
from tresen.wire.e2e import Interactive, InteractiveKind, Media, MediaKind, Text

VERIFY_TOKEN = "heyoo-verify"


@asynccontextmanager
async def receiver(app_secret: str) -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, Any]]]]:
    """A webhook endpoint like the ones heyoo's examples build, checking signatures."""
    bodies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def endpoint(request: Request) -> Response:
        if request.method == "GET":
            if request.query_params.get("hub.verify_token") != VERIFY_TOKEN:
                return PlainTextResponse("forbidden", status_code=403)
            return PlainTextResponse(request.query_params.get("hub.challenge", ""))
        raw = await request.body()
        if not verify(app_secret.encode(), raw, request.headers.get("x-hub-signature-256", "")):
            return PlainTextResponse("bad signature", status_code=403)
        await bodies.put(json.loads(raw))
        return PlainTextResponse("OK")

    app = Starlette(routes=[Route("/hook", endpoint, methods=["GET", "POST"])])
    async with serve_asgi(app) as url:
        yield f"{url}/hook", bodies


def heyoo_for(gw: RunningGateway) -> WhatsApp:
    messenger = WhatsApp(gw.token, phone_number_id=gw.phone_number_id)
    # heyoo keeps its endpoints in public attributes; pointing them here is all it takes.
    messenger.base_url = f"{gw.url}/v14.0"
    messenger.v15_base_url = f"{gw.url}/v15.0"
    messenger.url = f"{messenger.base_url}/{gw.phone_number_id}/messages"
    return messenger


async def test_heyoo_sends_through_the_gateway(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    messenger = heyoo_for(gw)
    try:
        async with receiver(gw.gateway.app_secret) as (url, bodies):
            r = await gw.http.post(
                f"/{gw.waba_id}/subscribed_apps",
                json={"override_callback_uri": url, "verify_token": VERIFY_TOKEN},
            )
            assert r.status_code == 200, r.text
            await alice.send_text(gw.gateway.phone, "Do you deliver on Sundays?")
            body = await asyncio.wait_for(bodies.get(), 20)
            assert messenger.is_message(body)
            assert messenger.get_message(body) == "Do you deliver on Sundays?"
            assert messenger.get_mobile(body) == alice.phone.lstrip("+")
            question = messenger.get_message_id(body)

            sent = await asyncio.to_thread(
                messenger.send_message, "Only on weekdays.", alice.phone.lstrip("+")
            )
            assert sent["messages"][0]["id"].startswith("wamid.")
            event = await next_of(alice, MessageEvent)
            assert isinstance(event.payload, Text)
            assert event.payload.text == "Only on weekdays."
            assert event.payload.preview_url is True  # heyoo's default

            # heyoo reads the statuses of what it sent from the same webhook.
            wamid = sent["messages"][0]["id"]
            statuses = []
            while len(statuses) < 2:
                body = await asyncio.wait_for(bodies.get(), 20)
                assert messenger.changed_field(body) == "messages"
                value = body["entry"][0]["changes"][0]["value"]
                if not messenger.is_message(body) and value["statuses"][0]["id"] == wamid:
                    statuses.append(messenger.get_delivery(body))
            assert statuses == ["sent", "delivered"]

            read = await asyncio.to_thread(messenger.mark_as_read, question)
            assert read == {"success": True}

            await asyncio.to_thread(
                messenger.send_reply_button,
                {
                    "type": "button",
                    "body": {"text": "Shall we deliver on Monday?"},
                    "action": {
                        "buttons": [
                            {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                            {"type": "reply", "reply": {"id": "no", "title": "No"}},
                        ]
                    },
                },
                alice.phone.lstrip("+"),
            )
            event = await next_of(alice, MessageEvent)
            assert isinstance(event.payload, Interactive)
            assert event.payload.type is InteractiveKind.BUTTON

            await asyncio.to_thread(
                messenger.send_button,
                {
                    "header": "Delivery slots",
                    "body": "Pick a time on Monday",
                    "footer": "Times in Berlin",
                    "action": {
                        "button": "Slots",
                        "sections": [
                            {
                                "title": "Morning",
                                "rows": [
                                    {"id": "8-10", "title": "08:00-10:00"},
                                    {"id": "10-12", "title": "10:00-12:00"},
                                ],
                            },
                            {
                                "title": "Afternoon",
                                "rows": [{"id": "14-16", "title": "14:00-16:00"}],
                            },
                        ],
                    },
                },
                alice.phone.lstrip("+"),
            )
            event = await next_of(alice, MessageEvent)
            assert isinstance(event.payload, Interactive)
            assert event.payload.type is InteractiveKind.LIST
            assert event.payload.header == "Delivery slots"
            await alice.answer(gw.gateway.phone, event.message_id, "10-12")
            while True:
                body = await asyncio.wait_for(bodies.get(), 20)
                if messenger.get_message_type(body) == "interactive":
                    break
            reply = messenger.get_interactive_response(body)
            assert reply == {
                "type": "list_reply",
                "list_reply": {"id": "10-12", "title": "10:00-12:00"},
            }

            await approved_template(relay, gw)
            await alice.opt_in(gw.gateway.phone)
            result = await asyncio.to_thread(
                messenger.send_template,
                "order_shipped",
                alice.phone.lstrip("+"),
                components=[
                    {"type": "header", "parameters": [{"type": "text", "text": "#9"}]},
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Alice"},
                            {"type": "text", "text": "Monday"},
                        ],
                    },
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": 0,
                        "parameters": [{"type": "text", "text": "9"}],
                    },
                ],
            )
            assert result["messages"][0]["id"].startswith("wamid.")
            event = await next_of(alice, MessageEvent)
            assert event.template is not None
            assert "Hi Alice, your order ships on Monday." in event.template.body
    finally:
        await alice.close()


# heyoo's upload_media opens the file it uploads and never closes it.
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <_io\.FileIO name='[^']*/(photo\.png|invoice\.pdf)'"
    ":pytest.PytestUnraisableExceptionWarning"
)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_heyoo_sends_and_downloads_media(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    photo, invoice = png(90, 60), pdf("heyoo")
    (tmp_path / "photo.png").write_bytes(photo)
    (tmp_path / "invoice.pdf").write_bytes(invoice)
    media = MediaSettings(link_allowed_networks=["127.0.0.1/32"])
    async with serve_gateway(relay, backend, tmp_path, media=media) as gw:
        alice = await customer(relay, tmp_path / "alice")
        messenger = heyoo_for(gw)
        to = alice.phone.lstrip("+")
        try:
            async with (
                receiver(gw.gateway.app_secret) as (url, bodies),
                file_server(
                    {"/p.png": (photo, "image/png"), "/i.pdf": (invoice, "application/pdf")}
                ) as files,
            ):
                r = await gw.http.post(
                    f"/{gw.waba_id}/subscribed_apps",
                    json={"override_callback_uri": url, "verify_token": VERIFY_TOKEN},
                )
                assert r.status_code == 200, r.text
                await alice.send_text(gw.gateway.phone, "Hi")
                await asyncio.wait_for(bodies.get(), 20)

                image_id = (
                    await asyncio.to_thread(messenger.upload_media, str(tmp_path / "photo.png"))
                )["id"]
                document_id = (
                    await asyncio.to_thread(messenger.upload_media, str(tmp_path / "invoice.pdf"))
                )["id"]
                for send in (
                    lambda: messenger.send_image(image_id, to, caption="Upload", link=False),
                    lambda: messenger.send_document(
                        document_id, to, link=False, filename="Invoice.pdf"
                    ),
                    lambda: messenger.send_image(f"{files}/p.png", to, caption="Link"),
                    lambda: messenger.send_document(f"{files}/i.pdf", to, caption="Link"),
                ):
                    sent = await asyncio.to_thread(send)
                    assert sent["messages"][0]["id"].startswith("wamid."), sent
                received = []
                while len(received) < 4:
                    event = await next_of(alice, MessageEvent)
                    if isinstance(event.payload, Media):
                        received.append(event)
                for event in received:
                    assert isinstance(event.payload, Media)
                    expected = photo if event.payload.kind is MediaKind.IMAGE else invoice
                    assert (await alice.download(event)).read_bytes() == expected
                # heyoo sends no name with an id: the uploaded file's (not its local path).
                assert received[1].payload.filename == "invoice.pdf"

                await alice.send_file(gw.gateway.phone, photo, filename="box.png")
                while True:  # statuses of the messages above come first
                    value = (await asyncio.wait_for(bodies.get(), 20))["entry"][0]["changes"][0]
                    messages = value["value"].get("messages", [])
                    if messages and messages[0]["type"] == "image":
                        image = messages[0]["image"]
                        break
                media_url = await asyncio.to_thread(messenger.query_media_url, image["id"])
                saved = await asyncio.to_thread(
                    messenger.download_media, media_url, image["mime_type"], str(tmp_path / "got")
                )
                assert Path(saved).read_bytes() == photo
                assert await asyncio.to_thread(messenger.delete_media, image["id"]) == {
                    "success": True
                }
        finally:
            await alice.close()

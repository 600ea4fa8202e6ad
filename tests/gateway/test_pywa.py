"""An unmodified Cloud API client, pywa, pointed at the gateway: it sends text, template,
interactive and media messages to a Tresen customer who decrypts them, and its own webhook
server (with signature checking on) receives the customer's replies, photos (downloaded
through the gateway) and the delivered and read statuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import RunningGateway, approved_template, customer, next_of, serve_gateway
from media_support import file_server, pdf, png
from pywa.errors import AuthorizationError
from pywa_async import WhatsApp, types
from pywa_async.types.templates import (
    BodyText,
    HeaderText,
    TemplateLanguage,
    TemplateStatus,
    URLButton,
)
from starlette.applications import Starlette
from support import Backend, RunningRelay, serve_asgi

from tresen.client.events import MessageEvent
from tresen.core.http import tls_context
from tresen.gateway.settings import MediaSettings
from tresen.wire.e2e import Interactive, Media, MediaKind, Text

VERIFY_TOKEN = "pywa-verify-token"


@asynccontextmanager
async def pywa_bot(
    gw: RunningGateway, *, token_in_query: bool = False
) -> AsyncIterator[tuple[WhatsApp, asyncio.Queue[Any], str]]:
    """pywa configured as its documentation says, its base URL pointed at the gateway, and
    its built-in webhook routes served on a free port. ``token_in_query``: the token goes in
    ``?access_token=`` instead of the Authorization header, as Graph allows."""
    # As pywa advises, a client of our own: the tests' usual 30 s, not httpx's 5 s, so that
    # a busy test machine is not taken for a gateway that does not answer.
    session = httpx.AsyncClient(verify=tls_context(), timeout=30)
    server = Starlette()
    wa = WhatsApp(
        phone_id=gw.phone_number_id,
        token=gw.token,
        session=session,
        server=server,
        verify_token=VERIFY_TOKEN,
        app_secret=gw.gateway.app_secret,
        waba_id=gw.waba_id,
        api_version="23.0",
    )
    session.base_url = gw.api_base  # pywa sets Graph's URL in __init__; this points it here
    if token_in_query:
        del session.headers["Authorization"]
        session.params = {"access_token": gw.token}
    updates: asyncio.Queue[Any] = asyncio.Queue()

    @wa.on_message
    async def on_message(_: WhatsApp, message: types.Message) -> None:
        await updates.put(message)

    @wa.on_callback_button
    async def on_button(_: WhatsApp, button: types.CallbackButton) -> None:
        await updates.put(button)

    @wa.on_message_status
    async def on_status(_: WhatsApp, status: types.MessageStatus) -> None:
        await updates.put(status)

    try:
        async with serve_asgi(server) as url:
            yield wa, updates, f"{url}/"
    finally:
        await session.aclose()


async def next_update(updates: asyncio.Queue[Any], kind: type[Any], **where: Any) -> Any:
    while True:
        update = await asyncio.wait_for(updates.get(), 20)
        if isinstance(update, kind) and all(
            getattr(update, k, None) == v for k, v in where.items()
        ):
            return update


async def test_pywa_sends_and_receives_through_the_gateway(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        async with pywa_bot(gw) as (wa, updates, callback_url):
            # pywa subscribes its webhook server; the gateway checks the handshake.
            await wa.override_waba_callback_url(callback_url, VERIFY_TOKEN)

            await alice.send_text(gw.gateway.phone, "Hello, is my parcel coming?")
            incoming = await next_update(updates, types.Message)
            assert incoming.text == "Hello, is my parcel coming?"
            assert incoming.from_user.wa_id == alice.phone.lstrip("+")
            assert incoming.from_user.name

            # Text, replying to the customer's message by its user id (pywa's default).
            sent = await incoming.reply_text("Yes, it arrives on Friday.", quote=True)
            event = await next_of(alice, MessageEvent)
            assert isinstance(event.payload, Text)
            assert event.payload.text == "Yes, it arrives on Friday."
            assert event.payload.context is not None  # the reply quotes the question

            # Sent, delivered, then read: pywa's status handler sees each, with the contact.
            # Pricing is on delivered and read (the reference puts it on sent or on those two).
            first = await next_update(updates, types.MessageStatus, id=sent.id)
            assert first.status.value == "sent"
            assert first.from_user.wa_id == alice.phone.lstrip("+")
            assert first.pricing is None
            delivered = await next_update(updates, types.MessageStatus, id=sent.id)
            assert delivered.status.value == "delivered"
            assert delivered.pricing is not None
            assert delivered.pricing.type.value == "free_customer_service"
            assert delivered.pricing.category.value == "service"
            await alice.mark_read(gw.gateway.phone, [event.message_id])
            read = await next_update(updates, types.MessageStatus, id=sent.id)
            assert read.status.value == "read"
            assert read.pricing == delivered.pricing

            # A template, with pywa's own parameter types.
            await approved_template(relay, gw)
            await alice.opt_in(gw.gateway.phone)
            await wa.send_template(
                to=alice.phone.lstrip("+"),
                name="order_shipped",
                language=TemplateLanguage.ENGLISH_US,
                params=[
                    HeaderText.params("#4711"),
                    BodyText.params("Alice", "Friday"),
                    URLButton.params(url_variable="4711", index=0),
                ],
            )
            event = await next_of(alice, MessageEvent)
            assert event.template is not None
            assert "Hi Alice, your order ships on Friday." in event.template.body

            # Interactive reply buttons; the customer taps one and pywa gets the callback.
            await wa.send_message(
                to=alice.phone.lstrip("+"),
                text="Where would you like to pick it up?",
                header="Pick-up",
                footer="Open 9-18",
                buttons=[
                    types.Button(title="Mitte", callback_data="mitte"),
                    types.Button(title="Kreuzberg", callback_data="kreuzberg"),
                ],
            )
            event = await next_of(alice, MessageEvent)
            assert isinstance(event.payload, Interactive)
            assert [b.title for b in event.payload.buttons] == ["Mitte", "Kreuzberg"]
            await alice.answer(gw.gateway.phone, event.message_id, "kreuzberg")
            tapped = await next_update(updates, types.CallbackButton)
            assert tapped.data == "kreuzberg"
            assert tapped.title == "Kreuzberg"
    finally:
        await alice.close()


async def test_pywa_manages_templates_and_blocked_customers(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    bob = await customer(relay, tmp_path / "bob")
    try:
        async with pywa_bot(gw) as (wa, updates, callback_url):
            await wa.override_waba_callback_url(callback_url, VERIFY_TOKEN)
            template_id = await approved_template(relay, gw)

            templates = await wa.get_templates()
            assert [t.id for t in templates] == [template_id]
            (shipped,) = templates
            assert shipped.name == "order_shipped"
            assert shipped.status is TemplateStatus.APPROVED
            assert shipped.quality_score is not None
            assert shipped.quality_score.date.year >= 2024
            assert templates.total_count == 1

            # Both customers write; the business blocks one by phone, one by user id.
            await alice.send_text(gw.gateway.phone, "Stop writing me")
            from_alice = await next_update(updates, types.Message)
            await bob.send_text(gw.gateway.phone, "Spam spam spam")
            from_bob = await next_update(updates, types.Message)
            alice_wa_id = alice.phone.lstrip("+")
            bob_user_id = from_bob.from_user.bsuid
            assert bob_user_id is not None
            assert from_alice.from_user.wa_id == alice_wa_id

            blocked = await wa.block_users([alice_wa_id, bob_user_id])
            assert not blocked.failed_users
            assert {u.input for u in blocked.added_users} == {alice_wa_id, bob_user_id}

            listed = await wa.get_blocked_users()
            assert {u.wa_id for u in listed} == {alice_wa_id, bob.phone.lstrip("+")}
            assert {u.bsuid for u in listed} == {from_alice.from_user.bsuid, bob_user_id}
            assert all(u.input for u in listed)

            unblocked = await wa.unblock_users([bob_user_id])
            assert [u.input for u in unblocked.removed_users] == [bob_user_id]
            assert [u.wa_id for u in await wa.get_blocked_users()] == [alice_wa_id]
    finally:
        await alice.close()
        await bob.close()


async def test_pywa_with_the_access_token_in_the_query(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    """Graph takes ``?access_token=…`` in place of the Authorization header; so does the
    gateway, on the messages route and the others."""
    alice = await customer(relay, tmp_path / "alice")
    try:
        async with pywa_bot(gw, token_in_query=True) as (wa, _updates, _callback_url):
            await alice.send_text(gw.gateway.phone, "Hi")
            sent = await wa.send_message(to=alice.phone.lstrip("+"), text="Hello Alice")
            event = await next_of(alice, MessageEvent)
            assert isinstance(event.payload, Text)
            assert event.payload.text == "Hello Alice"
            assert sent.id.startswith("wamid.")
            profile = await wa.get_business_profile()
            assert profile.about is not None

            blocked = await wa.get_blocked_users()
            assert list(blocked) == []

        gw.token = "not-a-token"
        async with pywa_bot(gw, token_in_query=True) as (wa, _updates, _callback_url):
            with pytest.raises(AuthorizationError):
                await wa.send_message(to=alice.phone.lstrip("+"), text="Hello again")
            with pytest.raises(AuthorizationError):
                await wa.get_business_profile()
    finally:
        await alice.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_pywa_sends_and_receives_media(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    """pywa uploads files itself (bytes and a path) and sends links; a customer's photo
    reaches pywa's handler, which downloads it through the gateway."""
    photo, invoice = png(120, 90), pdf("INV-9")
    (tmp_path / "invoice-9.pdf").write_bytes(invoice)
    media = MediaSettings(link_allowed_networks=["127.0.0.1/32"])
    async with serve_gateway(relay, backend, tmp_path, media=media) as gw:
        alice = await customer(relay, tmp_path / "alice")
        try:
            async with (
                pywa_bot(gw) as (wa, updates, callback_url),
                file_server(
                    {"/p.png": (photo, "image/png"), "/i.pdf": (invoice, "application/pdf")}
                ) as files,
            ):
                await wa.override_waba_callback_url(callback_url, VERIFY_TOKEN)
                await alice.send_text(gw.gateway.phone, "Hi")
                await next_update(updates, types.Message)
                to = alice.phone.lstrip("+")

                await wa.send_image(to, photo, caption="By upload", mime_type="image/png")
                # (pywa's own default file name for a path is a sentinel object: named here.)
                await wa.send_document(
                    to, tmp_path / "invoice-9.pdf", filename="invoice-9.pdf", caption="By upload"
                )
                await wa.send_image(to, f"{files}/p.png", caption="By link")
                await wa.send_document(to, f"{files}/i.pdf", filename="Invoice 9.pdf")
                received = []
                while len(received) < 4:
                    event = await next_of(alice, MessageEvent)
                    if isinstance(event.payload, Media):
                        received.append(event)
                kinds = [e.payload.kind for e in received if isinstance(e.payload, Media)]
                assert kinds == [MediaKind.IMAGE, MediaKind.DOCUMENT] * 2
                for event in received:
                    expected = photo if event.payload.kind is MediaKind.IMAGE else invoice
                    assert (await alice.download(event)).read_bytes() == expected
                names = [e.payload.filename for e in received if isinstance(e.payload, Media)]
                assert names[1] == "invoice-9.pdf"
                assert names[3] == "Invoice 9.pdf"

                # A customer's photo: pywa's handler gets it and downloads it.
                await alice.send_file(
                    gw.gateway.phone, photo, filename="dent.png", caption="Dented box"
                )
                message = await next_update(updates, types.Message)
                assert message.image is not None
                assert message.caption == "Dented box"
                assert message.image.mime_type == "image/png"
                assert await message.image.get_bytes() == photo
                saved = await message.image.download(path=tmp_path, filename="dent.png")
                assert saved.read_bytes() == photo
        finally:
            await alice.close()

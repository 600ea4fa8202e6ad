"""Files in the web app, in Chromium against a real platform (``tresen up``): pictures the
browser sends reach a customer on the Python SDK byte for byte (a small one inside the message,
a large one through the blob store); a document and a picture from that customer show in the
browser and download with their names and bytes; a damaged file is refused with a notice; and
the airline's boarding pass, a template whose header is the passenger's PDF, arrives through
the gateway's Cloud API and downloads from the template bubble.
"""

from __future__ import annotations

import io
import os
import re
from datetime import date
from pathlib import Path

import msgspec
from PIL import Image
from playwright.async_api import Download, Page, expect
from webapp_support import (
    AppPage,
    MakeCustomer,
    Platform,
    gateway,
    next_message,
    open_airline,
    open_chat_with,
    register,
    shoot_app,
    write,
)

from tresen.demo_passes import BoardingPass, boarding_pass_pdf
from tresen.wire.e2e import MAX_INLINE_BLOB_BYTES, Media, MediaKind


def png(width: int, height: int, *, noise: bool = False) -> bytes:
    """A PNG: four coloured quarters (a few hundred bytes), or random pixels (about three
    bytes a pixel, which no compression shrinks)."""
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (11, 110, 79))
        image.paste((250, 200, 40), (width // 2, 0, width, height // 2))
        image.paste((30, 90, 200), (0, height // 2, width // 2, height))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def pdf(text: str) -> bytes:
    """A small one-page PDF."""
    out = io.BytesIO()
    Image.new("RGB", (200, 100), (255, 255, 255)).save(out, format="PDF", title=text)
    return out.getvalue()


async def downloaded(download: Download) -> bytes:
    path = await download.path()
    return Path(path).read_bytes()


async def drop_file(page: Page, target: str, name: str, mime_type: str, data: bytes) -> None:
    """Drop a file on ``target`` as a person drags one from their desktop."""
    transfer = await page.evaluate_handle(
        """([name, type, bytes]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, { type }));
            return transfer;
        }""",
        [name, mime_type, list(data)],
    )
    for event in ("dragenter", "dragover", "drop"):
        await page.dispatch_event(target, event, {"dataTransfer": transfer})


async def paste_file(page: Page, name: str, mime_type: str, data: bytes) -> None:
    """Paste a file into the message field, as a screenshot from the clipboard."""
    field = page.get_by_label("Message", exact=True)
    await field.focus()
    await field.evaluate(
        """(element, [name, type, bytes]) => {
            const clipboardData = new DataTransfer();
            clipboardData.items.add(new File([new Uint8Array(bytes)], name, { type }));
            const paste = { clipboardData, bubbles: true, cancelable: true };
            element.dispatchEvent(new ClipboardEvent("paste", paste));
        }""",
        [name, mime_type, list(data)],
    )


async def test_pictures_from_the_browser_reach_an_sdk_customer_byte_for_byte(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    anna = await make_customer("anna")
    assert anna.phone is not None
    await register(app, platform)
    await open_chat_with(page, anna.phone)

    # A small picture, chosen with the paper clip, travels inside the message.
    small = png(64, 48)
    await page.get_by_test_id("file-input").set_input_files(
        files=[{"name": "flag.png", "mimeType": "image/png", "buffer": small}]
    )
    tray = page.get_by_test_id("file-tray")
    await expect(tray.get_by_test_id("staged-file")).to_contain_text(["flag.png"])
    await tray.get_by_label("Add a caption").fill("Our flag")
    await shoot_app(page, "file-tray")
    await tray.get_by_role("button", name="Send", exact=True).click()
    received = await next_message(anna)
    media = received.payload
    assert isinstance(media, Media)
    assert (media.kind, media.mime_type, media.filename, media.caption) == (
        MediaKind.IMAGE,
        "image/png",
        "flag.png",
        "Our flag",
    )
    assert (media.width, media.height) == (64, 48)
    assert media.thumbnail is not None
    assert media.thumbnail.startswith(b"\xff\xd8")  # a JPEG
    assert media.blob is not None
    assert media.blob_id is None
    assert (await anna.download(received)).read_bytes() == small

    # A large one goes through the blob store, in pieces.
    large = png(1000, 800, noise=True)
    assert len(large) > 2 * 1024 * 1024
    await page.get_by_test_id("file-input").set_input_files(
        files=[{"name": "noise.png", "mimeType": "image/png", "buffer": large}]
    )
    await tray.get_by_role("button", name="Send", exact=True).click()
    received = await next_message(anna, within_s=60)
    media = received.payload
    assert isinstance(media, Media)
    assert media.blob is None
    assert media.blob_id is not None
    assert (media.width, media.height, media.plain_size) == (1000, 800, len(large))
    assert media.thumbnail is not None
    assert len(media.thumbnail) <= 12 * 1024
    assert (await anna.download(received)).read_bytes() == large

    # Dropped on the chat and pasted into the message field, pictures are sent the same way.
    dropped = png(40, 30)
    await drop_file(page, "section.chat", "dropped.png", "image/png", dropped)
    await tray.get_by_role("button", name="Send", exact=True).click()
    received = await next_message(anna)
    assert isinstance(received.payload, Media)
    assert received.payload.filename == "dropped.png"
    assert (await anna.download(received)).read_bytes() == dropped
    pasted = png(30, 40)
    await paste_file(page, "image.png", "image/png", pasted)
    await expect(tray.get_by_test_id("staged-file")).to_contain_text(["image.png"])
    await tray.get_by_role("button", name="Send", exact=True).click()
    received = await next_message(anna)
    assert (await anna.download(received)).read_bytes() == pasted

    # The browser shows its own pictures from what it sent, without downloading them.
    pictures = page.locator(".bubble.out [data-testid=file-image][data-loaded='1'] img")
    await expect(pictures).to_have_count(4)
    assert await pictures.first.evaluate("img => img.naturalWidth") == 64
    await expect(page.locator(".bubble.out .caption")).to_have_text(["Our flag"])
    # The chat fits the phone's width, the large picture included.
    viewport = page.viewport_size
    assert viewport is not None
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]
    await shoot_app(page, "files-sent")
    assert app.problems.all() == []


async def test_a_document_and_a_picture_from_an_sdk_customer_show_and_download(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    anna = await make_customer("anna")
    phone = await register(app, platform)
    invoice = pdf("Rechnung 4711")
    photo = png(320, 200)
    await anna.send_file(phone, invoice, filename="Rechnung 4711.pdf")
    await anna.send_file(phone, photo, filename="jacket.png", caption="Die blaue Jacke")
    # A large document, through the blob store.
    manual = pdf("Handbuch") + os.urandom(200_000)
    assert len(manual) > MAX_INLINE_BLOB_BYTES
    await anna.send_file(phone, manual, filename="Handbuch.pdf")

    row = page.get_by_test_id("chat-row").filter(has_text=anna.phone or "")
    await expect(row).to_be_visible(timeout=20_000)
    await row.click()
    picture = page.locator(".bubble.in [data-testid=file-image][data-loaded='1'] img")
    await expect(picture).to_have_count(1, timeout=20_000)
    assert await picture.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [320, 200]
    await expect(page.locator(".bubble.in .caption")).to_have_text(["Die blaue Jacke"])

    cards = page.get_by_test_id("file-card")
    await expect(cards).to_have_count(2)
    await expect(cards.first).to_contain_text("Rechnung 4711.pdf")
    await expect(cards.first).to_contain_text("PDF")
    for card, name, data in (
        (cards.first, "Rechnung 4711.pdf", invoice),
        (cards.last, "Handbuch.pdf", manual),
    ):
        async with page.expect_download() as started:
            await card.get_by_role("button", name="Download").click()
        download = await started.value
        assert download.suggested_filename == name
        assert await downloaded(download) == data
    await shoot_app(page, "files-received")

    # A picture whose blob is not the one described is not shown; the browser says why.
    prepared = await anna.attachments.prepare(png(48, 48), filename="forged.png")
    assert prepared.blob is not None
    damaged = bytearray(prepared.blob)
    damaged[len(damaged) // 2] ^= 0x01
    await anna.send(phone, msgspec.structs.replace(prepared, blob=bytes(damaged)))
    await expect(page.get_by_test_id("file-failed")).to_have_text(
        "This file is not the one that was sent (its check failed), so it was not opened."
    )
    await shoot_app(page, "file-damaged")
    assert app.problems.all() == []


async def test_the_airlines_boarding_pass_arrives_as_a_template_with_its_pdf(
    app: AppPage, platform: Platform
) -> None:
    page = app.page
    phone = await register(app, platform)
    await open_airline(page)
    # Boarding passes are utility messages: the customer allows them in the profile.
    updates = page.locator("[data-scope=utility] input")
    # The box shows what the relay stored: checked once the consent is saved (a profile
    # re-rendered before that shows the stored state again).
    await updates.click()
    await expect(updates).to_be_checked()
    await page.get_by_role("button", name="Message").click()

    boarding = BoardingPass(
        passenger="Anna Schmidt",
        booking="K7Q2ZP",
        flight="TA100",
        origin="BER",
        origin_city="Berlin",
        destination="LIS",
        destination_city="Lisbon",
        day=date(2025, 6, 1),
        departure="10:25",
        boarding="09:40",
        gate="B12",
        seat="12A",
        group=2,
        sequence=42,
    )
    document = boarding_pass_pdf(boarding)
    name = "Boarding pass K7Q2ZP.pdf"
    values = ["Anna", "TA 100", "BER", "LIS", "09:40", "B12", "12A"]
    async with gateway(platform) as api:
        uploaded = await api.post(
            "/media",
            files={"file": (name, document, "application/pdf")},
            data={"messaging_product": "whatsapp", "type": "application/pdf"},
        )
        assert uploaded.status_code == 200, uploaded.text
        header = {"type": "document", "document": {"id": uploaded.json()["id"], "filename": name}}
        sent = await api.post(
            "/messages",
            json={
                "messaging_product": "whatsapp",
                "to": phone,
                "type": "template",
                "template": {
                    "name": "boarding_pass",
                    "language": {"code": "en"},
                    "components": [
                        {"type": "header", "parameters": [header]},
                        {
                            "type": "body",
                            "parameters": [{"type": "text", "text": v} for v in values],
                        },
                    ],
                },
            },
        )
        assert sent.status_code == 200, sent.text

    template = page.get_by_test_id("template")
    await expect(template).to_have_count(1, timeout=20_000)
    await expect(template.locator(".body")).to_have_text(
        "Hello Anna, check-in is complete. Your boarding pass for flight TA 100 from BER to LIS "
        "is attached: boarding 09:40 at gate B12, seat 12A."
    )
    card = template.get_by_test_id("file-card")
    await expect(card).to_contain_text(name)
    await shoot_app(page, "boarding-pass")
    async with page.expect_download() as started:
        await card.get_by_role("button", name="Download").click()
    download = await started.value
    assert download.suggested_filename == name
    assert await downloaded(download) == document

    # Within the service window, reply buttons may carry a picture as their header.
    await write(page, "Can I take my bike?")
    # The relay has it (and the service window is open) once it shows as sent.
    asked = page.locator(".bubble.out").filter(has_text="Can I take my bike?")
    await expect(asked.locator(".ticks")).to_have_attribute(
        "data-status", re.compile(r"^(sent|delivered|read)$"), timeout=20_000
    )
    photo = png(240, 160)
    async with gateway(platform) as api:
        uploaded = await api.post(
            "/media",
            files={"file": ("bike.png", photo, "image/png")},
            data={"messaging_product": "whatsapp", "type": "image/png"},
        )
        assert uploaded.status_code == 200, uploaded.text
        buttons = [
            {"type": "reply", "reply": {"id": "book", "title": "Book a bike box"}},
            {"type": "reply", "reply": {"id": "no", "title": "No, thanks"}},
        ]
        sent = await api.post(
            "/messages",
            json={
                "messaging_product": "whatsapp",
                "to": phone,
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "header": {"type": "image", "image": {"id": uploaded.json()["id"]}},
                    "body": {"text": "Yes, in our bike box. Shall we book one?"},
                    "action": {"buttons": buttons},
                },
            },
        )
        assert sent.status_code == 200, sent.text
    offer = page.locator(".bubble.in .interactive").filter(has_text="Shall we book one?")
    picture = offer.locator("[data-testid=file-image][data-loaded='1'] img")
    await expect(picture).to_have_count(1, timeout=20_000)
    assert await picture.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [240, 160]
    await expect(offer.get_by_role("button", name="Book a bike box")).to_be_visible()
    assert app.problems.all() == []


async def test_a_file_sent_offline_waits_across_a_reload_and_goes_by_itself(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    anna = await make_customer("anna")
    assert anna.phone is not None
    await register(app, platform)
    await open_chat_with(page, anna.phone)
    contract = pdf("Vertrag") + os.urandom(100_000)

    await app.context.set_offline(True)
    await page.get_by_test_id("file-input").set_input_files(
        files=[{"name": "Vertrag.pdf", "mimeType": "application/pdf", "buffer": contract}]
    )
    await page.get_by_test_id("file-tray").get_by_role("button", name="Send", exact=True).click()
    upload = page.get_by_test_id("upload")
    await expect(upload).to_have_attribute("data-stage", "waiting", timeout=30_000)
    await expect(upload.get_by_role("status")).to_have_text(
        "Waiting for a connection — it goes out by itself"
    )
    await expect(upload.locator(".ticks")).to_have_attribute("data-status", "pending")
    await shoot_app(page, "file-waiting")

    # The tab is closed while offline; the browser comes back online and the app is opened
    # again: the file goes out without anyone asking.
    chat_url = page.url
    await page.close()
    await app.context.set_offline(False)
    again = await app.context.new_page()
    await again.goto(chat_url)
    received = await next_message(anna, within_s=40)
    assert isinstance(received.payload, Media)
    assert (await anna.download(received)).read_bytes() == contract
    await expect(again.get_by_test_id("upload")).to_have_count(0)
    await expect(again.locator(".bubble.out").get_by_test_id("file-card")).to_contain_text(
        "Vertrag.pdf"
    )
    # Offline, the browser logs its failed requests; nothing else may go wrong.
    assert app.problems.page_errors == []
    assert app.problems.csp_violations == []

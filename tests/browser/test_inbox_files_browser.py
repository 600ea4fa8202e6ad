"""Files in the inbox in Chromium: a customer's photo shown in the thread (really loaded, under
the page's strict policy) and their document as a card; an agent attaches a PDF, which shows
in the thread (and live for a colleague) and reaches the customer."""

from __future__ import annotations

from pathlib import Path

from browser_support import TwoAgents, notice, shoot
from gateway_support import RunningGateway, customer, next_of
from media_support import pdf
from PIL import Image, ImageDraw
from playwright.async_api import Page, expect
from support import RunningRelay

from tresen.client.events import MessageEvent
from tresen.wire.e2e import Media, MediaKind


def parcel_photo(path: Path) -> Path:
    """A photo-like JPEG: a brown parcel with a dent, on a light table."""
    image = Image.new("RGB", (1200, 900), (225, 221, 212))
    draw = ImageDraw.Draw(image)
    draw.rectangle((250, 220, 950, 720), fill=(170, 120, 70), outline=(110, 75, 40), width=12)
    draw.rectangle((560, 220, 640, 720), fill=(205, 180, 120))
    draw.polygon([(800, 220), (950, 220), (950, 380)], fill=(140, 95, 55))
    image.save(path, format="JPEG", quality=85)
    return path


async def picture_loaded(page: Page, selector: str) -> int:
    """The natural width of the picture ``selector`` once it has loaded (0: it did not)."""
    image = page.locator(selector)
    await expect(image).to_be_visible()
    await image.evaluate("img => img.decode ? img.decode().catch(() => null) : null")
    width: int = await image.evaluate("img => img.complete ? img.naturalWidth : 0")
    return width


async def test_an_agent_sees_the_customers_photo_and_document_and_attaches_a_pdf(
    relay: RunningRelay, gw: RunningGateway, signed_in: TwoAgents, tmp_path: Path
) -> None:
    anna, ben = signed_in.anna, signed_in.ben
    alice = await customer(relay, tmp_path / "alice")
    refused_policies: list[str] = []
    anna.on("console", lambda m: refused_policies.append(m.text) if "Content" in m.text else None)
    try:
        await alice.send_file(
            gw.gateway.phone,
            parcel_photo(tmp_path / "parcel.jpg"),
            caption="Das Paket kam so an, die Ecke ist eingedrückt.",
        )
        await alice.send_file(gw.gateway.phone, pdf("order 4711"), filename="Rechnung 4711.pdf")

        await anna.get_by_role("link").filter(has_text="Rechnung 4711.pdf").click()
        thread = anna.locator("ol.thread")
        await expect(thread).to_contain_text("die Ecke ist eingedrückt")
        assert await picture_loaded(anna, "ol.thread a.picture img") > 0
        card = anna.locator("ol.thread a.file-card")
        await expect(card).to_contain_text("Rechnung 4711.pdf")
        await expect(card).to_contain_text("PDF")

        # The picture opens in full; the page's policy refused nothing.
        async with anna.context.expect_page() as opened:
            await anna.locator("ol.thread a.picture").click()
        full = await opened.value
        await full.wait_for_load_state()
        assert (
            await full.evaluate("document.images.length ? document.images[0].naturalWidth : 0")
            == 1200
        )
        await full.close()
        assert not [t for t in refused_policies if "Content Security Policy" in t]

        # Ben has the same conversation open while Anna attaches a PDF with a caption.
        await ben.goto(anna.url)
        await expect(ben.locator("ol.thread")).to_contain_text("Rechnung 4711.pdf")
        (tmp_path / "Lieferschein 4711.pdf").write_bytes(pdf("Lieferschein 4711"))
        await anna.get_by_label("Attach a file").set_input_files(tmp_path / "Lieferschein 4711.pdf")
        await anna.get_by_label("Caption (optional)").fill(
            "Hier der Lieferschein für Ihre Reklamation."
        )
        await shoot(anna, "inbox-files")
        await anna.get_by_role("button", name="Send file").click()
        await expect(notice(anna)).to_have_text("Sent Lieferschein 4711.pdf.")
        sent = anna.locator("ol.thread li.out a.file-card")
        await expect(sent).to_contain_text("Lieferschein 4711.pdf")
        await expect(anna.locator("ol.thread li.out").last).to_contain_text("Hier der Lieferschein")
        await expect(ben.locator("ol.thread li.out a.file-card")).to_contain_text(
            "Lieferschein 4711.pdf"
        )
        # Downloading the card gives the very file.
        async with anna.expect_download() as downloading:
            await sent.click()
        download = await downloading.value
        assert download.suggested_filename == "Lieferschein 4711.pdf"
        assert Path(await download.path()).read_bytes() == pdf("Lieferschein 4711")

        event = await next_of(alice, MessageEvent, 30)
        assert isinstance(event.payload, Media)
        assert event.payload.kind is MediaKind.DOCUMENT
        assert event.payload.filename == "Lieferschein 4711.pdf"
        received = await alice.attachments.download(event.message_id, event.payload)
        assert received.read_bytes() == pdf("Lieferschein 4711")
        await anna.locator("ol.thread li.out").last.scroll_into_view_if_needed()
        await shoot(anna, "inbox-files-sent")

        # A file dropped on the answer box goes into the attach form, ready to be sent.
        dropped = await anna.evaluate_handle(
            """() => {
                const files = new DataTransfer();
                files.items.add(new File(["%PDF-1.4"], "dropped.pdf", {type: "application/pdf"}));
                return files;
            }"""
        )
        await anna.dispatch_event("#text", "dragover", {"dataTransfer": dropped})
        await expect(anna.locator("#attach.dropping")).to_be_attached()
        await anna.dispatch_event("#text", "drop", {"dataTransfer": dropped})
        assert await anna.evaluate("document.getElementById('file').files[0].name") == "dropped.pdf"
        await expect(anna.get_by_label("Caption (optional)")).to_be_focused()
        await expect(anna.locator("#attach.dropping")).not_to_be_attached()

        # A file larger than any message takes is refused before it is uploaded.
        message = await anna.evaluate(
            """() => {
                const picker = document.getElementById("file");
                const huge = new File(["x"], "film.mp4", {type: "video/mp4"});
                Object.defineProperty(huge, "size", {value: 200 * 1024 * 1024});
                const files = new DataTransfer();
                files.items.add(huge);
                picker.files = files.files;
                Object.defineProperty(picker.files[0], "size", {value: 200 * 1024 * 1024});
                picker.dispatchEvent(new Event("change"));
                return picker.validationMessage;
            }"""
        )
        assert message.startswith("The file is larger than any message takes (at most ")
        assert message.endswith("(file_too_large).")

        # A file the Cloud API would not take is refused with its reason and code.
        (tmp_path / "setup.exe").write_bytes(b"MZ" + bytes(64))
        await anna.get_by_label("Attach a file").set_input_files(tmp_path / "setup.exe")
        await anna.get_by_role("button", name="Send file").click()
        await expect(notice(anna)).to_contain_text("cannot be sent")
        await expect(notice(anna)).to_contain_text("(file_type_unsupported)")
    finally:
        await alice.close()

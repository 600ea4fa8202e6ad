"""The Cloud API's media through the gateway: uploads, media URLs and downloads, deletion and
expiry; image, document and audio messages by media id and by link (fetched without
server-side request forgery); customers' files in webhooks, downloaded through the gateway; a
template's document header reaching the customer as a real attachment."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import secrets
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from gateway_support import (
    RunningGateway,
    approved_template,
    customer,
    next_of,
    serve_gateway,
    subscribed_inbox,
)
from media_support import file_server, pdf, png
from support import Backend, RunningRelay

from tresen.client import Client
from tresen.client.attachments import AttachmentLimits
from tresen.client.events import MessageEvent
from tresen.core.clock import ManualClock
from tresen.core.http import tls_context
from tresen.crypto.attachments import blob_size
from tresen.gateway.media.kinds import KindLimits, is_animated_webp
from tresen.gateway.media.links import LinkFetcher, LinkRefused, address_allowed
from tresen.gateway.settings import MediaSettings
from tresen.wire.e2e import Interactive, Media, MediaKind, Template

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

BOARDING_PASS: dict[str, Any] = {
    "name": "boarding_pass",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "HEADER",
            "format": "DOCUMENT",
            "example": {"header_handle": ["https://airline.example/bp.pdf"]},
        },
        {
            "type": "BODY",
            "text": "Your boarding pass for flight {{1}} is attached.",
            "example": {"body_text": [["KL1234"]]},
        },
    ],
}


async def upload(
    gw: RunningGateway, data: bytes, mime_type: str, name: str = "file", **fields: str
) -> httpx.Response:
    return await gw.http.post(
        f"/{gw.phone_number_id}/media",
        files={"file": (name, data, mime_type)},
        data={"messaging_product": "whatsapp", "type": mime_type, **fields},
    )


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


async def download(gw: RunningGateway, media_id: str) -> bytes:
    """What an integration does: the media URL object, then the URL with the token."""
    r = await gw.http.get(f"/{media_id}")
    assert r.status_code == 200, r.text
    described = r.json()
    r = await gw.http.get(described["url"])
    assert r.status_code == 200, r.text
    assert hashlib.sha256(r.content).hexdigest() == described["sha256"]
    assert len(r.content) == described["file_size"]
    return r.content


async def media_events(client: Client, count: int = 1) -> list[MessageEvent]:
    found: list[MessageEvent] = []
    while len(found) < count:
        event = await next_of(client, MessageEvent, within_s=30)
        if isinstance(event.payload, Media | Template | Interactive):
            found.append(event)
    return found


@pytest.fixture
async def gw_links(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> AsyncIterator[RunningGateway]:
    """A gateway whose operator lets links lead to 127.0.0.1 (the tests' file server)."""
    settings = MediaSettings(link_allowed_networks=["127.0.0.1/32"], link_timeout_s=10)
    async with serve_gateway(relay, backend, tmp_path, media=settings) as running:
        yield running


async def writing_customer(relay: RunningRelay, gw: RunningGateway, folder: Path) -> Client:
    """A customer who wrote first (the service window is open)."""
    client = await customer(relay, folder)
    await client.send_text(gw.gateway.phone, "Hello")
    return client


# --- the media store -----------------------------------------------------------------------


async def test_upload_then_url_download_and_delete(gw: RunningGateway, tmp_path: Path) -> None:
    photo = png()
    r = await upload(gw, photo, "image/png", "parcel.png")
    assert r.status_code == 200, r.text
    media_id = r.json()["id"]
    assert media_id.isdigit()
    assert len(media_id) == 16

    r = await gw.http.get(f"/{media_id}", params={"phone_number_id": gw.phone_number_id})
    described = r.json()
    assert described == {
        "messaging_product": "whatsapp",
        "url": described["url"],
        "mime_type": "image/png",
        "sha256": hashlib.sha256(photo).hexdigest(),
        "file_size": len(photo),
        "id": media_id,
    }
    assert described["url"].startswith(gw.url + "/")
    got = await gw.http.get(described["url"])
    assert got.content == photo
    assert got.headers["content-type"] == "image/png"
    # The URL needs the token, as Meta's do.
    async with httpx.AsyncClient(
        verify=tls_context(),
    ) as anonymous:
        r = await anonymous.get(described["url"])
    assert r.status_code == 401
    assert error_of(r)["code"] == 104

    r = await gw.http.delete(f"/{media_id}")
    assert r.json() == {"success": True}
    r = await gw.http.get(f"/{media_id}")
    assert r.status_code == 400
    assert error_of(r)["code"] == 100
    r = await gw.http.get(described["url"])
    assert r.status_code == 404
    r = await gw.http.delete(f"/{media_id}")
    assert error_of(r)["code"] == 100
    assert not list((gw.settings.media_dir).rglob(media_id))


@sqlite_only
async def test_uploads_out_of_bounds_are_refused_with_clear_codes(gw: RunningGateway) -> None:
    r = await upload(gw, b"<html></html>", "text/html", "page.html")
    assert r.status_code == 400
    assert error_of(r)["code"] == 131053
    assert "text/html" in error_of(r)["error_data"]["details"]

    r = await upload(gw, b"\xff\xd8" + bytes(5 * 1024 * 1024), "image/jpeg", "huge.jpg")
    assert error_of(r)["code"] == 131053
    assert "image may be 5242880 bytes" in error_of(r)["error_data"]["details"]

    r = await upload(gw, b"RIFF0000WEBPVP8 " + bytes(150 * 1024), "image/webp", "s.webp")
    assert error_of(r)["code"] == 131053  # a static sticker: 100 KB

    r = await upload(gw, b"hello", "text/plain", "a.txt", ttl_minutes="0")
    assert error_of(r)["code"] == 100
    assert "ttl_minutes" in error_of(r)["error_data"]["details"]

    r = await gw.http.post(
        f"/{gw.phone_number_id}/media",
        files={"file": ("a.txt", b"hi", "text/plain")},
        data={"type": "text/plain"},
    )
    assert error_of(r)["code"] == 100
    assert "messaging_product" in error_of(r)["error_data"]["details"]

    r = await gw.http.post(f"/{gw.phone_number_id}/media", json={"file": "x"})
    assert error_of(r)["code"] == 100
    assert "multipart" in error_of(r)["error_data"]["details"]

    r = await upload(gw, b"hi", "text/plain", "a.txt")
    assert r.status_code == 200  # a document


@sqlite_only
async def test_an_upload_streams_to_disk(gw: RunningGateway, tmp_path: Path) -> None:
    """A 16 MB upload never sits in the gateway's memory: the traced peak (gateway and this
    test's client together, in one process) stays a fraction of the file."""
    size = 16_000_000
    recording = tmp_path / "recording.mp3"
    with recording.open("wb") as out:
        for _ in range(size // 1_000_000):
            out.write(secrets.token_bytes(1_000_000))
    tracemalloc.start()
    try:
        with recording.open("rb") as reader:
            r = await gw.http.post(
                f"/{gw.phone_number_id}/media",
                files={"file": ("recording.mp3", reader, "audio/mpeg")},
                data={"messaging_product": "whatsapp", "type": "audio/mpeg"},
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 200, r.text
    assert peak < 8 * 1024 * 1024, peak
    described = (await gw.http.get(f"/{r.json()['id']}")).json()
    assert described["file_size"] == size
    assert described["sha256"] == hashlib.sha256(recording.read_bytes()).hexdigest()


@sqlite_only
async def test_media_expire_and_urls_are_short_lived(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with serve_gateway(relay, backend, tmp_path, clock=clock) as gw:
        r = await upload(gw, b"invoice 4711", "text/plain", "invoice.txt", ttl_minutes="60")
        short = r.json()["id"]
        r = await upload(gw, b"menu", "text/plain", "menu.txt")
        kept = r.json()["id"]
        url = (await gw.http.get(f"/{kept}")).json()["url"]

        clock.advance(minutes=6)
        assert (await gw.http.get(url)).status_code == 404  # the URL lived 5 minutes
        assert await download(gw, kept) == b"menu"  # a new one works

        clock.advance(minutes=60)
        assert error_of(await gw.http.get(f"/{short}"))["code"] == 100
        assert await gw.gateway.media.sweep() == 1
        assert not list(gw.settings.media_dir.rglob(short))

        clock.advance(hours=30 * 24)
        assert await gw.gateway.media.sweep() == 1
        assert error_of(await gw.http.get(f"/{kept}"))["code"] == 100


def test_limits_are_metas_or_the_relays_whichever_is_smaller() -> None:
    limits = KindLimits(AttachmentLimits())
    assert limits.limit(MediaKind.IMAGE) == 5 * 1024 * 1024
    assert limits.limit(MediaKind.STICKER, animated=False) == 100 * 1024
    assert limits.limit(MediaKind.STICKER) == 500 * 1024
    # 16 MiB of encrypted blob at the relay holds a little less than 16 MiB of video.
    video = limits.limit(MediaKind.VIDEO)
    assert blob_size(video) <= 16 * 1024 * 1024 < blob_size(video + 1)
    assert video == 16_773_112
    small = KindLimits(AttachmentLimits(media_bytes=1024 * 1024))
    assert blob_size(small.limit(MediaKind.IMAGE)) <= 1024 * 1024
    assert small.limit(MediaKind.IMAGE) < limits.limit(MediaKind.IMAGE)
    assert limits.accepts(MediaKind.DOCUMENT, "image/png")  # a photo sent as a file
    assert not limits.accepts(MediaKind.IMAGE, "application/pdf")
    animated = b"RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x02" + bytes(16)
    assert is_animated_webp(animated)
    assert not is_animated_webp(b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(16))


# --- sending -------------------------------------------------------------------------------


@sqlite_only
async def test_image_by_id_and_document_by_link_reach_the_customer(
    relay: RunningRelay, gw_links: RunningGateway, tmp_path: Path
) -> None:
    gw = gw_links
    alice = await writing_customer(relay, gw, tmp_path / "alice")
    photo = png(320, 200)
    invoice = pdf("INV-4711")
    try:
        async with file_server({"/files/invoice-4711.pdf": (invoice, "application/pdf")}) as url:
            media_id = (await upload(gw, photo, "image/png", "parcel.png")).json()["id"]
            to = alice.phone.lstrip("+")
            async with subscribed_inbox(gw) as inbox:
                r = await gw.send(
                    {"to": to, "type": "image", "image": {"id": media_id, "caption": "Your parcel"}}
                )
                assert r.status_code == 200, r.text
                wamid = r.json()["messages"][0]["id"]
                # Statuses as for text: sent, then delivered once the customer's app has it.
                await inbox.next_status(wamid, "sent")
                await inbox.next_status(wamid, "delivered")
            r = await gw.send(
                {
                    "to": to,
                    "type": "document",
                    "document": {
                        "link": f"{url}/files/invoice-4711.pdf",
                        "caption": "Invoice",
                        "filename": "Invoice 4711.pdf",
                    },
                }
            )
            assert r.status_code == 200, r.text
            image_event, document_event = await media_events(alice, 2)

        image = image_event.payload
        assert isinstance(image, Media)
        assert image.kind is MediaKind.IMAGE
        assert (image.caption, image.mime_type) == ("Your parcel", "image/png")
        assert (image.width, image.height) == (320, 200)
        assert (await alice.download(image_event)).read_bytes() == photo
        document = document_event.payload
        assert isinstance(document, Media)
        assert (document.kind, document.filename) == (MediaKind.DOCUMENT, "Invoice 4711.pdf")
        assert document.mime_type == "application/pdf"
        assert (await alice.download(document_event)).read_bytes() == invoice
        stored = await gw.gateway.store.message(wamid)
        assert stored is not None
        assert stored.type == "image"

        # Deleting the media frees the encrypted copy the relay held for the message.
        assert (await gw.http.delete(f"/{media_id}")).json() == {"success": True}
        r = await relay.http.get(
            f"/v1/attachments/{image.blob_id}",
            headers={"Authorization": f"Bearer {alice.api.token}"},
        )
        assert r.status_code == 404
    finally:
        await alice.close()


@sqlite_only
async def test_audio_is_a_voice_note_when_ogg_and_media_must_fit_the_type(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await writing_customer(relay, gw, tmp_path / "alice")
    to = alice.phone.lstrip("+")
    try:
        note = b"OggS" + secrets.token_bytes(4000)
        media_id = (await upload(gw, note, "audio/ogg", "note.ogg")).json()["id"]
        r = await gw.send({"to": to, "type": "audio", "audio": {"id": media_id}})
        assert r.status_code == 200, r.text
        (event,) = await media_events(alice)
        assert isinstance(event.payload, Media)
        assert (event.payload.kind, event.payload.voice) == (MediaKind.AUDIO, True)

        # A PDF is no image; an unknown id is refused; id and link together are no media.
        doc_id = (await upload(gw, pdf("x"), "application/pdf", "a.pdf")).json()["id"]
        r = await gw.send({"to": to, "type": "image", "image": {"id": doc_id}})
        assert error_of(r)["code"] == 131053
        r = await gw.send({"to": to, "type": "image", "image": {"id": "1234567890123456"}})
        assert error_of(r)["code"] == 131009
        r = await gw.send(
            {"to": to, "type": "image", "image": {"id": doc_id, "link": "https://a.example/x"}}
        )
        assert error_of(r)["code"] == 100
        r = await gw.send({"to": to, "type": "sticker", "sticker": {"id": doc_id, "caption": "x"}})
        assert error_of(r)["code"] == 100
    finally:
        await alice.close()


@sqlite_only
async def test_links_to_internal_addresses_are_refused(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    """Without the operator's allowance, a link may not lead to the gateway's own machine or
    network: nothing is fetched and the integration reads why."""
    alice = await writing_customer(relay, gw, tmp_path / "alice")
    to = alice.phone.lstrip("+")
    try:
        async with file_server({"/a.pdf": (pdf("secret"), "application/pdf")}) as url:
            port = url.rsplit(":", 1)[1]
            for link in (
                f"{url}/a.pdf",
                f"http://localhost:{port}/a.pdf",
                "http://10.1.2.3/a.pdf",
                "http://169.254.169.254/latest/meta-data/",
                f"http://[::1]:{port}/a.pdf",
                f"http://[::ffff:127.0.0.1]:{port}/a.pdf",
                "http://0.0.0.0/a.pdf",
            ):
                r = await gw.send({"to": to, "type": "document", "document": {"link": link}})
                assert r.status_code == 400, link
                error = error_of(r)
                assert error["code"] == 131053, link
                assert "does not fetch" in error["error_data"]["details"], link
    finally:
        await alice.close()


@sqlite_only
async def test_a_redirect_to_a_private_address_is_refused(
    relay: RunningRelay, gw_links: RunningGateway, tmp_path: Path
) -> None:
    gw = gw_links
    alice = await writing_customer(relay, gw, tmp_path / "alice")
    to = alice.phone.lstrip("+")
    try:
        async with file_server({"/a.pdf": (pdf("ok"), "application/pdf")}) as url:
            for target, expected in (
                ("http://10.0.0.7/a.pdf", "10.0.0.7"),
                ("http://192.168.1.1/a.pdf", "192.168.1.1"),
            ):
                link = f"{url}/redirect?to={target}"
                r = await gw.send({"to": to, "type": "document", "document": {"link": link}})
                details = error_of(r)["error_data"]["details"]
                assert error_of(r)["code"] == 131053
                assert expected in details
            r = await gw.send({"to": to, "type": "document", "document": {"link": f"{url}/loop"}})
            assert "redirects more than 3 times" in error_of(r)["error_data"]["details"]
            r = await gw.send(
                {"to": to, "type": "document", "document": {"link": f"{url}/missing.pdf"}}
            )
            assert "HTTP 404" in error_of(r)["error_data"]["details"]
            # The allowed hop itself still works.
            link = f"{url}/redirect?to=/a.pdf"
            r = await gw.send({"to": to, "type": "document", "document": {"link": link}})
            assert r.status_code == 200, r.text
    finally:
        await alice.close()


async def test_addresses_a_link_may_lead_to() -> None:
    def allowed(text: str, *networks: str) -> bool:
        nets = [ipaddress.ip_network(n) for n in networks]
        return address_allowed(ipaddress.ip_address(text), nets)

    for internal in (
        "127.0.0.1",
        "10.9.8.7",
        "172.16.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "0.0.0.0",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::1",
        "2002:a00:1::1",
    ):
        assert not allowed(internal), internal
    assert allowed("93.184.215.14")
    assert allowed("2a00:1450:4001:80b::200e")
    assert allowed("::ffff:93.184.215.14")
    assert allowed("127.0.0.1", "127.0.0.1/32")
    assert allowed("::ffff:127.0.0.1", "127.0.0.1/32")
    assert not allowed("127.0.0.2", "127.0.0.1/32")

    async def to_loopback(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "127.0.0.1"]  # one bad answer is enough to refuse

    fetcher = LinkFetcher(timeout_s=5, redirects=3, resolver=to_loopback)
    with pytest.raises(LinkRefused, match=r"127\.0\.0\.1"):
        await fetcher.fetch("https://cdn.example/a.jpg", io.BytesIO(), limit=100)
    for bad in ("ftp://a.example/x", "http://user:pw@a.example/x", "file:///etc/passwd"):
        with pytest.raises(LinkRefused):
            await fetcher.fetch(bad, io.BytesIO(), limit=100)


# --- receiving -----------------------------------------------------------------------------


@sqlite_only
async def test_a_customers_files_arrive_as_media_the_integration_downloads(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    photo = png(100, 80)
    scan = pdf("claim 77")
    try:
        async with subscribed_inbox(gw) as inbox:
            await alice.send_file(
                gw.gateway.phone, photo, filename="broken.png", caption="It arrived broken"
            )
            value = await inbox.next_message("image")
            (message,) = value["messages"]
            image = message["image"]
            assert image["mime_type"] == "image/png"
            assert image["caption"] == "It arrived broken"
            assert image["sha256"] == hashlib.sha256(photo).hexdigest()
            assert await download(gw, image["id"]) == photo

            await alice.send_file(gw.gateway.phone, scan, filename="claim 77.pdf")
            document = (await inbox.next_message("document"))["messages"][0]["document"]
            assert document["filename"] == "claim 77.pdf"
            assert document["mime_type"] == "application/pdf"
            assert await download(gw, document["id"]) == scan

            await alice.send_file(
                gw.gateway.phone, b"OggS" + bytes(100), filename="n.ogg", voice=True
            )
            audio = (await inbox.next_message("audio"))["messages"][0]["audio"]
            assert audio["voice"] is True
    finally:
        await alice.close()


@sqlite_only
async def test_a_tampered_blob_becomes_an_error_webhook(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        async with subscribed_inbox(gw) as inbox:
            alice.attachments.inline_bytes = 0  # through the blob store, where it is damaged
            media = await alice.attachments.prepare(pdf("forged"), filename="claim.pdf")
            stored = next(
                p
                for p in (tmp_path / "attachments").rglob("*")
                if p.is_file() and hashlib.sha256(p.read_bytes()).digest() == media.sha256
            )
            damaged = bytearray(stored.read_bytes())
            damaged[len(damaged) // 2] ^= 0x01
            stored.write_bytes(bytes(damaged))
            await alice.send(gw.gateway.phone, media)

            (message,) = (await inbox.next_message("unsupported"))["messages"]
            (error,) = message["errors"]
            assert error["code"] == 131052
            assert "attachment_digest_mismatch" in error["error_data"]["details"]
            assert "document" not in message
    finally:
        await alice.close()


async def test_a_forged_inline_file_becomes_an_error_webhook(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        async with subscribed_inbox(gw) as inbox:
            media = await alice.attachments.prepare(pdf("forged"), filename="claim.pdf")
            assert media.blob is not None
            assert media.blob_id is None
            damaged = bytearray(media.blob)
            damaged[len(damaged) // 2] ^= 0x01
            await alice.send(gw.gateway.phone, msgspec.structs.replace(media, blob=bytes(damaged)))

            (message,) = (await inbox.next_message("unsupported"))["messages"]
            (error,) = message["errors"]
            assert error["code"] == 131052
            assert "attachment_digest_mismatch" in error["error_data"]["details"]
    finally:
        await alice.close()


# --- templates -----------------------------------------------------------------------------


@sqlite_only
async def test_a_document_header_reaches_the_customer_as_an_attachment(
    relay: RunningRelay, gw_links: RunningGateway, tmp_path: Path
) -> None:
    gw = gw_links
    alice = await customer(relay, tmp_path / "alice")
    boarding_pass = pdf("KL1234 seat 12A")
    try:
        await approved_template(relay, gw, BOARDING_PASS)
        await alice.opt_in(gw.gateway.phone)
        media_id = (await upload(gw, boarding_pass, "application/pdf", "bp.pdf")).json()["id"]
        to = alice.phone.lstrip("+")

        def template(document: dict[str, Any]) -> dict[str, Any]:
            return {
                "to": to,
                "type": "template",
                "template": {
                    "name": "boarding_pass",
                    "language": {"code": "en_US"},
                    "components": [
                        {
                            "type": "header",
                            "parameters": [{"type": "document", "document": document}],
                        },
                        {"type": "body", "parameters": [{"type": "text", "text": "KL1234"}]},
                    ],
                },
            }

        r = await gw.send(template({"id": media_id, "filename": "Boarding pass KL1234.pdf"}))
        assert r.status_code == 200, r.text
        (event,) = await media_events(alice)
        assert event.template is not None
        assert "flight KL1234" in event.template.body
        assert isinstance(event.payload, Template)
        attached = event.payload.header_media
        assert attached is not None
        assert (attached.kind, attached.filename) == (
            MediaKind.DOCUMENT,
            "Boarding pass KL1234.pdf",
        )
        assert (await alice.download(event)).read_bytes() == boarding_pass

        async with file_server({"/bp/77.pdf": (boarding_pass, "application/pdf")}) as url:
            r = await gw.send(template({"link": f"{url}/bp/77.pdf"}))
            assert r.status_code == 200, r.text
            (event,) = await media_events(alice)
        assert (await alice.download(event)).read_bytes() == boarding_pass

        r = await gw.send(template({"id": "1234567890123456"}))
        assert error_of(r)["code"] == 131009
    finally:
        await alice.close()


@sqlite_only
async def test_reply_buttons_with_a_photo_header_reach_the_customer_with_the_photo(
    relay: RunningRelay, gw_links: RunningGateway, tmp_path: Path
) -> None:
    gw = gw_links
    alice = await customer(relay, tmp_path / "alice")
    photo = png(320, 200)
    try:
        await alice.send_text(gw.gateway.phone, "Is the jacket still there?")
        media_id = (await upload(gw, photo, "image/png", "jacket.png")).json()["id"]

        def buttons(header: dict[str, Any]) -> dict[str, Any]:
            return {
                "to": alice.phone.lstrip("+"),
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "header": header,
                    "body": {"text": "Yes, in blue. Shall we keep it for you?"},
                    "action": {
                        "buttons": [
                            {"type": "reply", "reply": {"id": "keep", "title": "Keep it"}},
                            {"type": "reply", "reply": {"id": "no", "title": "No, thanks"}},
                        ]
                    },
                },
            }

        r = await gw.send(buttons({"type": "image", "image": {"id": media_id}}))
        assert r.status_code == 200, r.text
        (event,) = await media_events(alice)
        assert isinstance(event.payload, Interactive)
        assert [b.title for b in event.payload.buttons] == ["Keep it", "No, thanks"]
        header = event.payload.header_media
        assert header is not None
        assert (header.kind, header.width, header.height) == (MediaKind.IMAGE, 320, 200)
        assert (await alice.download(event)).read_bytes() == photo

        async with file_server({"/a.png": (photo, "image/png")}) as url:
            r = await gw.send(buttons({"type": "image", "image": {"link": f"{url}/a.png"}}))
            assert r.status_code == 200, r.text
            (event,) = await media_events(alice)
        assert (await alice.download(event)).read_bytes() == photo

        # A caption on the header's file, a sticker header and a list with a file are refused.
        captioned = {"type": "image", "image": {"id": media_id, "caption": "x"}}
        assert error_of(await gw.send(buttons(captioned)))["code"] == 100
        sticker = {"type": "sticker", "sticker": {"id": media_id}}
        assert error_of(await gw.send(buttons(sticker)))["code"] == 100
        listed = buttons({"type": "image", "image": {"id": media_id}})
        listed["interactive"]["type"] = "list"
        assert error_of(await gw.send(listed))["code"] == 100
    finally:
        await alice.close()

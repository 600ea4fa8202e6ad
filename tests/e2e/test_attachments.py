"""Files end to end: a customer and a business exchange an image, a PDF and a small ticket
(carried inside the message) both ways through a real relay process; the relay keeps only
ciphertext, and a blob changed on the relay's disk is refused by its recipient.

A marker inside each file and in each file's name is searched for in everything the relay
keeps: its database (the SQLite file with its WAL, or every PostgreSQL table), its blob
folder and its log output. The ciphertext of every blob is found there (the positive
control: the search looks where the files are).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import secrets
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from support import Backend, RelayProcess, registered_client, relay_database_bytes

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.crypto.attachments import AttachmentDigestMismatch
from tresen.wire.e2e import Media, MediaKind

pytestmark = pytest.mark.slow

CUSTOMER = "+4915120000001"
BUSINESS = "+4930555020000"


def image_with(marker: str) -> bytes:
    info = PngInfo()
    info.add_text("Comment", f"parcel photo {marker}")
    out = io.BytesIO()
    Image.effect_noise((64, 48), 60).convert("RGB").resize((640, 480)).save(
        out, format="PNG", pnginfo=info
    )
    return out.getvalue()


def pdf_with(marker: str) -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n"
        + f"BT (Invoice {marker}) Tj ET\n".encode()
        + secrets.token_bytes(200_000)
        + b"\n%%EOF\n"
    )


async def received_media(client: Client, count: int) -> list[MessageEvent]:
    found: list[MessageEvent] = []
    async for event in client.events():
        if isinstance(event, MessageEvent) and isinstance(event.payload, Media):
            found.append(event)
            if len(found) == count:
                return found
    raise AssertionError("event stream ended")


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


async def test_files_travel_encrypted_both_ways_and_the_relay_keeps_only_ciphertext(
    backend: Backend, tmp_path: Path
) -> None:
    relay = RelayProcess(backend, tmp_path / "relay", TRESEN_LOG_LEVEL="debug")
    await relay.start()
    markers: list[str] = []
    blob_digests: list[bytes] = []
    try:
        customer = await registered_client(relay.url, relay.sms_file, tmp_path / "c", CUSTOMER)
        business = await registered_client(relay.url, relay.sms_file, tmp_path / "b", BUSINESS)
        await business.save_business_profile(display_name="Tresen Parcel")
        customer.start()
        business.start()

        sent: dict[str, bytes] = {}

        async def send(sender: Client, to: str, kind: str) -> None:
            marker = f"mk{secrets.token_hex(8)}"
            file_marker = f"fn{secrets.token_hex(8)}"
            markers.extend([marker, file_marker])
            if kind == "image":
                data, name = image_with(marker), f"parcel-{file_marker}.png"
            elif kind == "ticket":  # small: it travels inside the message, not as a blob
                data, name = f"Ticket {marker}\n".encode() * 40, f"ticket-{file_marker}.txt"
            else:
                data, name = pdf_with(marker), f"invoice-{file_marker}.pdf"
            path = tmp_path / name
            path.write_bytes(data)
            sent[name] = data
            await sender.send_file(to, path, caption=f"see {marker}")

        at_business = asyncio.create_task(received_media(business, 3))
        await send(customer, BUSINESS, "image")
        await send(customer, BUSINESS, "pdf")
        await send(customer, BUSINESS, "ticket")
        at_customer = asyncio.create_task(received_media(customer, 3))
        await send(business, CUSTOMER, "image")
        await send(business, CUSTOMER, "pdf")
        await send(business, CUSTOMER, "ticket")
        received = await asyncio.wait_for(asyncio.gather(at_business, at_customer), 60)

        for client, events in zip((business, customer), received, strict=True):
            kinds = [e.payload.kind for e in events if isinstance(e.payload, Media)]
            assert kinds == [MediaKind.IMAGE, MediaKind.DOCUMENT, MediaKind.DOCUMENT]
            for event in events:
                media = event.payload
                assert isinstance(media, Media)
                assert media.filename is not None
                kept = await client.download(event)
                assert kept.read_bytes() == sent[media.filename]
                assert client.attachment_path(event.message_id) == kept
                if media.blob_id is not None:
                    blob_digests.append(media.sha256)
            assert [isinstance(e.payload, Media) and e.payload.blob is None for e in events] == [
                True,
                True,
                False,
            ]
            image = events[0].payload
            assert isinstance(image, Media)
            assert (image.width, image.height) == (640, 480)
            assert image.thumbnail is not None

        # A blob changed on the relay's disk: its recipient refuses it and keeps nothing.
        at_customer = asyncio.create_task(received_media(customer, 1))
        await send(business, CUSTOMER, "pdf")
        (tampered,) = await asyncio.wait_for(at_customer, 30)
        media = tampered.payload
        assert isinstance(media, Media)
        stored = next(
            p
            for p in files_under(tmp_path / "relay" / "data")
            if hashlib.sha256(p.read_bytes()).digest() == media.sha256
        )
        damaged = bytearray(stored.read_bytes())
        damaged[len(damaged) // 2] ^= 0x01
        stored.write_bytes(bytes(damaged))
        with pytest.raises(AttachmentDigestMismatch) as refused:
            await customer.download(tampered)
        assert refused.value.code == "attachment_digest_mismatch"
        assert customer.attachment_path(tampered.message_id) is None
        kept_names = [p.name for p in files_under(tmp_path / "c" / "attachments")]
        assert not [n for n in kept_names if n.endswith(media.filename or "?")]

        await customer.close()
        await business.close()
    finally:
        relay.stop()

    blob_files = files_under(tmp_path / "relay" / "data")
    blobs = [p.read_bytes() for p in blob_files]
    # Positive control: every blob exchanged is in the relay's blob folder, as ciphertext.
    on_disk = {hashlib.sha256(b).digest() for b in blobs}
    assert set(blob_digests) <= on_disk
    kept = b"\n".join(
        [
            await relay_database_bytes(backend),
            relay.log_file.read_bytes(),
            *blobs,
            *(str(p).encode() for p in blob_files),
        ]
    )
    for marker in markers:
        assert marker.encode() not in kept, marker

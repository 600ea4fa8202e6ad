"""The terminal app's files without Textual and without a relay: how a chat shows them, and
``/save``, ``/open`` and ``/attach`` against a blob store that follows the relay's contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from attachment_support import BlobStore

from tresen.client import Client
from tresen.client.app import ChatModel, LineKind
from tresen.client.store import MessageStatus, StoredMessage
from tresen.core.clock import ManualClock
from tresen.crypto.attachments import encrypt_bytes
from tresen.wire.e2e import Media, MediaKind, Text, encode_payload

SHOP, SHOP_PHONE = "acc-shop", "+4930555010000"
NOW = 1_767_225_600_000
INVOICE = b"%PDF-1.7 the invoice " + bytes(48_000)


class Opener:
    def __init__(self, *, available: bool = True) -> None:
        self.available = available
        self.opened: list[Path] = []

    async def __call__(self, path: Path) -> bool:
        if self.available:
            self.opened.append(path)
        return self.available


@pytest.fixture
def blobs() -> BlobStore:
    return BlobStore()


@pytest.fixture
def opener() -> Opener:
    return Opener()


@pytest.fixture
async def model(tmp_path: Path, blobs: BlobStore, opener: Opener) -> AsyncIterator[ChatModel]:
    client = Client.open(
        tmp_path / "me", "http://relay.test", transport=blobs, clock=ManualClock(NOW)
    )
    client.api.token = "token"
    client.store.remember_peer(SHOP, SHOP_PHONE, NOW)
    model = ChatModel(client, opener=opener)
    model.open_chat = SHOP
    yield model
    await client.close()


def receive_file(
    model: ChatModel,
    blobs: BlobStore,
    message_id: str,
    data: bytes,
    *,
    filename: str | None,
    kind: MediaKind = MediaKind.DOCUMENT,
    mime_type: str = "application/pdf",
    caption: str | None = None,
    at_ms: int = NOW,
) -> Media:
    blob, sealed = encrypt_bytes(data)
    blob_id = f"blob{message_id}"
    blobs.blobs[blob_id] = {"size": len(blob), "data": bytearray(blob)}
    media = Media(
        kind=kind,
        blob_id=blob_id,
        key=sealed.key,
        sha256=sealed.sha256,
        size=sealed.size,
        plain_size=sealed.plain_size,
        mime_type=mime_type,
        filename=filename,
        caption=caption,
    )
    put(model, message_id, media, at_ms)
    return media


def put(model: ChatModel, message_id: str, payload: Media | Text, at_ms: int = NOW) -> None:
    model.client.store.put_message(
        StoredMessage(
            message_id=message_id,
            chat=SHOP,
            outgoing=False,
            sender_account=SHOP,
            sender_device=1,
            client_msg_id=None,
            payload=encode_payload(payload),
            status=MessageStatus.RECEIVED,
            server_ms=at_ms,
            error=None,
        )
    )


def texts(model: ChatModel) -> list[tuple[str | None, str]]:
    return [(line.marker, line.text) for line in model.lines(SHOP)]


async def test_a_chat_shows_each_file_with_its_number_kind_name_and_size(
    model: ChatModel, blobs: BlobStore
) -> None:
    receive_file(model, blobs, "m1", INVOICE, filename="invoice.pdf", caption="Your invoice")
    put(model, "m2", Text(text="Anything else?"), NOW + 1)
    receive_file(
        model,
        blobs,
        "m3",
        b"\xff\xd8 a photo",
        filename=None,
        kind=MediaKind.IMAGE,
        mime_type="image/jpeg",
        at_ms=NOW + 2,
    )

    assert texts(model) == [
        ("file 1", "📎 document · invoice.pdf · 48 KB — Your invoice"),
        (None, "Anything else?"),
        ("file 2", "📎 image · 10 bytes"),
    ]


async def test_save_downloads_the_file_and_says_where_it_is(
    model: ChatModel, blobs: BlobStore, tmp_path: Path
) -> None:
    receive_file(model, blobs, "m1", INVOICE, filename="invoice.pdf")

    await model.submit("/save 1")

    kept = model.client.attachment_path("m1")
    assert kept is not None
    assert kept.read_bytes() == INVOICE
    assert kept.parent == tmp_path / "me" / "attachments"
    assert model.feedback == f"Saved {kept.name} (48 KB) at {kept}."


async def test_save_copies_the_file_to_a_path_or_into_a_folder(
    model: ChatModel, blobs: BlobStore, tmp_path: Path
) -> None:
    receive_file(model, blobs, "m1", INVOICE, filename="invoice.pdf")
    downloads = tmp_path / "Downloads"
    downloads.mkdir()

    await model.submit(f"/save 1 {downloads}")
    assert (downloads / "invoice.pdf").read_bytes() == INVOICE
    await model.submit(f'/save "{downloads}/my invoice.pdf"')

    assert (downloads / "my invoice.pdf").read_bytes() == INVOICE
    assert model.feedback.startswith("Saved my invoice.pdf (48 KB)")


async def test_save_without_a_number_means_the_newest_file_and_a_wrong_one_is_explained(
    model: ChatModel, blobs: BlobStore
) -> None:
    await model.submit("/save")
    assert model.feedback == "This chat has no files yet; /attach PATH sends one."

    receive_file(model, blobs, "m1", b"first", filename="a.txt", mime_type="text/plain")
    receive_file(model, blobs, "m2", b"second", filename="b.txt", mime_type="text/plain")
    await model.submit("/save 3")
    assert model.feedback == "/save 1 to /save 2: the chat's files, oldest first."

    await model.submit("/save")
    kept = model.client.attachment_path("m2")
    assert kept is not None
    assert kept.read_bytes() == b"second"


async def test_open_saves_the_file_and_hands_it_to_the_systems_opener(
    model: ChatModel, blobs: BlobStore, opener: Opener
) -> None:
    receive_file(model, blobs, "m1", INVOICE, filename="invoice.pdf")

    await model.submit("/open 1")

    kept = model.client.attachment_path("m1")
    assert opener.opened == [kept]
    assert model.feedback.startswith("Opening ")


async def test_without_an_opener_open_says_where_the_file_is(
    model: ChatModel, blobs: BlobStore, opener: Opener
) -> None:
    opener.available = False
    receive_file(model, blobs, "m1", INVOICE, filename="invoice.pdf")

    await model.submit("/open 1")

    kept = model.client.attachment_path("m1")
    assert model.feedback == (
        f"No program to open files here (xdg-open is missing); the file is at {kept}."
    )


async def test_a_tampered_file_is_refused_with_a_clear_error_and_not_kept(
    model: ChatModel, blobs: BlobStore, opener: Opener
) -> None:
    media = receive_file(model, blobs, "m1", INVOICE, filename="invoice.pdf")
    blobs.blobs[media.blob_id]["data"][-3] ^= 0x40

    await model.submit("/open 1")

    assert opener.opened == []
    assert model.client.attachment_path("m1") is None
    last = model.lines(SHOP)[-1]
    assert last.kind is LineKind.ERROR
    assert "attachment_digest_mismatch" in last.text


async def test_attach_explains_what_it_needs(model: ChatModel, tmp_path: Path) -> None:
    await model.submit("/attach")
    assert model.feedback == "Which file? /attach ~/photo.jpg [a caption]"

    await model.submit(f"/attach {tmp_path / 'missing.pdf'} the invoice")
    assert model.feedback == f"There is no file at {tmp_path / 'missing.pdf'}."

    model.open_chat = None
    await model.submit("/attach x.pdf")
    assert model.feedback == "Open a chat first; /attach sends a file to it."


async def test_open_with_a_phone_number_still_opens_a_chat(model: ChatModel) -> None:
    model.open_chat = None
    await model.submit(f"/open {SHOP_PHONE}")

    assert model.open_chat == SHOP

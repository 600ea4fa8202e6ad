"""Attachments in the client: what is uploaded, resumed, refused and kept, against a blob store
that follows the relay's contract (``/v1/attachments``) and loses connections on request."""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from attachment_support import BlobStore
from PIL import Image

from tresen.client.api import RelayApi
from tresen.client.attachments import (
    AttachmentLimits,
    Attachments,
    AttachmentUnavailable,
    kind_for,
    safe_filename,
)
from tresen.client.store import LocalStore
from tresen.crypto.attachments import (
    AttachmentDigestMismatch,
    AttachmentTooLarge,
    decrypt_bytes,
)
from tresen.wire.e2e import (
    MAX_THUMBNAIL_BYTES,
    InvalidPayload,
    Media,
    MediaKind,
    decode_payload,
    encode_payload,
)


@pytest.fixture
def blobs() -> BlobStore:
    return BlobStore()


@pytest.fixture
async def attachments(tmp_path: Path, blobs: BlobStore) -> AsyncIterator[Attachments]:
    store = LocalStore(tmp_path / "me" / "client.db", bytes(32))
    api = RelayApi("http://relay.test", token="t", transport=blobs)
    yield Attachments(
        api,
        store,
        tmp_path / "me" / "attachments",
        piece_bytes=100_000,
        limits=AttachmentLimits(media_bytes=1_000_000, document_bytes=2_000_000),
    )
    await api.close()
    store.close()


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    noise = Image.effect_noise((width // 10, height // 10), 80).convert("RGB")
    noise.resize((width, height)).save(out, format="PNG")
    return out.getvalue()


async def test_a_file_is_uploaded_encrypted_in_pieces_and_described(
    attachments: Attachments, blobs: BlobStore, tmp_path: Path
) -> None:
    source = tmp_path / "Rechnung 2026-0042.pdf"
    plain = b"%PDF-1.7 invoice-marker " + secrets.token_bytes(350_000)
    source.write_bytes(plain)

    media = await attachments.prepare(source, caption="Your invoice")

    blob = blobs.complete(media.blob_id)
    assert media.kind is MediaKind.DOCUMENT
    assert (media.filename, media.mime_type) == ("Rechnung 2026-0042.pdf", "application/pdf")
    assert media.plain_size == len(plain)
    assert media.size == len(blob)
    assert media.sha256 == hashlib.sha256(blob).digest()
    assert b"invoice-marker" not in blob
    assert decrypt_bytes(blob, key=media.key, sha256=media.sha256) == plain
    patches = [r for r in blobs.requests if r[0] == "PATCH"]
    assert len(patches) == 4  # pieces of 100,000 bytes
    assert decode_payload(encode_payload(media)) == media
    assert not list((tmp_path / "me" / "attachments" / ".outgoing").iterdir())


async def test_an_upload_continues_where_the_relay_got_to_after_a_lost_connection(
    attachments: Attachments, blobs: BlobStore
) -> None:
    blobs.lose_patch_responses = 2
    plain = secrets.token_bytes(250_000)

    media = await attachments.prepare(plain, filename="scan.bin")

    assert decrypt_bytes(blobs.complete(media.blob_id), key=media.key, sha256=media.sha256) == (
        plain
    )
    asked = [r for r in blobs.requests if r[0] == "GET" and r[1].endswith("/upload")]
    assert len(asked) == 2


async def test_a_file_over_its_kinds_limit_is_refused_before_anything_is_uploaded(
    attachments: Attachments, blobs: BlobStore
) -> None:
    with pytest.raises(AttachmentTooLarge) as refused:
        await attachments.prepare(bytes(1_000_000), filename="clip.mp4")

    assert refused.value.code == "attachment_too_large"
    assert blobs.requests == []
    # The same size is fine as a document, whose limit is larger.
    media = await attachments.prepare(bytes(1_000_000), filename="clip.mp4", mime_type="x/y")
    assert media.kind is MediaKind.DOCUMENT


async def test_an_image_carries_its_size_and_a_small_thumbnail(attachments: Attachments) -> None:
    media = await attachments.prepare(png(900, 600), filename="parcel.png", caption="Broken")

    assert media.kind is MediaKind.IMAGE
    assert (media.width, media.height, media.mime_type) == (900, 600, "image/png")
    assert media.thumbnail is not None
    assert len(media.thumbnail) <= MAX_THUMBNAIL_BYTES
    with Image.open(io.BytesIO(media.thumbnail)) as thumbnail:
        assert thumbnail.format == "JPEG"
        assert max(thumbnail.size) <= 160


async def test_an_image_that_does_not_decode_is_sent_without_a_thumbnail(
    attachments: Attachments,
) -> None:
    media = await attachments.prepare(b"not really a picture", filename="photo.jpg")

    assert media.kind is MediaKind.IMAGE
    assert media.thumbnail is None
    assert media.width is None


async def test_fields_that_do_not_fit_are_refused_before_anything_is_uploaded(
    attachments: Attachments, blobs: BlobStore
) -> None:
    with pytest.raises(InvalidPayload):
        await attachments.prepare(b"%PDF", filename="a.pdf", caption="x" * 1025)
    with pytest.raises(InvalidPayload):
        await attachments.prepare(b"%PDF", filename="a.pdf", duration_ms=1000)

    assert blobs.requests == []


def test_the_kind_follows_the_mime_type() -> None:
    assert kind_for("image/jpeg") is MediaKind.IMAGE
    assert kind_for("audio/ogg") is MediaKind.AUDIO
    assert kind_for("video/mp4") is MediaKind.VIDEO
    assert kind_for("application/pdf") is MediaKind.DOCUMENT


async def test_a_received_file_is_downloaded_checked_and_kept(
    attachments: Attachments, blobs: BlobStore, tmp_path: Path
) -> None:
    plain = secrets.token_bytes(300_000)
    media = await attachments.prepare(plain, filename="boarding-pass.pdf")
    blobs.break_downloads = 2

    kept = await attachments.download("m1", media)

    assert kept.read_bytes() == plain
    assert kept.parent == tmp_path / "me" / "attachments"
    assert kept.name.endswith("boarding-pass.pdf")
    assert attachments.saved("m1") == kept
    ranges = [r[2].get("range") for r in blobs.requests if r[0] == "GET" and "upload" not in r[1]]
    assert ranges[0] is None
    assert all(r is not None for r in ranges[1:])
    assert len(ranges) == 3
    # Kept once: asking again downloads nothing.
    before = len(blobs.requests)
    assert await attachments.download("m1", media) == kept
    assert len(blobs.requests) == before


async def test_a_tampered_blob_is_refused_and_nothing_is_kept(
    attachments: Attachments, blobs: BlobStore, tmp_path: Path
) -> None:
    media = await attachments.prepare(secrets.token_bytes(70_000), filename="photo.jpg")
    blobs.blobs[media.blob_id]["data"][100] ^= 0x01

    with pytest.raises(AttachmentDigestMismatch) as refused:
        await attachments.download("m1", media)

    assert refused.value.code == "attachment_digest_mismatch"
    assert attachments.saved("m1") is None
    folder = tmp_path / "me" / "attachments"
    assert [p.name for p in folder.iterdir() if p.is_file()] == []


async def test_a_blob_the_relay_no_longer_has_is_unavailable(
    attachments: Attachments, blobs: BlobStore
) -> None:
    media = await attachments.prepare(b"hello" * 5000, filename="a.txt")
    assert media.blob_id is not None
    del blobs.blobs[media.blob_id]

    with pytest.raises(AttachmentUnavailable):
        await attachments.download("m1", media)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../.ssh/authorized_keys", "authorized_keys"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/etc/passwd", "passwd"),
        ("..", "fallback.bin"),
        (".bashrc", "bashrc"),
        ("a\x00b\nc.pdf", "a_b_c.pdf"),
        ("Überweisung März.pdf", "Überweisung März.pdf"),
        ("x" * 300 + ".pdf", "x" * 116 + ".pdf"),
        (None, "fallback.bin"),
    ],
)
def test_file_names_from_senders_stay_in_the_attachments_folder(
    name: str | None, safe: str
) -> None:
    assert safe_filename(name, "fallback.bin") == safe


async def test_a_hostile_file_name_is_kept_inside_the_attachments_folder(
    attachments: Attachments, tmp_path: Path
) -> None:
    media = await attachments.prepare(b"owned", filename="../../../escape.sh")

    kept = await attachments.download("m2", media)

    assert kept.parent == tmp_path / "me" / "attachments"
    assert not (tmp_path / "escape.sh").exists()


# --- small files inside the message ----------------------------------------------------------


async def test_a_small_file_travels_inside_the_message_and_opens(
    attachments: Attachments, blobs: BlobStore, tmp_path: Path
) -> None:
    plain = b"%PDF-1.7 boarding pass KL1234 seat 12A " + secrets.token_bytes(3000)

    media = await attachments.prepare(plain, filename="boarding-pass.pdf")

    assert blobs.requests == []  # nothing went to the blob store
    assert media.blob_id is None
    assert media.blob is not None
    assert media.size == len(media.blob)
    assert b"KL1234" not in media.blob
    assert decode_payload(encode_payload(media)) == media
    kept = await attachments.download("m-inline", media)
    assert kept.read_bytes() == plain
    assert kept.name == "m-inline-boarding-pass.pdf"
    assert blobs.requests == []


async def test_a_file_just_over_the_inline_size_is_uploaded(
    attachments: Attachments, blobs: BlobStore
) -> None:
    attachments.inline_bytes = 4096
    small, large = secrets.token_bytes(3000), secrets.token_bytes(5000)

    inline = await attachments.prepare(small, filename="a.bin")
    uploaded = await attachments.prepare(large, filename="b.bin")

    assert inline.blob is not None
    assert inline.blob_id is None
    assert uploaded.blob is None
    assert uploaded.blob_id is not None
    assert decrypt_bytes(
        blobs.complete(uploaded.blob_id), key=uploaded.key, sha256=uploaded.sha256
    ) == (large)


async def test_a_tampered_inline_file_is_refused_and_nothing_is_kept(
    attachments: Attachments, tmp_path: Path
) -> None:
    media = await attachments.prepare(b"invoice 42 " * 100, filename="invoice.txt")
    assert media.blob is not None
    damaged = bytearray(media.blob)
    damaged[-3] ^= 0x01
    forged = msgspec.structs.replace(media, blob=bytes(damaged))

    with pytest.raises(AttachmentDigestMismatch):
        await attachments.download("m-forged", forged)

    assert attachments.saved("m-forged") is None
    assert [p.name for p in (tmp_path / "me" / "attachments").iterdir() if p.is_file()] == []


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "exactly one of blob_id and blob"),
        ({"blob_id": "abc", "blob": b"x"}, "exactly one of blob_id and blob"),
        ({"blob": b"xy"}, "the inline blob's length is not its size"),
    ],
)
def test_a_media_payload_names_its_file_exactly_once(
    fields: dict[str, object], problem: str
) -> None:
    with pytest.raises(InvalidPayload, match=problem):
        Media(
            kind=MediaKind.DOCUMENT,
            key=bytes(32),
            sha256=bytes(32),
            size=1,
            plain_size=0,
            mime_type="application/pdf",
            **fields,  # type: ignore[arg-type]
        )

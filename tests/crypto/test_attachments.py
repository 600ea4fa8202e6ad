"""Attachments sealed chunk by chunk: round trips, every kind of damage, bounded memory."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

from tresen.crypto.attachments import (
    CHUNK_BYTES,
    AttachmentCorrupt,
    AttachmentDigestMismatch,
    AttachmentTooLarge,
    blob_size,
    decrypt_bytes,
    decrypt_file,
    encrypt_bytes,
    encrypt_file,
)

_HEADER = 8
_SEALED = CHUNK_BYTES + 16

SIZES = [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * 1024 * 1024 + 17]


@pytest.mark.parametrize("size", SIZES)
def test_a_file_comes_back_as_it_was_sent(tmp_path: Path, size: int) -> None:
    plain = os.urandom(size)
    source, blob, out = tmp_path / "in.bin", tmp_path / "blob", tmp_path / "out.bin"
    source.write_bytes(plain)

    sealed = encrypt_file(source, blob)
    written = decrypt_file(blob, out, key=sealed.key, sha256=sealed.sha256)

    assert out.read_bytes() == plain
    assert written == sealed.plain_size == size
    assert blob.stat().st_size == sealed.size == blob_size(size)
    assert hashlib.sha256(blob.read_bytes()).digest() == sealed.sha256


@pytest.mark.parametrize("size", SIZES[:5])
def test_bytes_come_back_as_they_were_sent(size: int) -> None:
    plain = os.urandom(size)

    blob, sealed = encrypt_bytes(plain)

    assert decrypt_bytes(blob, key=sealed.key, sha256=sealed.sha256) == plain
    assert len(blob) == blob_size(size)


def test_every_attachment_gets_a_fresh_key_and_a_different_blob() -> None:
    first_blob, first = encrypt_bytes(b"same photo")
    second_blob, second = encrypt_bytes(b"same photo")

    assert first.key != second.key
    assert first_blob != second_blob
    assert b"same photo" not in first_blob


def _three_chunk_blob() -> tuple[bytes, bytes]:
    blob, sealed = encrypt_bytes(os.urandom(2 * CHUNK_BYTES + 100))
    return blob, sealed.key


def _open_trusting_digest(blob: bytes, key: bytes) -> bytes:
    # The digest would catch every change below first; the chunk tags must catch it alone too.
    return decrypt_bytes(blob, key=key, sha256=hashlib.sha256(blob).digest())


@pytest.mark.parametrize(
    "position", [0, 1, 7, 8, 100, _HEADER + _SEALED - 1, _HEADER + _SEALED, -17, -1]
)
def test_a_changed_byte_anywhere_is_refused(position: int) -> None:
    blob, key = _three_chunk_blob()
    damaged = bytearray(blob)
    damaged[position] ^= 0x01

    with pytest.raises(AttachmentDigestMismatch) as digest_error:
        decrypt_bytes(bytes(damaged), key=key, sha256=hashlib.sha256(blob).digest())
    with pytest.raises(AttachmentCorrupt) as tag_error:
        _open_trusting_digest(bytes(damaged), key)

    assert digest_error.value.code == "attachment_digest_mismatch"
    assert tag_error.value.code == "attachment_corrupt"


def _chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[_HEADER:]
    return blob[:_HEADER], [body[i : i + _SEALED] for i in range(0, len(body), _SEALED)]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda h, c: h + c[0] + c[1], id="final chunk dropped"),
        pytest.param(lambda h, c: h + c[0] + c[2], id="middle chunk dropped"),
        pytest.param(lambda h, c: h + c[1] + c[0] + c[2], id="chunks swapped"),
        pytest.param(lambda h, c: h + c[0] + c[0] + c[1] + c[2], id="chunk repeated"),
        pytest.param(lambda h, c: h + c[0] + c[1] + c[2][:-1], id="last byte cut"),
        pytest.param(lambda h, c: h + c[0] + c[1] + c[2][:10], id="cut inside the tag"),
        pytest.param(lambda h, c: h[:5], id="cut inside the header"),
        pytest.param(lambda h, c: h, id="header only"),
        pytest.param(lambda h, c: h + c[0] + c[1] + c[2] + b"\x00" * 16, id="bytes appended"),
        pytest.param(lambda h, c: b"\x02" + h[1:] + b"".join(c), id="unknown version"),
    ],
)
def test_reshaped_blobs_are_refused(damage: object) -> None:
    blob, key = _three_chunk_blob()
    header, chunks = _chunks(blob)
    assert len(chunks) == 3

    with pytest.raises(AttachmentCorrupt):
        _open_trusting_digest(damage(header, chunks), key)  # type: ignore[operator]


def test_a_blob_cut_at_a_chunk_boundary_is_refused() -> None:
    # Two full chunks: dropping the final one leaves a well-formed-looking first chunk.
    blob, sealed = encrypt_bytes(os.urandom(2 * CHUNK_BYTES))

    with pytest.raises(AttachmentCorrupt):
        _open_trusting_digest(blob[: _HEADER + _SEALED], sealed.key)


def test_the_wrong_key_is_refused() -> None:
    blob, sealed = encrypt_bytes(b"invoice 2026-0042")

    with pytest.raises(AttachmentCorrupt):
        decrypt_bytes(blob, key=os.urandom(32), sha256=sealed.sha256)
    with pytest.raises(AttachmentCorrupt):
        decrypt_bytes(blob, key=sealed.key[:16], sha256=sealed.sha256)


def test_a_refused_blob_leaves_no_file_behind(tmp_path: Path) -> None:
    source, blob, out = tmp_path / "in.bin", tmp_path / "blob", tmp_path / "out.bin"
    source.write_bytes(os.urandom(3 * CHUNK_BYTES))
    sealed = encrypt_file(source, blob)
    raw = bytearray(blob.read_bytes())
    raw[-1] ^= 0x80
    blob.write_bytes(bytes(raw))

    with pytest.raises(AttachmentDigestMismatch):
        decrypt_file(blob, out, key=sealed.key, sha256=sealed.sha256)
    with pytest.raises(AttachmentCorrupt):
        decrypt_file(blob, out, key=sealed.key, sha256=hashlib.sha256(raw).digest())

    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "in.bin"]


def test_a_file_over_the_limit_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    source, blob = tmp_path / "in.bin", tmp_path / "blob"
    source.write_bytes(bytes(1001))

    with pytest.raises(AttachmentTooLarge) as error:
        encrypt_file(source, blob, max_plain_size=1000)

    assert error.value.code == "attachment_too_large"
    assert not blob.exists()
    assert encrypt_file(source, blob, max_plain_size=1001).plain_size == 1001


def test_memory_stays_bounded_for_a_large_file(tmp_path: Path) -> None:
    size = 48 * 1024 * 1024
    source, blob, out = tmp_path / "in.bin", tmp_path / "blob", tmp_path / "out.bin"
    with source.open("wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 20))

    tracemalloc.start()
    try:
        sealed = encrypt_file(source, blob)
        decrypt_file(blob, out, key=sealed.key, sha256=sealed.sha256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert out.stat().st_size == size
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte file"

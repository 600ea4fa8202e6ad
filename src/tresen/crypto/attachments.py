"""Encrypted attachments: a file sealed with a fresh key, chunk by chunk (AES-256-GCM STREAM).

The relay stores the blob and learns nothing but its length; the key and the blob's SHA-256
travel inside the end-to-end ``media`` payload. Blob format, version 1::

    0x01 || 7-byte random nonce prefix || chunk_0 || chunk_1 || ...

Each chunk is AES-256-GCM(key, nonce = prefix || u32-BE index || u8 last-flag) over 65,536
bytes of plaintext (the final chunk 0 to 65,536 bytes), ciphertext then 16-byte tag. Because
the index and the last-flag are in the nonce, chunks cannot be reordered, dropped, repeated or
cut off undetected (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár, as in
age and Tink's streaming AEAD). An empty file is one empty final chunk.

Both directions stream from file to file, one chunk in memory at a time. Decryption checks the
blob's digest before it decrypts anything, writes to a temporary file beside the destination
and renames it into place only once every chunk has authenticated, so a damaged blob leaves
nothing behind.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tresen.crypto.olm import CryptoError

__all__ = [
    "CHUNK_BYTES",
    "FORMAT_VERSION",
    "KEY_BYTES",
    "AttachmentCorrupt",
    "AttachmentDigestMismatch",
    "AttachmentError",
    "AttachmentTooLarge",
    "EncryptedAttachment",
    "blob_size",
    "decrypt_bytes",
    "decrypt_file",
    "encrypt_bytes",
    "encrypt_file",
    "file_digest",
]

FORMAT_VERSION = 1
KEY_BYTES = 32
CHUNK_BYTES = 65_536
_TAG_BYTES = 16
_PREFIX_BYTES = 7
_HEADER_BYTES = 1 + _PREFIX_BYTES
_SEALED_CHUNK_BYTES = CHUNK_BYTES + _TAG_BYTES
_MAX_CHUNKS = 2**32
_DIGEST_READ_BYTES = 1 << 20


class AttachmentError(CryptoError):
    """An attachment that cannot be sealed or opened; ``code`` is stable for clients."""

    code: ClassVar[str] = "attachment_error"


class AttachmentDigestMismatch(AttachmentError):
    """The downloaded blob is not the one the sender described (its SHA-256 differs)."""

    code: ClassVar[str] = "attachment_digest_mismatch"


class AttachmentCorrupt(AttachmentError):
    """The blob has the right digest but does not decrypt: wrong key, damaged or reordered,
    dropped or truncated chunks, or an unknown format version."""

    code: ClassVar[str] = "attachment_corrupt"


class AttachmentTooLarge(AttachmentError):
    """The file exceeds the limit it is sent under."""

    code: ClassVar[str] = "attachment_too_large"


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedAttachment:
    """What the recipient needs to fetch and open a blob: the fields of the ``media`` payload
    that describe it."""

    key: bytes
    sha256: bytes
    size: int
    plain_size: int


def blob_size(plain_size: int) -> int:
    """The length of the blob that a file of ``plain_size`` bytes encrypts to."""
    if plain_size < 0:
        raise ValueError("a size is never negative")
    chunks = max(1, -(-plain_size // CHUNK_BYTES))
    return _HEADER_BYTES + plain_size + chunks * _TAG_BYTES


def _nonce(prefix: bytes, index: int, *, last: bool) -> bytes:
    if index >= _MAX_CHUNKS:
        raise AttachmentTooLarge(f"a blob holds at most {_MAX_CHUNKS} chunks")
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _read_exactly(source: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only at the end of ``source`` (a pipe may return less)."""
    parts: list[bytes] = []
    wanted = n
    while wanted:
        part = source.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def _with_last_flag(source: BinaryIO, size: int) -> Iterator[tuple[bytes, bool]]:
    """Chunks of ``size`` bytes, each with whether it is the last (one read of look-ahead)."""
    current = _read_exactly(source, size)
    while True:
        following = _read_exactly(source, size) if len(current) == size else b""
        last = not following
        yield current, last
        if last:
            return
        current = following


def _encrypt_stream(
    source: BinaryIO, sink: BinaryIO, *, max_plain_size: int | None
) -> tuple[bytes, bytes, int, int]:
    key = AESGCM.generate_key(bit_length=256)
    aead = AESGCM(key)
    prefix = os.urandom(_PREFIX_BYTES)
    digest = hashlib.sha256()
    header = bytes([FORMAT_VERSION]) + prefix
    sink.write(header)
    digest.update(header)
    size, plain_size = len(header), 0
    for index, (chunk, last) in enumerate(_with_last_flag(source, CHUNK_BYTES)):
        plain_size += len(chunk)
        if max_plain_size is not None and plain_size > max_plain_size:
            raise AttachmentTooLarge(f"the file exceeds the limit of {max_plain_size} bytes")
        sealed = aead.encrypt(_nonce(prefix, index, last=last), chunk, None)
        sink.write(sealed)
        digest.update(sealed)
        size += len(sealed)
    return key, digest.digest(), size, plain_size


def encrypt_file(
    source: Path, destination: Path, *, max_plain_size: int | None = None
) -> EncryptedAttachment:
    """Encrypt the file ``source`` into the blob ``destination`` with a fresh key.

    Raises :class:`AttachmentTooLarge` (before writing anything when the file's size is known
    to be over ``max_plain_size``, else as soon as it grows past it; ``destination`` is then
    removed).
    """
    if max_plain_size is not None and source.stat().st_size > max_plain_size:
        raise AttachmentTooLarge(
            f"{source.stat().st_size} bytes exceed the limit of {max_plain_size} bytes"
        )
    try:
        with source.open("rb") as reader, destination.open("wb") as writer:
            key, sha256, size, plain_size = _encrypt_stream(
                reader, writer, max_plain_size=max_plain_size
            )
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    return EncryptedAttachment(key=key, sha256=sha256, size=size, plain_size=plain_size)


def encrypt_bytes(data: bytes) -> tuple[bytes, EncryptedAttachment]:
    """The blob of ``data`` (a small file held in memory) and its description."""
    sink = io.BytesIO()
    key, sha256, size, plain_size = _encrypt_stream(io.BytesIO(data), sink, max_plain_size=None)
    return sink.getvalue(), EncryptedAttachment(
        key=key, sha256=sha256, size=size, plain_size=plain_size
    )


def file_digest(path: Path) -> bytes:
    """SHA-256 of the file at ``path``, read in bounded pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while block := reader.read(_DIGEST_READ_BYTES):
            digest.update(block)
    return digest.digest()


def _check_digest(actual: bytes, expected: bytes) -> None:
    if not hmac.compare_digest(actual, expected):
        raise AttachmentDigestMismatch("the attachment's digest does not match the sender's")


def _check_key(key: bytes) -> AESGCM:
    if len(key) != KEY_BYTES:
        raise AttachmentCorrupt(f"an attachment key has {KEY_BYTES} bytes, not {len(key)}")
    return AESGCM(key)


def _decrypt_stream(source: BinaryIO, sink: BinaryIO, key: bytes) -> int:
    aead = _check_key(key)
    header = _read_exactly(source, _HEADER_BYTES)
    if len(header) < _HEADER_BYTES:
        raise AttachmentCorrupt("the blob is shorter than its header")
    if header[0] != FORMAT_VERSION:
        raise AttachmentCorrupt(f"unknown attachment format version {header[0]}")
    prefix = header[1:]
    written = 0
    for index, (sealed, last) in enumerate(_with_last_flag(source, _SEALED_CHUNK_BYTES)):
        if len(sealed) < _TAG_BYTES:
            raise AttachmentCorrupt("the blob ends inside a chunk's tag")
        try:
            chunk = aead.decrypt(_nonce(prefix, index, last=last), sealed, None)
        except InvalidTag:
            raise AttachmentCorrupt(f"chunk {index} of the attachment does not decrypt") from None
        sink.write(chunk)
        written += len(chunk)
    return written


def decrypt_file(blob: Path, destination: Path, *, key: bytes, sha256: bytes) -> int:
    """Check the digest of ``blob``, decrypt it into ``destination``; the plaintext size.

    ``destination`` appears only when the whole blob authenticated: a digest mismatch raises
    :class:`AttachmentDigestMismatch` before anything is decrypted, a damaged chunk
    :class:`AttachmentCorrupt`, and in both cases nothing is left at ``destination``.
    """
    _check_digest(file_digest(blob), sha256)
    fd, temporary = tempfile.mkstemp(dir=destination.parent, prefix=".partial-", suffix=".tmp")
    try:
        with blob.open("rb") as reader, os.fdopen(fd, "wb") as writer:
            written = _decrypt_stream(reader, writer, key)
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return written


def decrypt_bytes(blob: bytes, *, key: bytes, sha256: bytes) -> bytes:
    """The plaintext of a blob held in memory, checked as :func:`decrypt_file` checks it."""
    _check_digest(hashlib.sha256(blob).digest(), sha256)
    sink = io.BytesIO()
    _decrypt_stream(io.BytesIO(blob), sink, key)
    return sink.getvalue()

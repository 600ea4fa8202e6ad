"""Which files each Cloud API media type takes, and how large: rules as pure functions.

The MIME types and sizes are Meta's (image 5 MB, audio and video 16 MB, documents 100 MB,
stickers 100 KB or 500 KB animated); a file must also fit the relay's blob limit once
encrypted, so the smaller of the two counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from tresen.client.attachments import AttachmentLimits
from tresen.crypto.attachments import blob_size
from tresen.wire.e2e import MediaKind

__all__ = [
    "DOCUMENT_TYPES",
    "KIND_TYPES",
    "MB",
    "KindLimits",
    "is_animated_webp",
    "kind_of_mime",
    "largest_plain",
    "plain_mime",
]

MB = 1024 * 1024
KB = 1024

DOCUMENT_TYPES = frozenset(
    {
        "text/plain",
        "application/pdf",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    }
)

KIND_TYPES: dict[MediaKind, frozenset[str]] = {
    MediaKind.IMAGE: frozenset({"image/jpeg", "image/png"}),
    MediaKind.STICKER: frozenset({"image/webp"}),
    MediaKind.AUDIO: frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}),
    MediaKind.VIDEO: frozenset({"video/mp4", "video/3gpp"}),
    MediaKind.DOCUMENT: DOCUMENT_TYPES,
}

_META_LIMITS: dict[MediaKind, int] = {
    MediaKind.IMAGE: 5 * MB,
    MediaKind.STICKER: 500 * KB,
    MediaKind.AUDIO: 16 * MB,
    MediaKind.VIDEO: 16 * MB,
    MediaKind.DOCUMENT: 100 * MB,
}
STATIC_STICKER_BYTES = 100 * KB


def plain_mime(value: str) -> str:
    """``value`` without parameters, lower case (``audio/ogg; codecs=opus`` → ``audio/ogg``)."""
    return value.split(";", 1)[0].strip().lower()


def kind_of_mime(mime_type: str) -> MediaKind | None:
    """The media type a file of ``mime_type`` is (``None``: not one Meta accepts)."""
    plain = plain_mime(mime_type)
    for kind, types in KIND_TYPES.items():
        if plain in types:
            return kind
    return None


def largest_plain(blob_limit: int) -> int:
    """The largest file that encrypts to at most ``blob_limit`` bytes."""
    low, high = 0, blob_limit
    while low < high:
        middle = (low + high + 1) // 2
        if blob_size(middle) <= blob_limit:
            low = middle
        else:
            high = middle - 1
    return low


def is_animated_webp(head: bytes) -> bool:
    """Whether the first bytes of a WebP file announce an animation (VP8X, flag bit 1)."""
    return (
        len(head) > 20 and head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and bool(head[20] & 2)
    )


@dataclass(frozen=True, slots=True)
class KindLimits:
    """Largest file per media type: Meta's, or what the relay's blob limits allow."""

    relay: AttachmentLimits

    def limit(self, kind: MediaKind, *, animated: bool = True) -> int:
        meta = _META_LIMITS[kind]
        if kind is MediaKind.STICKER and not animated:
            meta = STATIC_STICKER_BYTES
        return min(meta, largest_plain(self.relay.blob_limit(kind)))

    def largest(self) -> int:
        return max(self.limit(kind) for kind in MediaKind)

    def accepts(self, kind: MediaKind, mime_type: str) -> bool:
        """Whether a message of ``kind`` may carry a file of ``mime_type``: its own types,
        and for a document any type Meta accepts (a photo may go as a document)."""
        plain = plain_mime(mime_type)
        if kind is MediaKind.DOCUMENT:
            return kind_of_mime(plain) is not None
        return plain in KIND_TYPES[kind]

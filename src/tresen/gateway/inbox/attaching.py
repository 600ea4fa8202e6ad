"""Files an agent attaches in the composer: which kind of message a file becomes, and why one
is refused, by the Cloud API's own rules (:mod:`tresen.gateway.media.kinds`,
``MediaLibrary.check_file``), so a file the inbox accepts is one the API would send too.

A refusal carries a stable ``code`` the agent sees with the sentence (and a test can match).
"""

from __future__ import annotations

import mimetypes
from typing import Any

from tresen.gateway.inbox.i18n import N_, Refused
from tresen.gateway.media.kinds import (
    KIND_TYPES,
    MB,
    KindLimits,
    is_animated_webp,
    kind_of_mime,
    plain_mime,
)
from tresen.wire.e2e import MediaKind

__all__ = [
    "ACCEPTED_TYPES",
    "CAPTIONED",
    "MAX_CAPTION",
    "FileRefused",
    "file_kind",
    "human_size",
    "mime_type_of",
]

MAX_CAPTION = 1024
CAPTIONED = frozenset({MediaKind.IMAGE, MediaKind.VIDEO, MediaKind.DOCUMENT})
"""The kinds that carry a caption (as in the Cloud API; audio and stickers do not)."""
ACCEPTED_TYPES = ",".join(sorted(t for types in KIND_TYPES.values() for t in types))
"""The file picker's ``accept``: every type some kind of message takes."""
_GENERIC = {"", "application/octet-stream", "binary/octet-stream"}
# What an image file starts with, so that a page of HTML named photo.png is not sent as one.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
}

TOO_LARGE = {
    MediaKind.IMAGE: N_("a picture may be at most {limit}; this one is {size}"),
    MediaKind.STICKER: N_("a sticker may be at most {limit}; this one is {size}"),
    MediaKind.AUDIO: N_("an audio file may be at most {limit}; this one is {size}"),
    MediaKind.VIDEO: N_("a video may be at most {limit}; this one is {size}"),
    MediaKind.DOCUMENT: N_("a document may be at most {limit}; this one is {size}"),
}


class FileRefused(Refused):
    """A file the composer does not send, with a stable ``code`` shown beside the sentence."""

    def __init__(self, text: str, *, code: str, **values: Any) -> None:
        super().__init__(text, **values)
        self.code = code

    def sentence(self, gettext_: Any) -> str:
        return f"{super().sentence(gettext_)[:-1]} ({self.code})."


def human_size(size: int) -> str:
    """``size`` bytes for people: ``812 B``, ``54 KB``, ``1.4 MB``."""
    if size < 1024:
        return f"{size} B"
    if size < MB:
        return f"{round(size / 1024)} KB"
    megabytes = size / MB
    shown = f"{megabytes:.1f}".removesuffix(".0") if megabytes < 10 else str(round(megabytes))
    return f"{shown} MB"


def mime_type_of(declared: str | None, filename: str | None) -> str:
    """The file's MIME type: what the browser said, else what its name suggests."""
    plain = plain_mime(declared or "")
    if plain in _GENERIC:
        plain = plain_mime(mimetypes.guess_type(filename or "", strict=False)[0] or "")
    return plain[:255]


def file_kind(
    limits: KindLimits, mime_type: str, size: int, head: bytes, caption: str
) -> MediaKind:
    """The kind of message a file of ``mime_type`` and ``size`` bytes (starting with
    ``head``) is sent as, with ``caption``; :class:`FileRefused` when it cannot be sent."""
    kind = kind_of_mime(mime_type)
    if kind is None:
        raise FileRefused(
            N_("files of type {type} cannot be sent (pictures, documents, audio and video can)"),
            code="file_type_unsupported",
            type=mime_type[:60] or "?",
        )
    if size == 0:
        raise FileRefused(N_("the file is empty"), code="file_empty")
    signatures = _SIGNATURES.get(mime_type)
    webp = mime_type == "image/webp" and not (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
    if webp or (signatures is not None and not head.startswith(signatures)):
        raise FileRefused(
            N_("the file is not the {type} its name says it is"),
            code="file_type_mismatch",
            type=mime_type,
        )
    limit = limits.limit(kind, animated=is_animated_webp(head))
    if size > limit:
        raise FileRefused(
            TOO_LARGE[kind], code="file_too_large", limit=human_size(limit), size=human_size(size)
        )
    if caption and kind not in CAPTIONED:
        raise FileRefused(
            N_("audio and stickers are sent without a caption; send the text on its own"),
            code="caption_not_allowed",
        )
    if len(caption) > MAX_CAPTION:
        raise FileRefused(
            N_("a caption is at most {n} characters"), code="caption_too_long", n=MAX_CAPTION
        )
    return kind

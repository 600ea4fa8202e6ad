"""What an image attachment shows before it is downloaded: its size and a small JPEG.

The thumbnail travels inside the end-to-end message (at most 12 KiB), so it is encrypted with
the message and the relay never sees it. Files Pillow cannot decode are sent without one.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from tresen.wire.e2e import MAX_THUMBNAIL_BYTES

__all__ = ["THUMBNAIL_EDGE", "ImageFacts", "image_facts"]

THUMBNAIL_EDGE = 160
"""The longer edge of a thumbnail, in pixels (smaller when the JPEG would not fit)."""

_MAX_PIXELS = 80_000_000
"""Larger images are not decoded here (a decompression bomb must not take the client down)."""

_ORIENTATION = 0x0112
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
"""EXIF orientations shown turned by 90 degrees: the picture's width is its stored height."""

_MIME_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageFacts:
    width: int
    height: int
    mime_type: str | None
    thumbnail: bytes | None


def image_facts(source: Path | bytes) -> ImageFacts | None:
    """Dimensions (as shown, after EXIF rotation) and a thumbnail of the image ``source``;
    ``None`` when it is not an image Pillow can decode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            with opened as image:
                width, height = image.size
                if width * height > _MAX_PIXELS:
                    return None
                mime_type = _MIME_TYPES.get(image.format or "")
                if image.getexif().get(_ORIENTATION) in _QUARTER_TURNS:
                    width, height = height, width
                # A JPEG decodes at a fraction of its size: a 12-megapixel photo need not
                # take 36 MB to make a 160-pixel thumbnail.
                image.draft("RGB", (THUMBNAIL_EDGE * 2, THUMBNAIL_EDGE * 2))
                thumbnail = _thumbnail(ImageOps.exif_transpose(image))
    except (
        OSError,
        ValueError,
        SyntaxError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ):
        return None
    if not (1 <= width <= 65_535 and 1 <= height <= 65_535):
        return None
    return ImageFacts(width=width, height=height, mime_type=mime_type, thumbnail=thumbnail)


def _thumbnail(image: Image.Image) -> bytes | None:
    small = image.convert("RGB")
    edge = THUMBNAIL_EDGE
    while edge >= 16:
        small.thumbnail((edge, edge))
        for quality in (70, 50, 30):
            out = io.BytesIO()
            small.save(out, format="JPEG", quality=quality, optimize=True)
            if out.tell() <= MAX_THUMBNAIL_BYTES:
                return out.getvalue()
        edge //= 2
    return None

"""What an image attachment shows before it is downloaded: its size as shown and a small JPEG."""

from __future__ import annotations

import io

from PIL import Image

from tresen.client.thumbnails import THUMBNAIL_EDGE, image_facts
from tresen.wire.e2e import MAX_THUMBNAIL_BYTES


def jpeg(width: int, height: int, *, orientation: int | None = None) -> bytes:
    picture = Image.effect_noise((width // 10, height // 10), 50).convert("RGB")
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    out = io.BytesIO()
    picture.resize((width, height)).save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def test_a_photo_taken_upright_has_the_size_it_is_shown_at() -> None:
    facts = image_facts(jpeg(4000, 3000, orientation=6))

    assert facts is not None
    assert (facts.width, facts.height, facts.mime_type) == (3000, 4000, "image/jpeg")
    assert facts.thumbnail is not None
    with Image.open(io.BytesIO(facts.thumbnail)) as thumbnail:
        assert thumbnail.size == (THUMBNAIL_EDGE * 3 // 4, THUMBNAIL_EDGE)


def test_a_thumbnail_always_fits_the_message() -> None:
    noisy = io.BytesIO()
    Image.effect_noise((2000, 2000), 128).convert("RGB").save(noisy, format="PNG")

    facts = image_facts(noisy.getvalue())

    assert facts is not None
    assert facts.thumbnail is not None
    assert len(facts.thumbnail) <= MAX_THUMBNAIL_BYTES


def test_what_is_not_an_image_has_no_facts() -> None:
    assert image_facts(b"%PDF-1.4 not a picture") is None
    assert image_facts(jpeg(100, 100)[:200]) is None

"""gzip copies of the web app's files: only when the browser takes gzip, renewed with the
file, and kept within their memory bound."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from tresen.relay.webapp.service import WebApp, accepts_gzip


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip, deflate, br, zstd", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("*", True),
        ("", False),
        ("identity", False),
        ("br", False),
        ("gzip;q=0", False),
        ("gzip;q=0.0, br", False),
        ("gzip;q=nonsense", False),
    ],
)
def test_accept_encoding(header: str, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted


async def test_a_copy_follows_its_file_and_the_copies_stay_within_their_bound(
    tmp_path: Path,
) -> None:
    script = tmp_path / "app.js"
    script.write_text("console.log('hello');\n" * 500)
    webapp = WebApp(tmp_path, max_gzip_bytes=150)
    first = await webapp.gzipped(script, "app.js", script.stat())
    assert first is not None
    assert gzip.decompress(first) == script.read_bytes()
    assert await webapp.gzipped(script, "app.js", script.stat()) is first

    script.write_text("console.log('a new build');\n" * 500)
    os.utime(script, ns=(1, 2))  # whatever the clock's resolution, the file changed
    second = await webapp.gzipped(script, "app.js", script.stat())
    assert second is not None
    assert gzip.decompress(second) == script.read_bytes()
    # The bound (150 bytes) holds one copy: the old one is gone.
    assert webapp.kept_bytes == len(second)


async def test_files_not_worth_compressing_are_left_as_they_are(tmp_path: Path) -> None:
    picture = tmp_path / "photo.png"
    picture.write_bytes(os.urandom(4096))
    small = tmp_path / "icon.svg"
    small.write_text("<svg/>")
    noise = tmp_path / "noise.js"
    noise.write_bytes(os.urandom(4096))
    webapp = WebApp(tmp_path)
    assert await webapp.gzipped(picture, "photo.png", picture.stat()) is None
    assert await webapp.gzipped(small, "icon.svg", small.stat()) is None
    assert await webapp.gzipped(noise, "noise.js", noise.stat()) is None

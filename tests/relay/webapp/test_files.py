"""Which file answers a path under /app/: names inside the build only, routes get the page."""

from __future__ import annotations

from pathlib import Path

import pytest

from tresen.relay.webapp.files import Lookup, cache_control, content_type, find


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html>")
    (dist / "assets" / "index-abc.js").write_text("")
    (dist / ".env").write_text("SECRET=1")
    (tmp_path / "outside.txt").write_text("outside")
    (dist / "assets" / "link.js").symlink_to(tmp_path / "outside.txt")
    (dist / "assets" / "dir.js").mkdir()
    return dist


def test_files_of_the_build_and_routes_of_the_app(dist: Path) -> None:
    found = find(dist, "assets/index-abc.js")
    assert (found.lookup, found.name) == (Lookup.FILE, "assets/index-abc.js")
    for route in ("", "/", "chats", "chats/4930555010000/", "settings/devices"):
        page = find(dist, route)
        assert (page.lookup, page.name) == (Lookup.PAGE, "index.html"), route


@pytest.mark.parametrize(
    "requested",
    [
        "../outside.txt",
        "assets/../../outside.txt",
        "/etc/passwd",
        "//etc/passwd",
        "assets//index-abc.js",
        ".env",
        "./index.html",
        "assets\\..\\..\\outside.txt",
        "index.html\x00.js",
        "assets/link.js",
        "assets/dir.js",
        "assets/missing",
        "missing.js",
    ],
)
def test_nothing_outside_the_build_and_no_missing_file_is_found(dist: Path, requested: str) -> None:
    assert find(dist, requested).lookup is Lookup.MISSING


def test_types_and_cache_lifetimes() -> None:
    assert content_type("assets/olm-x.wasm") == "application/wasm"
    assert content_type("manifest.webmanifest") == "application/manifest+json"
    assert content_type("assets/INDEX.JS") == "text/javascript; charset=utf-8"
    assert content_type("LICENSE") == "application/octet-stream"
    assert cache_control("assets/index-abc.js") == "public, max-age=31536000, immutable"
    assert cache_control("index.html") == cache_control("manifest.webmanifest") == "no-cache"

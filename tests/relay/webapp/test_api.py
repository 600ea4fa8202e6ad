"""The relay serves the customer web app at /app/: its files with the right types and cache
lifetimes, index.html for the app's routes, strict security headers on every answer, nothing
outside the build, and a 503 that says what to do when the app is not built."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from support import serve_asgi

from tresen.core.http import tls_context
from tresen.core.settings import Settings
from tresen.relay.app import build_app

CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
    "manifest-src 'self'; worker-src 'self'; font-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
INDEX = b'<!doctype html><title>Tresen</title><div id="root"></div>'
SCRIPT = b"document.documentElement.dataset.ready = '1';\n"
STYLE = b"main { color: #0b6e4f; }\n"
WASM = b"\x00asm\x01\x00\x00\x00" + bytes(range(256)) * 64
MANIFEST = b'{"name": "Tresen", "start_url": "/app/"}'
ICON = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
SECRET = b"the operator's secret, outside the build"


def make_build(dist: Path) -> None:
    """A build as `make web` leaves it: the page, hashed assets, the manifest and the icon."""
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_bytes(INDEX)
    (dist / "assets" / "index-D0yGnOGK.js").write_bytes(SCRIPT)
    (dist / "assets" / "index-Bq3x9k2L.css").write_bytes(STYLE)
    (dist / "assets" / "olm-CLvJQKwB.wasm").write_bytes(WASM)
    (dist / "manifest.webmanifest").write_bytes(MANIFEST)
    (dist / "icon.svg").write_bytes(ICON)
    (dist.parent / "secret.txt").write_bytes(SECRET)
    (dist / "assets" / "escape.js").symlink_to(dist.parent / "secret.txt")


@dataclass
class Served:
    url: str
    http: httpx.AsyncClient
    dist: Path


async def serve(tmp_path: Path, dist: Path) -> AsyncIterator[Served]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}",
        webapp_dir=dist,
    )
    async with (
        serve_asgi(build_app(settings)) as url,
        httpx.AsyncClient(verify=tls_context(), base_url=url, timeout=10) as http,
    ):
        yield Served(url, http, dist)


@pytest.fixture
async def built(tmp_path: Path) -> AsyncIterator[Served]:
    """A relay serving a build of the web app."""
    dist = tmp_path / "build" / "dist"
    make_build(dist)
    async for served in serve(tmp_path, dist):
        yield served


@pytest.fixture
async def not_built(tmp_path: Path) -> AsyncIterator[Served]:
    """A relay whose web app was never built: its folder is missing."""
    async for served in serve(tmp_path, tmp_path / "no-build"):
        yield served


async def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (an HTTP client would remove ``..`` segments)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    status_line = answer.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), answer


def assert_secured(response: httpx.Response) -> None:
    headers = response.headers
    assert headers["content-security-policy"] == CSP
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert "geolocation=()" in headers["permissions-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]


async def test_the_page_answers_at_app_and_for_every_route_of_the_app(built: Served) -> None:
    page = await built.http.get("/app/")
    assert page.status_code == 200
    assert page.content == INDEX
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    # Deep links (a chat, a business's profile) load the app, which then shows the route.
    for route in ("/app/chats", "/app/chats/4930555010000", "/app/business/e4555c571bd1/"):
        deep = await built.http.get(route)
        assert (deep.status_code, deep.content) == (200, INDEX), route
        assert deep.headers["cache-control"] == "no-cache"
    redirect = await built.http.get("/app")
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "/app/"
    assert (await built.http.get("/app?from=sms")).headers["location"] == "/app/?from=sms"
    head = await built.http.head("/app/")
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == len(INDEX)


async def test_files_come_with_their_types_and_hashed_assets_are_cached_for_a_year(
    built: Served,
) -> None:
    year = "public, max-age=31536000, immutable"
    expected = {
        "/app/assets/index-D0yGnOGK.js": ("text/javascript; charset=utf-8", year, SCRIPT),
        "/app/assets/index-Bq3x9k2L.css": ("text/css; charset=utf-8", year, STYLE),
        "/app/assets/olm-CLvJQKwB.wasm": ("application/wasm", year, WASM),
        "/app/manifest.webmanifest": ("application/manifest+json", "no-cache", MANIFEST),
        "/app/icon.svg": ("image/svg+xml", "no-cache", ICON),
        "/app/index.html": ("text/html; charset=utf-8", "no-cache", INDEX),
    }
    for path, (content_type, cache, body) in expected.items():
        r = await built.http.get(path)
        assert r.status_code == 200, path
        assert (r.headers["content-type"], r.headers["cache-control"]) == (content_type, cache)
        assert r.content == body, path


async def test_files_are_sent_gzipped_to_browsers_that_take_it(built: Served) -> None:
    wasm = "/app/assets/olm-CLvJQKwB.wasm"
    packed = await built.http.get(wasm, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) < len(WASM) / 4
    assert packed.content == WASM  # as the browser unpacks it
    assert packed.headers["vary"] == "Accept-Encoding"
    assert packed.headers["content-type"] == "application/wasm"
    plain = await built.http.get(wasm, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == WASM
    assert plain.headers["vary"] == "Accept-Encoding"
    refused = await built.http.get(wasm, headers={"Accept-Encoding": "gzip;q=0, br"})
    assert "content-encoding" not in refused.headers
    # Each representation has its own validator.
    assert packed.headers["etag"] != plain.headers["etag"]
    again = await built.http.get(
        wasm, headers={"Accept-Encoding": "gzip", "If-None-Match": packed.headers["etag"]}
    )
    assert again.status_code == 304
    # A file smaller than a request's headers is sent as it is.
    icon = await built.http.get("/app/icon.svg", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in icon.headers


async def test_an_unchanged_file_is_not_sent_again(built: Served) -> None:
    first = await built.http.get("/app/")
    etag = first.headers["etag"]
    again = await built.http.get("/app/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    # A new build (make web while the relay runs) is sent at once.
    (built.dist / "index.html").write_bytes(INDEX + b"<!-- new build -->")
    changed = await built.http.get("/app/", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.content.endswith(b"<!-- new build -->")


async def test_a_missing_file_is_not_found_rather_than_answered_with_the_page(
    built: Served,
) -> None:
    for path in ("/app/assets/index-OLDHASH1.js", "/app/assets/gone", "/app/sw.js"):
        r = await built.http.get(path)
        assert r.status_code == 404, path
        assert r.content != INDEX
        assert_secured(r)


async def test_every_answer_under_app_carries_the_security_headers(built: Served) -> None:
    answers = [
        await built.http.get("/app/"),
        await built.http.get("/app/chats/1"),
        await built.http.get("/app/assets/olm-CLvJQKwB.wasm"),
        await built.http.get("/app"),
        await built.http.get("/app/assets/gone.js"),
        await built.http.post("/app/", content=b"x"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 308, 404, 405]
    for answer in answers:
        assert_secured(answer)
    # The API keeps its own headers: the app's policy is for the app's pages.
    assert "content-security-policy" not in (await built.http.get("/v1/health")).headers


@pytest.mark.parametrize(
    "target",
    [
        "/app/../secret.txt",
        "/app/../../build/secret.txt",
        "/app/assets/../../secret.txt",
        "/app/%2e%2e/secret.txt",
        "/app/%2E%2E%2Fsecret.txt",
        "/app/assets/%2e%2e/%2e%2e/secret.txt",
        "/app/..%5csecret.txt",
        "/app//etc/passwd",
        "/app/%2fetc%2fpasswd",
        "/app/%2Fetc/hostname",
        "/app/assets/escape.js",
        "/app/.%2e/secret.txt",
        "/app/%00/secret.txt",
    ],
)
async def test_no_path_reaches_a_file_outside_the_build(built: Served, target: str) -> None:
    status, answer = await raw_get(built.url, target)
    assert status in (400, 404), answer[:200]
    assert SECRET not in answer
    assert b"root:" not in answer


async def test_a_file_of_the_build_is_reached_by_the_same_raw_request(built: Served) -> None:
    # The refusals above are the paths', not the way they were sent.
    status, answer = await raw_get(built.url, "/app/assets/%69ndex-D0yGnOGK.js")
    assert status == 200
    assert answer.endswith(SCRIPT)


async def test_without_a_build_the_app_says_how_to_build_it(not_built: Served) -> None:
    page = await not_built.http.get("/app/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert "the web app is not built: run make web" in page.text
    assert_secured(page)

    for path in ("/app/", "/app/assets/index-D0yGnOGK.js", "/app/chats/1"):
        r = await not_built.http.get(path)
        assert r.status_code == 503, path
        assert r.json()["error"]["message"] == "the web app is not built: run make web"
        assert_secured(r)
    # The API itself is unaffected.
    assert (await not_built.http.get("/v1/health")).status_code == 200


async def test_the_app_is_not_part_of_the_api_document(built: Served) -> None:
    document = (await built.http.get("/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/app")]

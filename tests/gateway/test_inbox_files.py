"""Files in the inbox: a customer's pictures and documents shown in the thread and served only
to the business's signed-in agents, never as active content; files an agent attaches reaching
the customer, who decrypts them; and every refusal with its stable code, in both languages."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from gateway_support import RunningGateway, customer, next_of, serve_gateway
from inbox_browser import FAST, PASSWORD, Browser, notice, thread_of
from media_support import pdf, png
from PIL import Image, ImageDraw
from support import Backend, MakeRelay, RunningRelay

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.core.clock import ManualClock, SystemClock
from tresen.gateway.database import open_database
from tresen.gateway.ids import encode_wamid
from tresen.gateway.inbox.agents import Agents, Role
from tresen.gateway.inbox.attaching import FileRefused, file_kind, human_size, mime_type_of
from tresen.gateway.inbox.files import Previews, content_disposition, present
from tresen.gateway.inbox.render import Attached
from tresen.gateway.media.kinds import MB
from tresen.gateway.media.store import MediaRecord
from tresen.wire.e2e import Media, MediaKind

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def make_agent(gw: RunningGateway, username: str = "cem", language: str = "en") -> None:
    db = await open_database(gw.settings)
    try:
        agents = Agents(db, SystemClock(), hasher=FAST)
        agent = await agents.create(username, username.title(), Role.AGENT, PASSWORD)
        if language != "en":
            await agents.set_language(agent.id, language)
    finally:
        await db.dispose()


@pytest.fixture
async def browser(gw: RunningGateway) -> AsyncIterator[Browser]:
    await make_agent(gw)
    made = Browser(gw.url)
    await made.sign_in("cem")
    yield made
    await made.close()


async def attach(
    browser: Browser,
    contact: str,
    data: bytes,
    filename: str,
    mime_type: str,
    caption: str = "",
    csrf: str | None = None,
) -> httpx.Response:
    token = csrf if csrf is not None else await browser.csrf(f"/inbox/c/{contact}")
    return await browser.request(
        "POST",
        f"/inbox/c/{contact}/attach",
        data={"csrf": token, "caption": caption},
        files={"file": (filename, data, mime_type)},
    )


async def declared_only(browser: Browser, path: str, length: int) -> httpx.Response:
    """The answer to a POST that declares ``length`` bytes and sends none of them (what a
    browser uploading a file far too large starts with)."""
    url = httpx.URL(str(browser.http.base_url))
    reader, writer = await asyncio.open_connection(url.host, url.port)
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {url.host}\r\nCookie: {cookie}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {length}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    status = int(head.split(b" ", 2)[1])
    headers = [
        tuple(line.decode().split(": ", 1)) for line in head.split(b"\r\n")[1:] if b": " in line
    ]
    return httpx.Response(status, headers=headers)


def file_urls(page: str) -> list[str]:
    return re.findall(r"(/inbox/c/[0-9a-f]+/file/wamid\.[A-Za-z0-9_-]{22})", page)


# --- showing and serving ---------------------------------------------------------------------


@sqlite_only
async def test_a_customers_picture_and_document_show_in_the_thread_for_agents_only(
    relay: RunningRelay, gw: RunningGateway, browser: Browser, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    bob = await customer(relay, tmp_path / "bob")
    photo = png(800, 600)
    scan = pdf("claim 77")
    try:
        sent_photo = await alice.send_file(
            gw.gateway.phone, photo, filename="parcel.png", caption="It arrived broken"
        )
        await alice.send_file(gw.gateway.phone, scan, filename="Schaden „Nr. 77“.pdf")
        bobs = await bob.send_file(gw.gateway.phone, png(20, 20), filename="bob.png")
        page = await thread_of(browser, alice.account_id, "Nr. 77")
        base = f"/inbox/c/{alice.account_id}/file/{encode_wamid(sent_photo.message_id)}"

        # The picture: a small version inline that opens the full one; its caption beneath.
        assert f'href="{base}" target="_blank"' in page
        assert f'<img src="{base}/preview" alt="Picture parcel.png"' in page
        assert "It arrived broken" in page
        # The document: a card with its name, type and size that downloads it.
        assert "Schaden „Nr. 77“.pdf" in page
        assert f"PDF · {len(scan)} B" in page
        assert 'class="file-card"' in page

        small = await browser.get(f"{base}/preview")
        assert small.status_code == 200
        assert small.headers["content-type"] == "image/jpeg"
        assert small.headers["x-content-type-options"] == "nosniff"
        shrunk = Image.open(io.BytesIO(small.content))
        assert max(shrunk.size) == 480
        assert len(small.content) < len(photo)

        full = await browser.get(base)
        assert full.status_code == 200
        assert full.content == photo
        assert full.headers["content-type"] == "image/png"
        assert full.headers["content-disposition"].startswith('inline; filename="parcel.png"')
        assert full.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in full.headers["content-security-policy"]

        (document_url,) = [u for u in file_urls(page) if u != base]
        document = await browser.get(document_url + "?download=1")
        assert document.content == scan
        assert document.headers["content-type"] == "application/pdf"
        disposition = document.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="Schaden _Nr. 77_.pdf"')
        assert unquote(disposition.split("filename*=UTF-8''")[1]) == "Schaden „Nr. 77“.pdf"
        plain = await browser.get(document_url)
        assert plain.headers["content-disposition"].startswith("attachment;")

        # The page's policy lets pictures and players load from the inbox only.
        policy = (await browser.get(f"/inbox/c/{alice.account_id}")).headers[
            "content-security-policy"
        ]
        assert "img-src 'self'" in policy
        assert "media-src 'self'" in policy

        # Signed out: no bytes. Nor for a message of another conversation under this one.
        stranger = Browser(gw.url)
        try:
            refused = await stranger.get(base)
            assert refused.status_code == 403
            assert photo not in refused.content
            assert (await stranger.get(f"{base}/preview")).status_code == 403
        finally:
            await stranger.close()
        await thread_of(browser, bob.account_id, "bob.png")
        elsewhere = f"/inbox/c/{alice.account_id}/file/{encode_wamid(bobs.message_id)}"
        assert (await browser.get(elsewhere)).status_code == 404
        text_message = await alice.send_text(gw.gateway.phone, "Hallo?")
        await thread_of(browser, alice.account_id, "Hallo?")
        not_a_file = f"/inbox/c/{alice.account_id}/file/{encode_wamid(text_message.message_id)}"
        assert (await browser.get(not_a_file)).status_code == 404
        nonsense = await browser.get(f"/inbox/c/{alice.account_id}/file/nonsense")
        assert nonsense.status_code in (400, 404)

        # Gone from the business's store: a clear note instead of a broken picture.
        media_id = (await gw.gateway.store.message(encode_wamid(sent_photo.message_id))).content[
            "id"
        ]
        assert await gw.gateway.media.delete(media_id)
        gone = await browser.get(f"/inbox/c/{alice.account_id}")
        assert "This file is no longer kept here" in gone.text
        assert f"{base}/preview" not in gone.text
        assert (await browser.get(base)).status_code == 404
    finally:
        await alice.close()
        await bob.close()


def webp_sticker() -> bytes:
    out = io.BytesIO()
    sticker = Image.new("RGBA", (96, 96), (0, 0, 0, 0))
    ImageDraw.Draw(sticker).ellipse((8, 8, 88, 88), fill=(240, 180, 20, 255))
    sticker.save(out, format="WEBP", lossless=True)
    return out.getvalue()


@sqlite_only
async def test_voice_notes_and_videos_play_in_the_thread_and_stickers_show_small(
    relay: RunningRelay, gw: RunningGateway, browser: Browser, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    voice = b"OggS" + bytes(300)
    clip = bytes(8) + b"ftypisom" + bytes(200)
    try:
        said = await alice.send_file(gw.gateway.phone, voice, filename="note.ogg", voice=True)
        shown = await alice.send_file(
            gw.gateway.phone, clip, filename="dent.mp4", caption="Hier das Video"
        )
        stuck = await alice.send_file(
            gw.gateway.phone,
            webp_sticker(),
            filename="s.webp",
            mime_type="image/webp",
            kind=MediaKind.STICKER,
        )
        page = await thread_of(browser, alice.account_id, "Hier das Video")
        page = await thread_of(browser, alice.account_id, 'class="sticker"')
        base = f"/inbox/c/{alice.account_id}/file/"
        note_url = base + encode_wamid(said.message_id)
        assert f'<audio class="player" controls preload="metadata" src="{note_url}">' in page
        assert "Voice message" in page
        video_url = base + encode_wamid(shown.message_id)
        assert f'<video class="player" controls preload="metadata" src="{video_url}">' in page
        sticker_url = base + encode_wamid(stuck.message_id)
        assert f'<img class="sticker" src="{sticker_url}/preview"' in page

        played = await browser.get(note_url)
        assert played.content == voice
        assert played.headers["content-type"] == "audio/ogg"
        assert played.headers["content-disposition"].startswith("inline;")
        # A player asks for parts of the file (to seek): served as ranges.
        part = await browser.request("GET", video_url, headers={"Range": "bytes=8-15"})
        assert part.status_code == 206
        assert part.content == b"ftypisom"
        assert part.headers["content-type"] == "video/mp4"
        sticker = await browser.get(f"{sticker_url}/preview")
        assert sticker.headers["content-type"] == "image/png"  # it has transparency
    finally:
        await alice.close()


@sqlite_only
async def test_another_business_agent_gets_none_of_the_files(
    relay: RunningRelay, gw: RunningGateway, browser: Browser, tmp_path: Path, backend: Backend
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        sent = await alice.send_file(gw.gateway.phone, png(), filename="parcel.png")
        await thread_of(browser, alice.account_id, "parcel.png")
        path = f"/inbox/c/{alice.account_id}/file/{encode_wamid(sent.message_id)}"
        async with serve_gateway(
            relay, backend, tmp_path / "other", display_name="Andere GmbH"
        ) as other:
            await make_agent(other, "dora")
            dora = Browser(other.url)
            try:
                await dora.sign_in("dora")
                # Her session means nothing to this business's gateway ...
                at_ours = await dora.http.get(
                    gw.url + path,
                    headers={"Cookie": f"tresen_inbox={dora.cookies['tresen_inbox']}"},
                )
                assert at_ours.status_code == 403
                # ... and her own gateway has no such conversation or file.
                assert (await dora.get(path)).status_code == 404
            finally:
                await dora.close()
    finally:
        await alice.close()


@sqlite_only
async def test_active_content_a_customer_sends_is_never_served_inline(
    relay: RunningRelay, gw: RunningGateway, browser: Browser, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    try:
        sent = await alice.send_file(
            gw.gateway.phone,
            svg,
            filename="cute.svg",
            mime_type="image/svg+xml",
            kind=MediaKind.IMAGE,
        )
        page = await thread_of(browser, alice.account_id, "cute.svg")
        url = f"/inbox/c/{alice.account_id}/file/{encode_wamid(sent.message_id)}"
        assert f'<img src="{url}' not in page  # a card, not a picture
        assert 'class="file-card"' in page
        served = await browser.get(url)
        assert served.headers["content-type"] == "application/octet-stream"
        assert served.headers["content-disposition"].startswith("attachment;")
        assert (await browser.get(f"{url}/preview")).status_code == 404
    finally:
        await alice.close()


@sqlite_only
async def test_a_file_that_could_not_be_received_shows_a_clear_note(
    relay: RunningRelay, gw: RunningGateway, browser: Browser, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    alice.attachments.inline_bytes = 0  # through the blob store, where it is damaged
    try:
        media = await alice.attachments.prepare(pdf("forged"), filename="claim.pdf")
        stored = next(
            p
            for p in (tmp_path / "attachments").rglob("*")
            if p.is_file() and hashlib.sha256(p.read_bytes()).digest() == media.sha256
        )
        damaged = bytearray(stored.read_bytes())
        damaged[len(damaged) // 2] ^= 0x01
        stored.write_bytes(bytes(damaged))
        await alice.send(gw.gateway.phone, media)
        page = await thread_of(browser, alice.account_id, "could not be received")
        assert "Ask them to send it again" in page
        assert "<img" not in page.split('id="thread"')[1].split("</ol>")[0]
    finally:
        await alice.close()


# --- attaching -------------------------------------------------------------------------------


@sqlite_only
async def test_an_attached_file_reaches_the_customer_who_decrypts_it(
    relay: RunningRelay, gw: RunningGateway, browser: Browser, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    other = Browser(gw.url)
    boarding_pass = pdf("KL1234 seat 12A")
    photo = png(120, 90)
    try:
        await alice.send_text(gw.gateway.phone, "Wo ist meine Bordkarte?")
        page = await thread_of(browser, alice.account_id, "Wo ist meine Bordkarte?")
        assert 'enctype="multipart/form-data"' in page
        assert 'action="/inbox/c/' + alice.account_id + '/attach"' in page
        await make_agent(gw, "dana")
        await other.sign_in("dana")

        sent = await attach(
            browser,
            alice.account_id,
            boarding_pass,
            "boarding pass.pdf",
            "application/pdf",
            caption="Gute Reise!",
        )
        assert notice(sent) == "Sent boarding pass.pdf."
        event = await next_of(alice, MessageEvent, 30)
        assert isinstance(event.payload, Media)
        assert event.payload.kind is MediaKind.DOCUMENT
        assert event.payload.filename == "boarding pass.pdf"
        assert event.payload.caption == "Gute Reise!"
        decrypted = await alice.attachments.download(event.message_id, event.payload)
        assert decrypted.read_bytes() == boarding_pass

        # In the thread like a customer's file, for every agent of the team.
        wamid = encode_wamid(event.message_id)
        shown = await thread_of(other, alice.account_id, "boarding pass.pdf")
        assert f"/inbox/c/{alice.account_id}/file/{wamid}?download=1" in shown
        assert "Gute Reise!" in shown
        got = await other.get(f"/inbox/c/{alice.account_id}/file/{wamid}")
        assert got.content == boarding_pass

        # A picture goes as a picture, a browser's vague type decided by the file's name.
        sent = await attach(browser, alice.account_id, photo, "map.png", "application/octet-stream")
        assert notice(sent) == "Sent map.png."
        event = await next_of(alice, MessageEvent, 30)
        assert isinstance(event.payload, Media)
        assert event.payload.kind is MediaKind.IMAGE
        assert event.payload.mime_type == "image/png"
        assert (await alice.attachments.download(event.message_id, event.payload)).read_bytes() == (
            photo
        )
        shown = await thread_of(other, alice.account_id, "map.png")
        assert f'<img src="/inbox/c/{alice.account_id}/file/{encode_wamid(event.message_id)}' in (
            shown
        )
    finally:
        await alice.close()
        await other.close()


@sqlite_only
async def test_files_the_composer_refuses_and_why(
    relay: RunningRelay, gw: RunningGateway, browser: Browser, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        await alice.send_text(gw.gateway.phone, "Hallo")
        await thread_of(browser, alice.account_id, "Hallo")
        contact = alice.account_id
        large = b"\x89PNG\r\n\x1a\n" + bytes(6 * MB)
        said = notice(await attach(browser, contact, large, "huge.png", "image/png"))
        assert said == "A picture may be at most 5 MB; this one is 6 MB (file_too_large)."
        said = notice(await attach(browser, contact, b"PK\x03\x04", "a.zip", "application/zip"))
        assert said.startswith("Files of type application/zip cannot be sent")
        assert said.endswith("(file_type_unsupported).")
        said = notice(await attach(browser, contact, b"<html>", "photo.png", "image/png"))
        assert said.endswith("(file_type_mismatch).")
        said = notice(await attach(browser, contact, b"", "empty.pdf", "application/pdf"))
        assert said == "The file is empty (file_empty)."
        said = notice(
            await attach(browser, contact, b"OggS" + bytes(64), "n.ogg", "audio/ogg", caption="Hi")
        )
        assert said.endswith("(caption_not_allowed).")
        said = notice(
            await attach(browser, contact, pdf("x"), "x.pdf", "application/pdf", caption="x" * 1025)
        )
        assert said == "A caption is at most 1024 characters (caption_too_long)."
        no_file = await browser.request(
            "POST",
            f"/inbox/c/{contact}/attach",
            data={"csrf": await browser.csrf(f"/inbox/c/{contact}")},
            files={"other": ("x.txt", b"x", "text/plain")},
        )
        assert notice(no_file) == "Choose a file to send (file_missing)."

        # A body larger than any file is refused from its declared length, before reading it.
        largest = gw.gateway.media.max_upload_bytes
        too_big = await declared_only(browser, f"/inbox/c/{contact}/attach", largest + 10 * MB)
        assert notice(too_big).endswith("(file_too_large).")

        # Without the form's token nothing is sent; signed out, the login page.
        forged = await attach(browser, contact, pdf("x"), "x.pdf", "application/pdf", csrf="bad")
        assert forged.status_code == 403
        stranger = Browser(gw.url)
        try:
            away = await attach(stranger, contact, pdf("x"), "x.pdf", "application/pdf", csrf="")
            assert away.status_code == 303
            assert away.headers["location"] == "/inbox/login"
        finally:
            await stranger.close()

        # In German, with the same code.
        await make_agent(gw, "jonas", language="de")
        german = Browser(gw.url)
        try:
            await german.sign_in("jonas")
            said = notice(await attach(german, contact, b"PK\x03\x04", "a.zip", "application/zip"))
            assert "(file_type_unsupported)" in said
            assert "können nicht gesendet werden" in said
        finally:
            await german.close()
    finally:
        await alice.close()


@sqlite_only
async def test_with_the_window_closed_no_file_is_sent(
    make_relay: MakeRelay, backend: Backend, tmp_path: Path
) -> None:
    clock = ManualClock(SystemClock().now_ms())
    async with (
        make_relay(clock=clock) as relay,
        serve_gateway(relay, backend, tmp_path, clock=clock) as gw,
    ):
        await make_agent(gw)
        alice: Client = await customer(relay, tmp_path / "alice")
        browser = Browser(gw.url)
        try:
            await alice.send_text(gw.gateway.phone, "Hallo")
            await browser.sign_in("cem")
            await thread_of(browser, alice.account_id, "Hallo")
            clock.advance(hours=25)
            await browser.sign_in("cem")
            closed = await thread_of(browser, alice.account_id, "The 24-hour window is closed")
            assert "/attach" not in closed
            refused = await attach(
                browser, alice.account_id, pdf("late"), "late.pdf", "application/pdf"
            )
            assert "more than 24 hours have passed" in notice(refused)
            # The refused file is not kept.
            assert await gw.gateway.media.store.expired(2**62) == []
        finally:
            await alice.close()
            await browser.close()


# --- the rules, on their own -----------------------------------------------------------------


def test_the_kind_of_a_file_follows_the_cloud_apis_rules() -> None:
    from tresen.client.attachments import AttachmentLimits
    from tresen.gateway.media.kinds import KindLimits

    limits = KindLimits(AttachmentLimits())
    png_head = b"\x89PNG\r\n\x1a\n" + bytes(24)
    assert file_kind(limits, "image/png", 10, png_head, "hi") is MediaKind.IMAGE
    assert file_kind(limits, "application/pdf", 10, b"%PDF", "") is MediaKind.DOCUMENT
    assert file_kind(limits, "audio/ogg", 10, b"OggS", "") is MediaKind.AUDIO
    assert file_kind(limits, "video/mp4", 10, bytes(12), "") is MediaKind.VIDEO
    webp = b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(16)
    assert file_kind(limits, "image/webp", 10, webp, "") is MediaKind.STICKER
    with pytest.raises(FileRefused) as refused:
        file_kind(limits, "image/webp", 200 * 1024, webp, "")
    assert refused.value.code == "file_too_large"
    for mime_type, code in [
        ("image/svg+xml", "file_type_unsupported"),
        ("text/html", "file_type_unsupported"),
        ("image/jpeg", "file_type_mismatch"),
    ]:
        with pytest.raises(FileRefused) as refused:
            file_kind(limits, mime_type, 10, b"<svg", "")
        assert refused.value.code == code
    assert mime_type_of("application/octet-stream", "Rechnung.PDF") == "application/pdf"
    assert mime_type_of("image/png; charset=x", "x") == "image/png"
    assert mime_type_of("", None) == ""
    assert human_size(812) == "812 B"
    assert human_size(54 * 1024) == "54 KB"
    assert human_size(int(1.44 * MB)) == "1.4 MB"
    assert human_size(100 * MB) == "100 MB"


def test_a_file_name_cannot_break_out_of_its_header() -> None:
    assert content_disposition("inline", "a.png") == (
        "inline; filename=\"a.png\"; filename*=UTF-8''a.png"
    )
    header = content_disposition("attachment", 'evil"\r\nSet-Cookie: x=1;/../é.pdf')
    assert "\r" not in header
    assert "\n" not in header
    fallback = header.split('filename="')[1].split('"')[0]
    assert not set(fallback) & set('"/;')
    assert unquote(header.split("UTF-8''")[1]) == "evilSet-Cookie: x=1;..é.pdf"
    assert content_disposition("attachment", "../..").endswith("UTF-8''file")


def test_how_each_file_shows() -> None:
    record = MediaRecord("1" * 16, "inbound", "image/png", "00", 2048, None, 0, 1)
    picture = present("ab", "wamid.x", Attached("image", "1" * 16, None, None), record)
    assert (picture.shows, picture.filename, picture.size) == ("image", "image.png", "2 KB")
    assert picture.preview_url == "/inbox/c/ab/file/wamid.x/preview"
    svg = MediaRecord("1" * 16, "inbound", "image/svg+xml", "00", 10, "x.svg", 0, 1)
    assert present("ab", "w", Attached("image", "1" * 16, None, None), svg).shows == "file"
    assert present("ab", "w", Attached("image", "1" * 16, None, None), None).shows == "gone"
    linked = present("ab", "w", Attached("document", None, None, "a.pdf", "https://x/a.pdf"), None)
    assert linked.shows == "link"
    assert present("ab", "w", Attached("video", None, "video/mp4", None), None).shows == "elsewhere"


async def test_previews_stay_within_their_budget(tmp_path: Path) -> None:
    previews = Previews(largest_px=64, budget_bytes=40_000)
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        path.write_bytes(png(300, 200))
        paths.append(path)
    for i, path in enumerate(paths):
        made = await previews.of(str(i), path)
        assert made is not None
        assert Image.open(io.BytesIO(made[0])).size == (64, 43)
    assert previews._bytes <= 40_000
    not_a_picture = tmp_path / "x.png"
    not_a_picture.write_bytes(b"<html>")
    assert await previews.of("x", not_a_picture) is None

"""Attachments through a real relay: uploads and downloads that resume after lost
connections, a file sent from the chat app, and the sender's other device."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from attachment_support import BreakingBody
from support import RunningRelay, registered_client

from tresen.client import Client
from tresen.client.app import ChatModel
from tresen.client.events import MessageEvent
from tresen.wire.e2e import Media, MediaKind


class Flaky(httpx.AsyncBaseTransport):
    """The real network, except that ``lose_patches`` upload answers are lost after the relay
    stored the piece, and ``cut_downloads`` downloads break off halfway."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.lose_patches = 0
        self.cut_downloads = 0
        self.seen: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        path = request.url.path
        self.seen.append((request.method, path, response.status_code))
        if not path.startswith("/v1/attachments/"):
            return response
        if request.method == "PATCH" and self.lose_patches:
            self.lose_patches -= 1
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("connection lost before the answer")
        if request.method == "GET" and not path.endswith("/upload") and self.cut_downloads:
            self.cut_downloads -= 1
            body = await response.aread()
            await response.aclose()
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=BreakingBody(body, len(body) // 2),
            )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client(relay: RunningRelay, tmp_path: Path) -> AsyncIterator[MakeClient]:
    made: list[Client] = []

    async def make(name: str, phone: str, **options: Any) -> Client:
        client = await registered_client(
            relay.url, relay.sms_file, tmp_path / name, phone, **options
        )
        made.append(client)
        client.start()
        return client

    yield make
    for client in made:
        await client.close()


async def next_media(client: Client) -> MessageEvent:
    async for event in client.events():
        if isinstance(event, MessageEvent) and isinstance(event.payload, Media):
            return event
    raise AssertionError("event stream ended")


async def test_uploads_and_downloads_resume_after_lost_connections(
    relay: RunningRelay, make_client: MakeClient, tmp_path: Path
) -> None:
    alice_net, bob_net = Flaky(), Flaky()
    alice = await make_client("alice", relay.next_phone(), transport=alice_net)
    bob_phone = relay.next_phone()
    bob = await make_client("bob", bob_phone, transport=bob_net)
    alice.attachments.piece_bytes = 64 * 1024
    alice_net.lose_patches = 2
    bob_net.cut_downloads = 2
    plain = secrets.token_bytes(300_000)
    waiting = asyncio.create_task(next_media(bob))

    await alice.send_file(bob_phone, plain, filename="scan.tiff", caption="the scan")
    event = await asyncio.wait_for(waiting, 30)
    kept = await bob.download(event)

    assert kept.read_bytes() == plain
    assert isinstance(event.payload, Media)
    assert event.payload.caption == "the scan"
    asked = [s for s in alice_net.seen if s[0] == "GET" and s[1].endswith("/upload")]
    assert len(asked) == 2
    resumed = [s for s in bob_net.seen if s[0] == "GET" and s[2] == 206]
    assert len(resumed) == 2


async def test_a_file_attached_in_the_app_reaches_the_peer_and_the_senders_other_device(
    relay: RunningRelay, make_client: MakeClient, tmp_path: Path
) -> None:
    alice_phone, bob_phone = relay.next_phone(), relay.next_phone()
    alice = await make_client("alice", alice_phone)
    alice_tablet = await make_client("alice-tablet", alice_phone)
    bob = await make_client("bob", bob_phone)
    at_bob = asyncio.create_task(next_media(bob))
    at_tablet = asyncio.create_task(next_media(alice_tablet))
    path = tmp_path / "Kassenbon März.pdf"
    path.write_bytes(b"%PDF-1.4 receipt " + bytes(5_000))
    model = ChatModel(alice)
    await model.open(bob_phone)

    await model.submit(f'/attach "{path}" the receipt')

    for client in (bob, alice_tablet):
        event = await asyncio.wait_for(at_bob if client is bob else at_tablet, 30)
        media = event.payload
        assert isinstance(media, Media)
        assert (media.kind, media.filename) == (MediaKind.DOCUMENT, "Kassenbon März.pdf")
        assert media.caption == "the receipt"
        assert (await client.download(event)).read_bytes() == path.read_bytes()
    shown = model.lines(bob.account_id or "")[-1]
    assert shown.marker == "file 1"
    assert shown.text == "📎 document · Kassenbon März.pdf · 5.0 KB — the receipt"

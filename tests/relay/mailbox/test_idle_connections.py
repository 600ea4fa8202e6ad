"""Devices that stay connected without sending: served by the relay's own server setup, and
sent what arrives for them, however long they were idle."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from support import Backend, Device, RunningRelay, WsClient, receiving_device, send_frame

from tresen.cli.common import start_server
from tresen.core.http import tls_context
from tresen.core.settings import Settings
from tresen.relay.app import build_app
from tresen.wire import relay as wire


@contextlib.asynccontextmanager
async def served_like_relay_serve(backend: Backend, tmp_path: Path) -> AsyncIterator[RunningRelay]:
    """A relay behind the same uvicorn setup as ``tresen relay serve`` (``start_server``)."""
    sms_file = tmp_path / f"sms-{secrets.token_hex(4)}.jsonl"
    settings = Settings(
        data_dir=tmp_path,
        sms_sender="file",
        sms_file=sms_file,
        limits={"code_requests_per_address": 10_000},
        **backend.settings_overrides(),
    )
    app = build_app(settings, db=backend.database())
    server, task, url = await start_server(
        app, "127.0.0.1", 0, ws_max_size=settings.limits.max_frame_bytes * 2
    )
    try:
        async with httpx.AsyncClient(verify=tls_context(), base_url=url, timeout=30) as http:
            yield RunningRelay(app.state.relay, url, sms_file, http)
    finally:
        server.should_exit = True
        await task


async def sender_and_recipient(relay: RunningRelay) -> tuple[WsClient, Device, WsClient]:
    """Alice's connection, and Bob with his connection past its queue's end."""
    a = await relay.connect(await receiving_device(relay))
    bob = await receiving_device(relay)
    b = await relay.connect(bob)
    await b.expect(wire.QueueEmpty)
    return a, bob, b


async def test_an_idle_device_is_sent_each_message_as_it_arrives(
    backend: Backend, tmp_path: Path
) -> None:
    async with served_like_relay_serve(backend, tmp_path) as relay:
        a, bob, b = await sender_and_recipient(relay)
        for n in range(3):
            await a.send(send_frame(bob, f"m{n}", {1: b"x" * (n + 1)}))
            accepted = await a.expect(wire.Accepted)
            frame = await b.expect(wire.MessageFrame)
            assert frame.message_id == accepted.message_id
            await b.send(wire.Ack(ids=[frame.id]))
            delivered = await a.expect(wire.Delivered)
            assert delivered.message_id == accepted.message_id
        await b.send(wire.Ping(nonce=7))
        assert (await b.expect(wire.Pong)).nonce == 7
        await a.close()
        await b.close()


async def test_a_device_connected_again_is_sent_what_it_did_not_ack(
    backend: Backend, tmp_path: Path
) -> None:
    async with served_like_relay_serve(backend, tmp_path) as relay:
        a, bob, b = await sender_and_recipient(relay)
        await a.send(send_frame(bob, "kept", {1: b"k"}))
        accepted = await a.expect(wire.Accepted)
        first = await b.expect(wire.MessageFrame)
        await b.close()  # without acking
        b = await relay.connect(bob)
        again = await b.expect(wire.MessageFrame)
        assert (again.id, again.message_id) == (first.id, accepted.message_id)
        await a.close()
        await b.close()


def test_serving_raises_the_limit_of_open_files_to_what_the_system_allows() -> None:
    script = (
        "import resource\n"
        "from tresen.cli.common import raise_open_files_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "print(raise_open_files_limit(), hard)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    raised, hard = out.split()
    assert raised == hard

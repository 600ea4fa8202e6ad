"""A relay process killed with SIGKILL mid-stream loses nothing it answered ``accepted``."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest
import websockets
from support import Device, RelayProcess, RunningRelay, WsClient, publish_identity

from tresen.relay.accounts.sms import read_last_code
from tresen.wire import relay as wire

pytestmark = pytest.mark.slow


async def register(http: httpx.AsyncClient, sms_file: Path, phone: str) -> Device:
    await http.post("/v1/registration/code", json={"phone": phone})
    code = read_last_code(sms_file, phone)
    r = await http.post("/v1/registration/verify", json={"phone": phone, "code": code})
    body = r.json()
    return Device(phone, body["account_id"], body["device_id"], body["token"])


async def connect(url: str, device: Device) -> WsClient:
    ws = await websockets.connect(
        url.replace("http", "ws", 1) + "/v1/ws", additional_headers=device.auth
    )
    client = WsClient(ws)
    client.hello = await client.expect(wire.Hello)
    return client


async def test_sigkill_mid_stream_loses_no_accepted_message(relay_process: RelayProcess) -> None:
    await relay_process.start()
    async with httpx.AsyncClient(base_url=relay_process.url, timeout=30) as http:
        shim = RunningRelay.__new__(RunningRelay)
        shim.http = http
        alice = await register(http, relay_process.sms_file, "+4915110000001")
        bob = await register(http, relay_process.sms_file, "+4915110000002")
        await publish_identity(shim, alice)
        await publish_identity(shim, bob)

    sender = await connect(relay_process.url, alice)
    accepted: dict[str, str] = {}
    total = 5000

    async def pump() -> None:
        for i in range(total):
            frame = wire.Send(
                client_msg_id=f"m{i}",
                to=bob.account_id,
                per_device=[wire.DeviceCiphertext(device_id=1, type=1, body=f"c{i}".encode())],
            )
            await sender.ws.send(wire.encode(frame))

    async def collect() -> None:
        while True:
            frame = wire.decode_server_frame(await sender.ws.recv())  # type: ignore[arg-type]
            if isinstance(frame, wire.Accepted):
                accepted[frame.client_msg_id] = frame.message_id

    pumping = asyncio.create_task(pump())
    collecting = asyncio.create_task(collect())
    while len(accepted) < 300:
        await asyncio.sleep(0.001)
        assert not collecting.done(), collecting
    relay_process.kill()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(pumping, collecting), 10)
    with contextlib.suppress(Exception):
        await sender.ws.close()
    assert 300 <= len(accepted) < total  # the kill landed in the middle of the stream

    await relay_process.start()
    receiver = await connect(relay_process.url, bob)
    received: set[str] = set()
    while True:
        frame = await receiver.recv(timeout=30)
        if isinstance(frame, wire.QueueEmpty):
            break
        if isinstance(frame, wire.KeysLow):
            continue
        assert isinstance(frame, wire.MessageFrame)
        received.add(frame.message_id)
    lost = set(accepted.values()) - received
    assert not lost, f"{len(lost)} accepted messages were lost"
    await receiver.close()

"""Relay memory under a client that does not read: how much its RSS grows in ~20 s.

Starts ``tresen relay serve`` in a child process (SQLite in a temporary folder) and, per
scenario, connects a device over a raw socket that completes the WebSocket handshake and then
never reads (a 4 KiB receive buffer). Scenarios:

- ``answers``: the device pipelines frames whose answers it never reads (pings and acks with
  id 0, which are answered with an error), as fast as the relay takes them;
- ``deliveries``: another device streams 60 KB messages to it.

Samples the relay's resident memory (``VmRSS``) every second; prints a table and writes JSON.

    .venv/bin/python bench/slow_reader.py --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import httpx
import websockets
from relay_throughput import Dev, Relay, connect, register

from tresen.wire import relay as wire


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def client_frame(payload: bytes) -> bytes:
    """A masked binary WebSocket frame (client to server)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        head = bytes([0x82, 0x80 | len(payload)])
    else:
        head = bytes([0x82, 0x80 | 126]) + len(payload).to_bytes(2)
    return head + mask + masked


async def non_reading_socket(
    url: str, dev: Dev
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /v1/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {dev.token}\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def close_code(reader: asyncio.StreamReader) -> int | None:
    """Read what the relay sent, up to its close frame; the close code (None: none came)."""
    buffer = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        while chunk := await asyncio.wait_for(reader.read(1 << 20), 15):
            buffer += chunk
            while len(buffer) >= 2:
                opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
                if length == 126:
                    length, start = int.from_bytes(buffer[2:4]), 4
                elif length == 127:
                    length, start = int.from_bytes(buffer[2:10]), 10
                if len(buffer) < start + length:
                    break
                payload, buffer = buffer[start : start + length], buffer[start + length :]
                if opcode == 0x8:
                    return int.from_bytes(payload[:2])
    return None


async def pipeline_answers(writer: asyncio.StreamWriter, stop: float) -> int:
    frames = [
        client_frame(wire.encode(wire.Ping(nonce=7))),
        client_frame(wire.encode(wire.Ack(ids=[0]))),
    ] * 64
    chunk = b"".join(frames)
    sent = 0
    with contextlib.suppress(ConnectionError, TimeoutError):
        while time.monotonic() < stop:
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), max(0.1, stop - time.monotonic()))
            sent += len(frames)
    return sent


async def stream_messages(url: str, sender: Dev, to: Dev, stop: float) -> int:
    ws = await connect(url, sender)
    body = os.urandom(60_000)
    sent = 0

    async def drain_answers() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in ws:
                pass

    reader = asyncio.create_task(drain_answers())
    while time.monotonic() < stop:
        frame = wire.Send(
            client_msg_id=f"m{sent}",
            to=to.account_id,
            per_device=[wire.DeviceCiphertext(device_id=1, type=1, body=body)],
        )
        await ws.send(wire.encode(frame))
        sent += 1
        await asyncio.sleep(0.005)  # ~200 messages (12 MB) per second
    reader.cancel()
    await ws.close()
    return sent


async def scenario(name: str, seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        relay = Relay("sqlite", Path(tmp), 256)
        try:
            await relay.wait()
            async with httpx.AsyncClient(base_url=relay.url, timeout=60) as http:
                victim = await register(http, relay.sms, "+4915190000001")
                sender = await register(http, relay.sms, "+4915190000002")
            reader, writer = await non_reading_socket(relay.url, victim)
            await asyncio.sleep(1)
            before = rss_mib(relay.proc.pid)
            stop = time.monotonic() + seconds
            if name == "answers":
                work = asyncio.create_task(pipeline_answers(writer, stop))
            else:
                work = asyncio.create_task(stream_messages(relay.url, sender, victim, stop))
            samples = []
            while not work.done():
                await asyncio.sleep(1)
                samples.append(round(rss_mib(relay.proc.pid) - before, 1))
            sent = await work
            code = await close_code(reader)
            writer.close()
            return {
                "scenario": name,
                "seconds": seconds,
                "frames_sent": sent,
                "rss_before_mib": round(before, 1),
                "rss_growth_peak_mib": max(samples),
                "rss_growth_end_mib": samples[-1],
                "samples_mib": samples,
                "close_code": code,
            }
        finally:
            relay.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--scenarios", default="answers,deliveries")
    parser.add_argument("--label", default="", help="recorded with the results, e.g. a commit")
    parser.add_argument("--out", type=Path, default=Path("bench/results/slow_reader.json"))
    args = parser.parse_args()
    rows = [asyncio.run(scenario(name, args.seconds)) for name in args.scenarios.split(",")]
    print(
        f"{'scenario':<12}{'frames':>9}{'RSS MiB':>9}{'peak +MiB':>11}{'end +MiB':>10}{'close':>7}"
    )
    for r in rows:
        print(
            f"{r['scenario']:<12}{r['frames_sent']:>9}{r['rss_before_mib']:>9}"
            f"{r['rss_growth_peak_mib']:>11}{r['rss_growth_end_mib']:>10}{r['close_code']!s:>7}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": os.uname().nodename,
                "cpus": os.cpu_count(),
                "label": args.label,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

"""Relay hot path: send -> store -> push -> ack -> delete, end to end over WebSocket.

Starts ``tresen relay serve`` in a child process (SQLite in a temporary folder, or PostgreSQL
with ``--postgres``), registers sender/recipient pairs, and streams messages with a bounded
window of unanswered sends per sender. Prints a table and writes JSON.

    .venv/bin/python bench/relay_throughput.py --pairs 8 --messages 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import vodozemac
import websockets

from tresen.relay.accounts.sms import read_last_code
from tresen.wire import relay as wire

PG_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Dev:
    account_id: str
    token: str


class Relay:
    def __init__(
        self,
        backend: str,
        folder: Path,
        write_batch: int,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sms = folder / "sms.jsonl"
        self.schema = f"bench_{secrets.token_hex(4)}" if backend == "postgres" else None
        env = {
            **os.environ,
            "TRESEN_SMS_SENDER": "file",
            "TRESEN_SMS_FILE": str(self.sms),
            "TRESEN_DATA_DIR": str(folder),
            "TRESEN_LOG_LEVEL": "warning",
            "TRESEN_LIMITS__CODE_REQUESTS_PER_ADDRESS": "100000",
            "TRESEN_LIMITS__SEND_RATE_PER_DEVICE": "1000000",
            "TRESEN_LIMITS__SEND_BURST_PER_DEVICE": "1000000",
            "TRESEN_LIMITS__WRITE_BATCH": str(write_batch),
            **(extra_env or {}),
        }
        if self.schema:
            env["TRESEN_DATABASE_URL"] = PG_URL
            env["TRESEN_DATABASE_SCHEMA"] = self.schema
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *(os.environ.get("BENCH_RELAY_CMD", "-m tresen").split()),
                "relay",
                "serve",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=None,
        )

    async def wait(self) -> None:
        async with httpx.AsyncClient(base_url=self.url) as http:
            for _ in range(400):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/v1/health")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise RuntimeError("relay did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

    async def drop_schema(self) -> None:
        if self.schema:
            from tresen.core.db import Database

            db = Database(PG_URL)
            async with db.write() as conn:
                await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            await db.dispose()


async def register(http: httpx.AsyncClient, sms: Path, phone: str) -> Dev:
    await http.post("/v1/registration/code", json={"phone": phone})
    code = read_last_code(sms, phone)
    body = (await http.post("/v1/registration/verify", json={"phone": phone, "code": code})).json()
    dev = Dev(body["account_id"], body["token"])
    account = vodozemac.Account()
    await http.put(
        "/v1/keys",
        headers={"Authorization": f"Bearer {dev.token}"},
        json={
            "identity_keys": {
                "curve25519": account.curve25519_key.to_base64(),
                "ed25519": account.ed25519_key.to_base64(),
            }
        },
    )
    return dev


async def connect(url: str, dev: Dev) -> websockets.ClientConnection:
    ws = await websockets.connect(
        url.replace("http", "ws", 1) + "/v1/ws",
        additional_headers={"Authorization": f"Bearer {dev.token}"},
        max_size=None,
        compression=None,
    )
    await ws.recv()  # hello
    return ws


async def run_pair(
    url: str,
    sender: Dev,
    recipient: Dev,
    count: int,
    window: int,
    size: int,
    finished: list[float],
) -> list[float]:
    tx = await connect(url, sender)
    rx = await connect(url, recipient)
    latencies: list[float] = []
    slots = asyncio.Semaphore(window)
    done = asyncio.Event()
    padding = b"\x00" * max(0, size - 8)

    async def produce() -> None:
        for i in range(count):
            await slots.acquire()
            body = struct.pack("<d", time.perf_counter()) + padding
            frame = wire.Send(
                client_msg_id=f"b{i}",
                to=recipient.account_id,
                per_device=[wire.DeviceCiphertext(device_id=1, type=1, body=body)],
            )
            await tx.send(wire.encode(frame))

    async def sender_events() -> None:
        while not done.is_set():
            frame = wire.decode_server_frame(await tx.recv())  # type: ignore[arg-type]
            if isinstance(frame, wire.Accepted | wire.ErrorFrame):
                if isinstance(frame, wire.ErrorFrame):
                    raise RuntimeError(frame)
                slots.release()
            elif isinstance(frame, wire.Delivered):
                await tx.send(wire.encode(wire.Ack(ids=[frame.id])))

    async def consume() -> None:
        while len(latencies) < count:
            frame = wire.decode_server_frame(await rx.recv())  # type: ignore[arg-type]
            if isinstance(frame, wire.MessageFrame):
                (sent_at,) = struct.unpack("<d", frame.body[:8])
                latencies.append(time.perf_counter() - sent_at)
                await rx.send(wire.encode(wire.Ack(ids=[frame.id])))
        done.set()

    events = asyncio.create_task(sender_events())
    await asyncio.gather(produce(), consume())
    finished.append(time.perf_counter())
    events.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await events
    await tx.close()
    await rx.close()
    return latencies


async def bench(
    backend: str, write_batch: int, pairs: int, messages: int, window: int, size: int
) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        relay = Relay(backend, Path(folder), write_batch)
        try:
            await relay.wait()
            async with httpx.AsyncClient(base_url=relay.url, timeout=60) as http:
                devs = [
                    await register(http, relay.sms, f"+49151{70000000 + i:08d}")
                    for i in range(2 * pairs)
                ]
            finished: list[float] = []
            started = time.perf_counter()
            results = await asyncio.gather(
                *(
                    run_pair(
                        relay.url, devs[2 * i], devs[2 * i + 1], messages, window, size, finished
                    )
                    for i in range(pairs)
                )
            )
            elapsed = max(finished) - started
        finally:
            relay.stop()
            await relay.drop_schema()
    latencies = sorted(x for r in results for x in r)
    total = len(latencies)
    return {
        "backend": backend,
        "write_batch": write_batch,
        "pairs": pairs,
        "messages": total,
        "window": window,
        "ciphertext_bytes": size,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(total / elapsed, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "latency_p99_ms": round(latencies[int(total * 0.99) - 1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--messages", type=int, default=500, help="per pair")
    parser.add_argument("--window", type=int, default=32, help="unanswered sends per sender")
    parser.add_argument("--size", type=int, default=200, help="ciphertext bytes")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--write-batches",
        default="256",
        help="operations per transaction to compare, e.g. 1,256 (1 = no group commit)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/relay_throughput.json"))
    args = parser.parse_args()
    rows = [
        asyncio.run(bench(b, int(w), args.pairs, args.messages, args.window, args.size))
        for b in args.backends.split(",")
        for w in args.write_batches.split(",")
    ]
    print(
        f"{'backend':<10}{'batch':>6}{'pairs':>6}{'messages':>10}{'msg/s':>10}"
        f"{'p50 ms':>10}{'p99 ms':>10}"
    )
    for r in rows:
        print(
            f"{r['backend']:<10}{r['write_batch']:>6}{r['pairs']:>6}{r['messages']:>10}"
            f"{r['messages_per_s']:>10}{r['latency_p50_ms']:>10}{r['latency_p99_ms']:>10}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"machine": os.uname().nodename, "cpus": os.cpu_count(), "results": rows}, indent=2
        )
        + "\n"
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

"""End to end through the SDK: encrypt, send, relay, receive, decrypt, store, ack.

Starts ``tresen relay serve`` in a child process and runs ``tresen.client.Client`` instances
in this process. First every sender writes once to every recipient (cold: each message
claims a one-time key and opens a new Olm session on both sides); then the same pairs go on
talking (warm: existing sessions). Latency runs from the sender's ``send_text`` call to the
recipient's ``MessageEvent``. Prints a table and writes JSON.

    .venv/bin/python bench/e2e_throughput.py --senders 4 --recipients 20 --warm 10
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.relay.accounts.sms import read_last_code
from tresen.wire.e2e import Text

PG_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_relay(
    backend: str, folder: Path
) -> tuple[subprocess.Popen[bytes], str, str | None]:
    port = free_port()
    schema = f"bench_{secrets.token_hex(4)}" if backend == "postgres" else None
    env = {
        **os.environ,
        "TRESEN_SMS_SENDER": "file",
        "TRESEN_SMS_FILE": str(folder / "sms.jsonl"),
        "TRESEN_DATA_DIR": str(folder / "relay"),
        "TRESEN_LOG_LEVEL": "warning",
        "TRESEN_LIMITS__CODE_REQUESTS_PER_ADDRESS": "100000",
        "TRESEN_LIMITS__SEND_RATE_PER_DEVICE": "1000000",
        "TRESEN_LIMITS__SEND_BURST_PER_DEVICE": "1000000",
        "TRESEN_LIMITS__LOOKUP_BURST": "100000",
    }
    if schema:
        env["TRESEN_DATABASE_URL"] = PG_URL
        env["TRESEN_DATABASE_SCHEMA"] = schema
    process = subprocess.Popen(
        [
            sys.executable,
            *os.environ.get("BENCH_RELAY_CMD", "-m tresen").split(),
            "relay",
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(400):
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/v1/health")).status_code == 200:
                    return process, url, schema
            await asyncio.sleep(0.05)
    raise RuntimeError("relay did not start")


async def drop_schema(schema: str | None) -> None:
    if schema:
        from tresen.core.db import Database

        db = Database(PG_URL)
        async with db.write() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await db.dispose()


async def make_client(url: str, folder: Path, phone: str) -> Client:
    client = Client.open(folder / phone, url, key=os.urandom(32))
    await client.request_code(phone)
    code = read_last_code(folder / "sms.jsonl", phone)
    assert code is not None
    await client.register(phone, code)
    return client


def summary(phase: str, backend: str, latencies: list[float], elapsed: float) -> dict[str, object]:
    ordered = sorted(latencies)
    return {
        "backend": backend,
        "phase": phase,
        "messages": len(ordered),
        "messages_per_s": round(len(ordered) / elapsed, 1),
        "latency_p50_ms": round(statistics.median(ordered) * 1000, 2),
        "latency_p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000, 2),
    }


async def bench(backend: str, senders: int, recipients: int, warm: int) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        process, url, schema = await start_relay(backend, folder)
        try:
            tx = [await make_client(url, folder, f"+49151300{i:05d}") for i in range(senders)]
            rx = [await make_client(url, folder, f"+49151400{i:05d}") for i in range(recipients)]
            sent_at: dict[str, float] = {}
            latency: dict[str, float] = {}
            arrived = asyncio.Event()
            expected = 0

            async def listen(client: Client) -> None:
                async for event in client.events():
                    if isinstance(event, MessageEvent) and isinstance(event.payload, Text):
                        latency[event.payload.text] = (
                            time.perf_counter() - sent_at[event.payload.text]
                        )
                        if len(latency) >= expected:
                            arrived.set()

            for client in rx:
                client.start()
            for client in rx:
                await client.wait_drained()
            listeners = [asyncio.create_task(listen(c)) for c in rx]

            async def talk(sender: Client, index: int, rounds: int, tag: str) -> None:
                for round_ in range(rounds):
                    for recipient in rx:
                        text = f"{tag} {index} {round_} {recipient.phone}"
                        sent_at[text] = time.perf_counter()
                        await sender.send_text(recipient.account_id or "", text)

            results = []
            for phase, rounds in (("cold", 1), ("warm", warm)):
                latency.clear()
                arrived.clear()
                expected = senders * recipients * rounds
                started = time.perf_counter()
                await asyncio.gather(*(talk(s, i, rounds, phase) for i, s in enumerate(tx)))
                await asyncio.wait_for(arrived.wait(), 300)
                elapsed = time.perf_counter() - started
                results.append(summary(phase, backend, list(latency.values()), elapsed))
            for task in listeners:
                task.cancel()
            for client in tx + rx:
                await client.close()
            return results
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            await drop_schema(schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--recipients", type=int, default=20)
    parser.add_argument("--warm", type=int, default=10, help="warm rounds over all pairs")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--out", type=Path, default=Path("bench/results/e2e_throughput.json"))
    args = parser.parse_args()
    rows = [
        row
        for backend in args.backends.split(",")
        for row in asyncio.run(bench(backend, args.senders, args.recipients, args.warm))
    ]
    print(f"{'backend':<10}{'phase':<6}{'messages':>10}{'msg/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for r in rows:
        print(
            f"{r['backend']:<10}{r['phase']:<6}{r['messages']:>10}{r['messages_per_s']:>10}"
            f"{r['latency_p50_ms']:>10}{r['latency_p99_ms']:>10}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"cpus": os.cpu_count(), "results": rows}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

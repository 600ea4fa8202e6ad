"""The business gateway under load: Cloud API sends per second, and webhook deliveries per second.

sends: ``tresen relay serve`` and ``tresen gateway serve`` run in child processes (SQLite, or
PostgreSQL with ``--backends postgres``); customers (``tresen.client.Client``, in a child
process of their own) each write to the business once, which opens their 24-hour window. Then
this process POSTs ``/v23.0/{phone_number_id}/messages`` text messages over keep-alive
connections, round robin over the customers, for ``--seconds``. A message counts as
*accepted* when the API answered 200 (the relay stored it) and as *delivered* when a customer
decrypted it. The relay's per-business throughput cap (an operator setting, 80/s by default,
1,000/s at most) is lifted for the run, so that the gateway itself is measured.

webhooks: the gateway's outbox and dispatcher in this process deliver events queued over many
conversations to a minimal HTTP receiver in a child process; deliveries per second count
events the receiver got (each one POST, signed).

    .venv/bin/python bench/gateway_api.py --seconds 10 --customers 40
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
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
from typing import Any

import httpx

PG_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"
BUSINESS_PHONE = "+4930555099000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_http(url: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(path)).status_code < 500:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


async def drop_schema(schema: str | None) -> None:
    if schema:
        from tresen.core.db import Database

        db = Database(PG_URL)
        async with db.write() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await db.dispose()


# --- the relay's and the gateway's processes (the other benches use these too) -----------------

UNLIMITED_RELAY = {
    "TRESEN_LIMITS__SEND_RATE_PER_DEVICE": "1000000",
    "TRESEN_LIMITS__SEND_BURST_PER_DEVICE": "1000000",
    "TRESEN_LIMITS__LOOKUP_BURST": "100000",
    "TRESEN_POLICY__PAIR_RATE_PER_MINUTE": "10000000",
    "TRESEN_POLICY__PAIR_BURST": "1000000",
}
"""Relay limits lifted for a bench: a program sends far faster than people do."""


def start_relay(
    folder: Path, port: int, schema: str | None, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``tresen relay serve`` in a child process: SMS codes into ``folder / "sms.jsonl"``,
    SQLite in ``folder / "relay"`` or PostgreSQL in ``schema``."""
    env = {
        **os.environ,
        "TRESEN_SMS_SENDER": "file",
        "TRESEN_SMS_FILE": str(folder / "sms.jsonl"),
        "TRESEN_DATA_DIR": str(folder / "relay"),
        "TRESEN_LOG_LEVEL": "warning",
        "TRESEN_LIMITS__CODE_REQUESTS_PER_ADDRESS": "100000",
        **(extra or {}),
    }
    if schema:
        env["TRESEN_DATABASE_URL"] = PG_URL
        env["TRESEN_DATABASE_SCHEMA"] = schema
    return subprocess.Popen(
        [sys.executable, "-m", "tresen", "relay", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )


def start_gateway(
    folder: Path,
    relay_url: str,
    phone: str,
    port: int,
    schema: str | None,
    extra: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``tresen gateway serve`` in a child process, on the device registered in
    ``folder / "gateway"`` (SQLite there, or PostgreSQL in ``schema``)."""
    env = {**os.environ, "TRESEN_GATEWAY_LOG_LEVEL": "warning", **(extra or {})}
    if schema:
        env["TRESEN_GATEWAY_DATABASE_URL"] = PG_URL
        env["TRESEN_GATEWAY_DATABASE_SCHEMA"] = schema
    command = ["gateway", "serve", "--data-dir", str(folder / "gateway"), "--relay", relay_url]
    return subprocess.Popen(
        [sys.executable, "-m", "tresen", *command, "--phone", phone, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )


# --- a lean HTTP/1.1 client: the load generator must not be what is measured ----------------


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post(self, path: str, host: str, token: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


# --- customers, in a child process -----------------------------------------------------------


def customers_main(
    relay_url: str,
    folder: str,
    count: int,
    ready: Any,
    received: Any,
    phones_out: Any,
    stop_event: Any,
) -> None:
    asyncio.run(_customers(relay_url, Path(folder), count, ready, received, phones_out, stop_event))


async def _customers(
    relay_url: str,
    folder: Path,
    count: int,
    ready: Any,
    received: Any,
    phones_out: Any,
    stop_event: Any,
) -> None:
    from tresen.client import Client
    from tresen.client.events import MessageEvent

    clients: list[Client] = []
    for i in range(count):
        phone = f"+49151{secrets.randbelow(10**3):03d}{i:05d}"
        client = await register_customer(relay_url, folder, phone)
        client.start()
        await client.send_text(BUSINESS_PHONE, "hello")
        clients.append(client)
        phones_out.put(phone)

    async def count_messages(client: Client) -> None:
        async for event in client.events():
            if isinstance(event, MessageEvent) and not event.outgoing:
                with received.get_lock():
                    received.value += 1

    tasks = [asyncio.create_task(count_messages(c)) for c in clients]
    ready.set()
    while not stop_event.is_set():
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    for client in clients:
        await client.close()


# --- the send benchmark ----------------------------------------------------------------------


async def register_customer(relay_url: str, folder: Path, phone: str) -> Any:
    """A registered ``tresen.client.Client`` for ``phone`` (its code read from
    ``folder / "sms.jsonl"``), not yet started."""
    from tresen.client import Client
    from tresen.relay.accounts.sms import read_last_code

    client = Client.open(folder / phone, relay_url, key=os.urandom(32))
    await client.request_code(phone)
    code = read_last_code(folder / "sms.jsonl", phone)
    assert code is not None
    await client.register(phone, code)
    return client


async def register_gateway(
    folder: Path, relay_url: str, backend: str, phone: str, name: str, category: str
) -> tuple[Any, str | None]:
    """Register a gateway's device (its code read from ``folder / "sms.jsonl"``) and save the
    business profile, before the gateway's process starts: its settings and its PostgreSQL
    schema (``None`` on SQLite)."""
    from tresen.gateway.database import gateway_key
    from tresen.gateway.relay_link import open_device
    from tresen.gateway.settings import GatewaySettings
    from tresen.relay.accounts.sms import read_last_code

    schema = f"bench_gw_{secrets.token_hex(4)}" if backend == "postgres" else None
    settings = GatewaySettings(
        data_dir=folder / "gateway",
        relay_url=relay_url,
        phone=phone,
        **({"database_url": PG_URL, "database_schema": schema} if schema else {}),
    )

    async def code(number: str) -> str:
        found = read_last_code(folder / "sms.jsonl", number)
        assert found is not None
        return found

    client = await open_device(settings, gateway_key(settings), code)
    await client.save_business_profile(display_name=name, category=category)
    await client.close()
    return settings, schema


async def setup_gateway(folder: Path, relay_url: str, backend: str) -> tuple[str, str | None]:
    """Register the gateway's device and create an API token before its process starts."""
    from tresen.core.clock import SystemClock
    from tresen.gateway.database import open_database
    from tresen.gateway.store import GatewayStore

    settings, schema = await register_gateway(
        folder, relay_url, backend, BUSINESS_PHONE, "Bench Shop", "RETAIL"
    )
    db = await open_database(settings)
    _, token = await GatewayStore(db, SystemClock()).create_token("bench")
    await db.dispose()
    return token, schema


async def bench_sends(
    backend: str, seconds: float, customers: int, connections: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        relay_port, gateway_port = free_port(), free_port()
        relay_url = f"http://127.0.0.1:{relay_port}"
        relay_schema = f"bench_{secrets.token_hex(4)}" if backend == "postgres" else None
        relay = start_relay(
            folder,
            relay_port,
            relay_schema,
            {
                **UNLIMITED_RELAY,
                "TRESEN_POLICY__BUSINESS_THROUGHPUT_MPS": "100000",
                "TRESEN_POLICY__BUSINESS_THROUGHPUT_MAX_MPS": "100000",
            },
        )
        gateway: subprocess.Popen[bytes] | None = None
        gateway_schema: str | None = None
        context = multiprocessing.get_context("spawn")
        stop_event = context.Event()
        ready = context.Event()
        received = context.Value("q", 0)
        phones: Any = context.Queue()
        crowd = context.Process(
            target=customers_main,
            args=(relay_url, str(folder), customers, ready, received, phones, stop_event),
        )
        try:
            await wait_http(relay_url, "/v1/health")
            token, gateway_schema = await setup_gateway(folder, relay_url, backend)
            gateway = start_gateway(
                folder,
                relay_url,
                BUSINESS_PHONE,
                gateway_port,
                gateway_schema,
                {
                    "TRESEN_GATEWAY_API__REQUESTS_PER_SECOND": "1000000",
                    "TRESEN_GATEWAY_API__REQUEST_BURST": "1000000",
                },
            )
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            await wait_http(gateway_url, "/docs")
            crowd.start()
            while not ready.is_set():
                await asyncio.sleep(0.1)
            to = [phones.get().lstrip("+") for _ in range(customers)]
            path = f"/v23.0/{BUSINESS_PHONE.lstrip('+')}/messages"
            host = f"127.0.0.1:{gateway_port}"
            bodies = [
                json.dumps(
                    {
                        "messaging_product": "whatsapp",
                        "to": number,
                        "type": "text",
                        "text": {"body": "Your parcel arrives today between 10 and 12."},
                    }
                ).encode()
                for number in to
            ]
            # Warm up: one message to every customer (their Olm sessions start here).
            warm = await Connection.open("127.0.0.1", gateway_port)
            for body in bodies:
                status, answer = await warm.post(path, host, token, body)
                assert status == 200, answer
            warm.close()
            while received.value < customers:
                await asyncio.sleep(0.05)
            base_received = received.value

            accepted = 0
            errors: dict[int, int] = {}
            latencies: list[float] = []
            deadline = time.perf_counter() + seconds
            counter = 0

            async def load() -> None:
                nonlocal accepted, counter
                conn = await Connection.open("127.0.0.1", gateway_port)
                try:
                    while time.perf_counter() < deadline:
                        counter += 1
                        body = bodies[counter % len(bodies)]
                        started = time.perf_counter()
                        status, _ = await conn.post(path, host, token, body)
                        latencies.append(time.perf_counter() - started)
                        if status == 200:
                            accepted += 1
                        else:
                            errors[status] = errors.get(status, 0) + 1
                finally:
                    conn.close()

            started = time.perf_counter()
            await asyncio.gather(*(load() for _ in range(connections)))
            send_elapsed = time.perf_counter() - started
            # Delivered: wait (up to 60 s) for the customers to decrypt everything accepted.
            for _ in range(1200):
                if received.value - base_received >= accepted:
                    break
                await asyncio.sleep(0.05)
            delivered = received.value - base_received
            deliver_elapsed = time.perf_counter() - started
            latencies.sort()
            return {
                "backend": backend,
                "customers": customers,
                "connections": connections,
                "seconds": round(send_elapsed, 2),
                "accepted": accepted,
                "accepted_per_s": round(accepted / send_elapsed),
                "delivered": delivered,
                "delivered_per_s": round(delivered / deliver_elapsed),
                "all_delivered_after_s": round(deliver_elapsed, 2),
                "errors": errors,
                "api_p50_ms": round(statistics.median(latencies) * 1000, 1),
                "api_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
            }
        finally:
            stop_event.set()
            if crowd.is_alive():
                crowd.join(timeout=60)
            if gateway is not None:
                stop(gateway)
            stop(relay)
            await drop_schema(relay_schema)
            await drop_schema(gateway_schema)


# --- the webhook benchmark -------------------------------------------------------------------


def receiver_main(port: int, ready: Any, count: Any) -> None:
    async def serve() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    await reader.readexactly(length)
                    with count.get_lock():
                        count.value += 1
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


async def bench_webhooks(backend: str, events: int, conversations: int) -> dict[str, Any]:
    from tresen.core.clock import SystemClock
    from tresen.gateway.database import open_database
    from tresen.gateway.settings import GatewaySettings
    from tresen.gateway.webhooks.dispatcher import WebhookDispatcher
    from tresen.gateway.webhooks.outbox import Outbox

    with tempfile.TemporaryDirectory() as tmp:
        schema = f"bench_wh_{secrets.token_hex(4)}" if backend == "postgres" else None
        settings = GatewaySettings(
            data_dir=Path(tmp),
            **({"database_url": PG_URL, "database_schema": schema} if schema else {}),
        )
        port = free_port()
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        count = context.Value("q", 0)
        receiver = context.Process(target=receiver_main, args=(port, ready, count))
        receiver.start()
        db = await open_database(settings)
        try:
            while not ready.is_set():
                await asyncio.sleep(0.05)
            clock = SystemClock()
            outbox = Outbox(db, os.urandom(32), clock, settings.webhooks)

            url = f"http://127.0.0.1:{port}/hook"
            handshake = httpx.MockTransport(
                lambda request: httpx.Response(200, text=request.url.params["hub.challenge"])
            )
            async with httpx.AsyncClient(transport=handshake) as http:
                await outbox.subscribe(url, "verify", "bench-app-secret", ["messages"], http=http)
            value = {
                "messaging_product": "whatsapp",
                "metadata": {
                    "display_phone_number": "4930555099000",
                    "phone_number_id": "4930555099000",
                },
                "contacts": [
                    {"profile": {"name": "Anna"}, "wa_id": "4915112345678", "user_id": "DE.1"}
                ],
                "statuses": [{"id": "wamid.x", "status": "delivered", "timestamp": "1767225600"}],
            }
            for start in range(0, events, 1000):
                async with db.write() as conn:
                    for i in range(start, min(events, start + 1000)):
                        await outbox.enqueue(
                            conn,
                            waba_id="100000000000001",
                            conversation=f"c{i % conversations}",
                            field="messages",
                            value=value,
                        )
            dispatcher = WebhookDispatcher(outbox, clock=clock, settings=settings.webhooks)
            started = time.perf_counter()
            dispatcher.start()
            dispatcher.wake()
            while count.value < events:
                await asyncio.sleep(0.01)
                if time.perf_counter() - started > 300:
                    break
            elapsed = time.perf_counter() - started
            await dispatcher.close()
            return {
                "backend": backend,
                "events": events,
                "conversations": conversations,
                "delivered": count.value,
                "seconds": round(elapsed, 2),
                "deliveries_per_s": round(count.value / elapsed),
            }
        finally:
            receiver.terminate()
            receiver.join()
            await db.dispose()
            await drop_schema(schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--customers", type=int, default=40)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--parts", default="sends,webhooks")
    parser.add_argument("--out", type=Path, default=Path("bench/results/gateway_api.json"))
    args = parser.parse_args()
    parts = args.parts.split(",")
    sends: list[dict[str, Any]] = []
    hooks: list[dict[str, Any]] = []
    for backend in args.backends.split(","):
        if "sends" in parts:
            sends.append(
                asyncio.run(bench_sends(backend, args.seconds, args.customers, args.connections))
            )
        if "webhooks" in parts:
            hooks.append(asyncio.run(bench_webhooks(backend, args.events, args.conversations)))
    if sends:
        print(
            f"{'backend':<10}{'accepted/s':>12}{'delivered/s':>13}{'accepted':>10}"
            f"{'delivered':>11}{'p50 ms':>8}{'p99 ms':>8}  errors"
        )
        for r in sends:
            print(
                f"{r['backend']:<10}{r['accepted_per_s']:>12}{r['delivered_per_s']:>13}"
                f"{r['accepted']:>10}{r['delivered']:>11}{r['api_p50_ms']:>8}{r['api_p99_ms']:>8}"
                f"  {r['errors'] or '-'}"
            )
    if hooks:
        print(f"{'backend':<10}{'events':>8}{'conversations':>15}{'deliveries/s':>14}")
        for r in hooks:
            print(
                f"{r['backend']:<10}{r['events']:>8}{r['conversations']:>15}"
                f"{r['deliveries_per_s']:>14}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"cpus": os.cpu_count(), "sends": sends, "webhooks": hooks}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

"""The live team inbox: how long a customer's message takes to reach every agent's open page.

``tresen relay serve`` and ``tresen gateway serve`` run in child processes (SQLite, or
PostgreSQL with ``--backend postgres``); ``--agents`` agents of the business each hold the
inbox's event stream (``GET /inbox/events``, Server-Sent Events, as an open inbox page does),
read by this process; ``--customers`` customers (``tresen.client.Client``, in a child process
of their own) write to the business at ``--rate`` messages a second in all, for
``--seconds``. The latency of a message is from the moment its customer's app starts sending
it (encryption and the relay's round trip included) to the moment its ``message`` event
arrives on an agent's stream, for every agent: one message makes ``--agents`` samples. The
wall clock is shared by the processes of one machine.

    .venv/bin/python bench/inbox_live.py --agents 20 --rate 100 --seconds 20

``measure_live(...)`` returns the figures to other programs (``bench/inbox.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway_api import (
    UNLIMITED_RELAY,
    drop_schema,
    free_port,
    register_customer,
    register_gateway,
    start_gateway,
    start_relay,
    stop,
    wait_http,
)

PG_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"
BUSINESS_PHONE = "+4930555077000"
PASSWORD = "bench password for agents"


def percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * share))]


# --- customers, in a child process -----------------------------------------------------------


def customers_main(
    relay_url: str,
    folder: str,
    count: int,
    rate: float,
    seconds: float,
    ready: Any,
    go: Any,
    sent_out: Any,
) -> None:
    asyncio.run(_customers(relay_url, Path(folder), count, rate, seconds, ready, go, sent_out))


async def _customers(
    relay_url: str,
    folder: Path,
    count: int,
    rate: float,
    seconds: float,
    ready: Any,
    go: Any,
    sent_out: Any,
) -> None:
    from tresen.client import Client
    from tresen.gateway.ids import encode_wamid

    clients: list[Client] = []
    for i in range(count):
        phone = f"+49152{secrets.randbelow(10**3):03d}{i:05d}"
        client = await register_customer(relay_url, folder, phone)
        client.start()
        await client.send_text(BUSINESS_PHONE, "hello")  # the conversation starts
        clients.append(client)
    ready.set()
    while not go.is_set():
        await asyncio.sleep(0.01)

    # Each customer writes at rate / count a second, the customers' sends spread evenly.
    every = count / rate
    start = time.monotonic() + 0.2
    end = start + seconds

    async def write(index: int, client: Client) -> None:
        due = start + index * every / count
        sequence = 0
        while due < end:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            began_ns = time.time_ns()
            sequence += 1
            sent = await client.send_text(BUSINESS_PHONE, f"Frage {index}.{sequence}")
            sent_out.put((encode_wamid(sent.message_id), began_ns))
            due += every

    await asyncio.gather(*(write(i, c) for i, c in enumerate(clients)))
    sent_out.put(None)
    await asyncio.sleep(1)  # the last acks
    for client in clients:
        await client.close()


# --- the gateway, its agents and their streams -----------------------------------------------


async def setup_gateway(
    folder: Path, relay_url: str, backend: str, agents: int
) -> tuple[list[str], str | None]:
    """Register the gateway's device and its agents, and sign each agent in once, before the
    gateway's process starts: the agents' session cookies."""
    from argon2 import PasswordHasher

    from tresen.core.clock import SystemClock
    from tresen.gateway.database import open_database
    from tresen.gateway.inbox.agents import Agents, Role

    settings, schema = await register_gateway(
        folder, relay_url, backend, BUSINESS_PHONE, "Bench Airline", "TRAVEL"
    )
    db = await open_database(settings)
    team = Agents(
        db, SystemClock(), hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    cookies = []
    for i in range(agents):
        role = Role.OWNER if i == 0 else Role.AGENT
        await team.create(f"agent{i}", f"Agent {i}", role, PASSWORD)
        cookie, _ = await team.sign_in(f"agent{i}", PASSWORD, "bench")
        cookies.append(cookie)
    await db.dispose()
    return cookies, schema


class Stream:
    """One agent's event stream, read lean (the reader must not be what is measured): the
    arrival time of every ``message`` event from a customer, by wamid."""

    def __init__(self) -> None:
        self.arrived: dict[str, int] = {}
        self.opened = asyncio.Event()

    async def follow(self, port: int, cookie: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /inbox/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Cookie: tresen_inbox={cookie}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            self.opened.set()
            kind = b""
            while line := await reader.readline():
                # Chunk sizes and ends are lines of their own; only events' lines count.
                if line.startswith(b"event: "):
                    kind = line[7:].strip()
                elif line.startswith(b"data: ") and kind == b"message":
                    arrived = time.time_ns()
                    said = json.loads(line[6:])
                    if said.get("direction") == "in":
                        self.arrived.setdefault(said["wamid"], arrived)
        finally:
            writer.close()


async def measure_live(
    *,
    agents: int = 20,
    customers: int = 20,
    rate: float = 100.0,
    seconds: float = 20.0,
    backend: str = "sqlite",
) -> dict[str, Any]:
    """Latency from a customer's send to its ``message`` event on each of ``agents`` open
    event streams, while ``customers`` write ``rate`` messages a second in all."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        relay_port, gateway_port = free_port(), free_port()
        relay_url = f"http://127.0.0.1:{relay_port}"
        relay_schema = f"bench_{secrets.token_hex(4)}" if backend == "postgres" else None
        relay = start_relay(folder, relay_port, relay_schema, UNLIMITED_RELAY)
        gateway: subprocess.Popen[bytes] | None = None
        gateway_schema: str | None = None
        context = multiprocessing.get_context("spawn")
        ready, go = context.Event(), context.Event()
        sent_queue: Any = context.Queue()
        crowd = context.Process(
            target=customers_main,
            args=(relay_url, str(folder), customers, rate, seconds, ready, go, sent_queue),
        )
        readers: list[asyncio.Task[None]] = []
        try:
            await wait_http(relay_url, "/v1/health")
            cookies, gateway_schema = await setup_gateway(folder, relay_url, backend, agents)
            gateway = start_gateway(
                folder,
                relay_url,
                BUSINESS_PHONE,
                gateway_port,
                gateway_schema,
                {"TRESEN_GATEWAY_INBOX__LIVE_STREAMS_PER_AGENT": "8"},
            )
            await wait_http(f"http://127.0.0.1:{gateway_port}", "/inbox/login")
            streams = [Stream() for _ in cookies]
            readers = [
                asyncio.create_task(s.follow(gateway_port, c))
                for s, c in zip(streams, cookies, strict=True)
            ]
            for stream, reader in zip(streams, readers, strict=True):
                opened = asyncio.create_task(stream.opened.wait())
                await asyncio.wait({opened, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    reader.result()  # it failed: say why
            crowd.start()
            while not ready.is_set():
                await asyncio.sleep(0.1)
            await asyncio.sleep(1)  # the first messages' events have passed
            go.set()
            sent: dict[str, int] = {}
            loop = asyncio.get_running_loop()
            while (item := await loop.run_in_executor(None, sent_queue.get)) is not None:
                sent[item[0]] = item[1]
            # Every event that will come has come within 5 s of the last send.
            for _ in range(100):
                if all(len(set(sent) & s.arrived.keys()) == len(sent) for s in streams):
                    break
                await asyncio.sleep(0.05)
            latencies = sorted(
                (s.arrived[wamid] - began) / 1e6
                for s in streams
                for wamid, began in sent.items()
                if wamid in s.arrived
            )
            # The first agent's event: how long the message took to reach the gateway's
            # hub, without the fan-out to the other streams.
            first = sorted(
                min(s.arrived[wamid] for s in streams if wamid in s.arrived) / 1e6 - began / 1e6
                for wamid, began in sent.items()
                if any(wamid in s.arrived for s in streams)
            )
            expected = len(sent) * len(streams)
            return {
                "backend": backend,
                "agents": agents,
                "customers": customers,
                "rate_per_s": rate,
                "seconds": seconds,
                "messages": len(sent),
                "sent_per_s": round(len(sent) / seconds, 1),
                "events_expected": expected,
                "events_arrived": len(latencies),
                "p50_ms": round(percentile(latencies, 0.50), 1),
                "p90_ms": round(percentile(latencies, 0.90), 1),
                "p99_ms": round(percentile(latencies, 0.99), 1),
                "max_ms": round(latencies[-1], 1) if latencies else None,
                "first_agent_p50_ms": round(percentile(first, 0.50), 1),
                "first_agent_p99_ms": round(percentile(first, 0.99), 1),
            }
        finally:
            go.set()
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            if crowd.is_alive():
                crowd.join(timeout=60)
            if gateway is not None:
                stop(gateway)
            stop(relay)
            await drop_schema(relay_schema)
            await drop_schema(gateway_schema)


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--out", type=Path, default=Path("bench/results/inbox_live.json"))
    args = parser.parse_args()
    results = [
        asyncio.run(
            measure_live(
                agents=args.agents,
                customers=args.customers,
                rate=args.rate,
                seconds=args.seconds,
                backend=backend,
            )
        )
        for backend in args.backends.split(",")
    ]
    table = Table(title="Team inbox: customer's send → agent's event")
    for column in ("backend", "agents", "msgs/s", "messages", "events", "p50 ms", "p90 ms"):
        table.add_column(column, justify="right")
    table.add_column("p99 ms", justify="right", style="bold")
    for r in results:
        table.add_row(
            r["backend"],
            str(r["agents"]),
            f"{r['sent_per_s']:g}",
            str(r["messages"]),
            f"{r['events_arrived']}/{r['events_expected']}",
            str(r["p50_ms"]),
            str(r["p90_ms"]),
            str(r["p99_ms"]),
        )
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"cpus": os.cpu_count(), "live": results}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

"""Idle device WebSockets on one relay process: how many it holds, and what each one costs.

Starts ``tresen relay serve`` in a child process (SQLite in a temporary folder), opens
``--connections`` authenticated device WebSockets to it from several client processes, holds
them for ``--seconds``, and reports the relay's memory (RSS, PSS and USS from
``/proc/<pid>/smaps_rollup``) before and after, memory per connection, the time it took to
open them, the relay's CPU use while they sat idle, and whether it still delivers: while all
are open, a sender sends a few messages to one held device and each must arrive within
``--probe-bound-ms``.

Registering this many devices through the HTTP API (codes, identity keys) would take longer
than the measurement itself, so the accounts and devices are written straight into the relay's
database before the relay starts: the relay's own migrations create the schema, and the rows go
into its ``accounts`` and ``devices`` tables with the SHA-256 hash of each device's token, as
registration stores it. The relay then authenticates every connection as usual.

Client sockets are bound to several source addresses in 127.0.0.0/8 (127.0.0.2, 127.0.0.3 ...)
so that no single address runs out of ephemeral ports, and each client process holds its share
with a lean sans-I/O WebSocket client (it answers pings, reads what the relay sends and
discards it). Every process raises its soft limit of open files to the hard limit; a relay
process cannot hold more connections than that hard limit allows, so ``--connections`` is
capped there (the table says so).

    .venv/bin/python bench/connections.py --connections 10000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from relay_throughput import wait_for_health
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from tresen.wire import relay as wire

# Linux: pick the source port at connect() time (per destination), not at bind() time.
IP_BIND_ADDRESS_NO_PORT = 24
# File descriptors the relay needs besides its WebSockets (database, listener, epoll, logs).
RELAY_SPARE_FDS = 200
PROBE_MESSAGES = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_open_files() -> int:
    """Raise this process's soft limit of open files to its hard limit; the new limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def token_of(index: int) -> str:
    return f"bench-connections-{index:07d}"


# --- the relay's database ------------------------------------------------------------------


async def prepare_database(folder: Path, devices: int) -> list[str]:
    """Create the relay's schema in ``folder`` and one account with one device per index.

    Returns the account ids, index by index.
    """
    from sqlalchemy import insert

    from tresen.core.db import Database
    from tresen.core.ids import new_account_id
    from tresen.relay import migrate
    from tresen.relay.schema import accounts
    from tresen.relay.schema import devices as devices_table

    db = Database(f"sqlite+aiosqlite:///{(folder / 'relay.db').resolve()}")
    await migrate.upgrade(db)
    now_ms = int(time.time() * 1000)
    account_ids = [new_account_id() for _ in range(devices)]
    chunk = 20_000
    for start in range(0, devices, chunk):
        indexes = range(start, min(start + chunk, devices))
        async with db.write() as conn:
            await conn.execute(
                insert(accounts),
                [
                    {
                        "id": account_ids[i],
                        "phone": f"+4915{i:09d}",
                        "created_ms": now_ms,
                        "last_device_id": 1,
                    }
                    for i in indexes
                ],
            )
            await conn.execute(
                insert(devices_table),
                [
                    {
                        "account_id": account_ids[i],
                        "device_id": 1,
                        "registration_id": i + 1,
                        "token_hash": hashlib.sha256(token_of(i).encode()).digest(),
                        "name": "bench",
                        # A device that has published identity keys can be sent to.
                        "identity_curve25519": "A" * 43,
                        "identity_ed25519": "A" * 43,
                        "created_ms": now_ms,
                        "last_seen_ms": now_ms,
                    }
                    for i in indexes
                ],
            )
    await db.dispose()
    return account_ids


# --- the relay process ---------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    rss: int
    pss: int
    uss: int


def memory_of(pid: int) -> Memory:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) * 1024
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return Memory(rss=fields["Rss"], pss=fields["Pss"], uss=uss)


def cpu_seconds_of(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class Relay:
    def __init__(self, folder: Path, extra_env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "TRESEN_DATA_DIR": str(folder),
            "TRESEN_LOG_LEVEL": "warning",
            "TRESEN_LIMITS__SEND_RATE_PER_DEVICE": "1000000",
            "TRESEN_LIMITS__SEND_BURST_PER_DEVICE": "1000000",
            **extra_env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tresen", "relay", "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=None,
            preexec_fn=raise_open_files,
        )

    async def wait(self) -> None:
        await wait_for_health(self.url, within_s=30.0)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the client processes ------------------------------------------------------------------


class IdleDevice(asyncio.Protocol):
    """One device's WebSocket that stays open and idle: it answers pings, drops the rest."""

    def __init__(self, uri: str, token: str, hello: asyncio.Future[None]) -> None:
        self.uri = uri
        self.token = token
        self.hello = hello
        self.ws = ClientProtocol(parse_uri(uri), max_size=None)
        self.transport: asyncio.Transport | None = None
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        request = self.ws.connect()
        request.headers["Authorization"] = f"Bearer {self.token}"
        self.ws.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Response) and event.status_code != 101:
                self._fail(f"handshake answered {event.status_code}")
            elif isinstance(event, Frame) and event.opcode is Opcode.BINARY:
                if not self.hello.done():
                    frame = wire.decode_server_frame(bytes(event.data))
                    if isinstance(frame, wire.Hello):
                        self.open = True
                        self.hello.set_result(None)
                    else:
                        self._fail(f"first frame {type(frame).__name__}")
            elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                self._fail("closed by the relay")
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if not self.hello.done():
            self.hello.set_exception(ConnectionError(str(exc or "connection lost")))

    def _fail(self, reason: str) -> None:
        self.open = False
        if not self.hello.done():
            self.hello.set_exception(ConnectionError(reason))

    def _flush(self) -> None:
        assert self.transport is not None
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
            else:
                self.transport.close()


async def open_device(
    host: str, port: int, source: str, token: str, devices: list[IdleDevice]
) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
    except OSError:
        sock.close()
        raise
    hello: asyncio.Future[None] = loop.create_future()
    uri = f"ws://{host}:{port}/v1/ws"
    _, device = await loop.create_connection(lambda: IdleDevice(uri, token, hello), sock=sock)
    devices.append(device)
    await asyncio.wait_for(hello, 60)


async def worker(args: argparse.Namespace) -> None:
    """A client process: open its share of devices, report, hold them until stdin closes."""
    raise_open_files()
    host, port = args.url.removeprefix("http://").split(":")
    devices: list[IdleDevice] = []
    slots = asyncio.Semaphore(args.concurrency)
    failures: list[str] = []

    async def one(index: int) -> None:
        source = f"127.0.0.{2 + index % args.addresses}"
        async with slots:
            try:
                await open_device(host, int(port), source, token_of(index), devices)
            except (OSError, TimeoutError) as exc:
                failures.append(repr(exc))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(args.first, args.first + args.count)))
    opened = sum(d.open for d in devices)
    report = {
        "opened": opened,
        "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "seconds": round(time.perf_counter() - started, 3),
    }
    print(json.dumps(report), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    print(json.dumps({"still_open": sum(d.open for d in devices)}), flush=True)
    for device in devices:
        if device.transport is not None:
            device.transport.abort()


@dataclass
class Clients:
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start(
        self, url: str, shares: list[tuple[int, int]], args: argparse.Namespace
    ) -> None:
        for first, count in shares:
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--worker",
                    "--url",
                    url,
                    "--first",
                    str(first),
                    "--count",
                    str(count),
                    "--addresses",
                    str(args.addresses),
                    "--concurrency",
                    str(args.concurrency),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )

    async def reports(self) -> list[dict[str, Any]]:
        async def one(proc: asyncio.subprocess.Process) -> dict[str, Any]:
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError("a client process ended early")
            report: dict[str, Any] = json.loads(line)
            return report

        return list(await asyncio.gather(*(one(p) for p in self.procs)))

    async def stop(self) -> list[dict[str, Any]]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        reports = await self.reports()
        for proc in self.procs:
            await proc.wait()
        return reports

    def kill(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()


# --- the live probe ------------------------------------------------------------------------


async def probe(url: str, sender: str, recipient: str, recipient_account: str) -> list[float]:
    """Milliseconds from each send to its arrival at the (held) recipient."""
    ws_url = url.replace("http", "ws", 1) + "/v1/ws"

    async def connect(token: str) -> websockets.ClientConnection:
        ws = await websockets.connect(
            ws_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=None,
            compression=None,
        )
        frame = wire.decode_server_frame(await ws.recv())  # type: ignore[arg-type]
        assert isinstance(frame, wire.Hello), frame
        return ws

    tx = await connect(sender)
    rx = await connect(recipient)
    latencies: list[float] = []
    try:
        for i in range(PROBE_MESSAGES):
            sent = time.perf_counter()
            await tx.send(
                wire.encode(
                    wire.Send(
                        client_msg_id=f"probe{i}",
                        to=recipient_account,
                        per_device=[wire.DeviceCiphertext(device_id=1, type=1, body=b"probe")],
                    )
                )
            )
            while True:
                answer = wire.decode_server_frame(await asyncio.wait_for(tx.recv(), 30))  # type: ignore[arg-type]
                if isinstance(answer, wire.ErrorFrame):
                    raise RuntimeError(f"the probe's send was refused: {answer}")
                if isinstance(answer, wire.Accepted):
                    break
            while True:
                raw = await asyncio.wait_for(rx.recv(), 30)
                frame = wire.decode_server_frame(raw)  # type: ignore[arg-type]
                if isinstance(frame, wire.MessageFrame):
                    latencies.append((time.perf_counter() - sent) * 1000)
                    await rx.send(wire.encode(wire.Ack(ids=[frame.id])))
                    break
    finally:
        await tx.close()
        await rx.close()
    return latencies


# --- the run -------------------------------------------------------------------------------


def mib(n: float) -> float:
    return round(n / 1_048_576, 1)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    hard = raise_open_files()
    wanted = args.connections
    connections = min(wanted, hard - RELAY_SPARE_FDS)
    per_client = min(args.per_client, hard - RELAY_SPARE_FDS)
    clients_n = max(1, math.ceil(connections / per_client))
    base, extra = divmod(connections, clients_n)
    shares, first = [], 0
    for i in range(clients_n):
        count = base + (1 if i < extra else 0)
        shares.append((first, count))
        first += count
    extra_env = dict(kv.split("=", 1) for kv in args.relay_env)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        # Two more devices: the probe's sender and recipient.
        account_ids = await prepare_database(folder, connections + 2)
        prepare_s = time.perf_counter() - started
        relay = Relay(folder, extra_env)
        clients = Clients()
        try:
            await relay.wait()
            await asyncio.sleep(1)
            before = memory_of(relay.proc.pid)
            opening, open_cpu = time.perf_counter(), cpu_seconds_of(relay.proc.pid)
            await clients.start(relay.url, shares, args)
            opened_reports = await clients.reports()
            open_s = time.perf_counter() - opening
            open_cpu = cpu_seconds_of(relay.proc.pid) - open_cpu
            held = sum(r["opened"] for r in opened_reports)
            cpu_start = cpu_seconds_of(relay.proc.pid)
            hold_started = time.perf_counter()
            await asyncio.sleep(args.seconds)
            idle_cpu = cpu_seconds_of(relay.proc.pid) - cpu_start
            hold_s = time.perf_counter() - hold_started
            after = memory_of(relay.proc.pid)
            latencies = await probe(
                relay.url,
                token_of(connections),
                token_of(connections + 1),
                account_ids[connections + 1],
            )
            closing = await clients.stop()
            still_open = sum(r["still_open"] for r in closing)
        finally:
            clients.kill()
            relay.stop()
    failures = [r["first_failure"] for r in opened_reports if r["first_failure"]]
    per_connection = {
        name: round((getattr(after, name) - getattr(before, name)) / max(held, 1))
        for name in ("rss", "pss", "uss")
    }
    return {
        "connections_wanted": wanted,
        "open_files_hard_limit": hard,
        "connections": connections,
        "client_processes": clients_n,
        "source_addresses": args.addresses,
        "held": held,
        "failed": sum(r["failed"] for r in opened_reports),
        "first_failure": failures[0] if failures else None,
        "still_open_after_hold": still_open,
        "prepare_s": round(prepare_s, 1),
        "open_s": round(open_s, 1),
        "opens_per_s": round(held / open_s, 1),
        "relay_cpu_ms_per_open": round(1000 * open_cpu / max(held, 1), 2),
        "hold_s": round(hold_s, 1),
        "idle_cpu_percent": round(100 * idle_cpu / hold_s, 1),
        "rss_before_mib": mib(before.rss),
        "rss_after_mib": mib(after.rss),
        "pss_after_mib": mib(after.pss),
        "uss_after_mib": mib(after.uss),
        "rss_per_connection_bytes": per_connection["rss"],
        "pss_per_connection_bytes": per_connection["pss"],
        "uss_per_connection_bytes": per_connection["uss"],
        "rss_for_100k_mib_estimate": mib(before.rss + 100_000 * per_connection["rss"]),
        "probe_ms": [round(x, 2) for x in latencies],
        "probe_bound_ms": args.probe_bound_ms,
        "probe_ok": len(latencies) == PROBE_MESSAGES and max(latencies) <= args.probe_bound_ms,
        "relay_env": extra_env,
    }


def print_table(r: dict[str, Any]) -> None:
    rows = [
        ("connections held", f"{r['held']:,} of {r['connections']:,}"),
        (
            "failed to open",
            f"{r['failed']:,}" + (f" ({r['first_failure']})" if r["failed"] else ""),
        ),
        ("still open after hold", f"{r['still_open_after_hold']:,}"),
        ("client processes", f"{r['client_processes']} from {r['source_addresses']} addresses"),
        ("time to open", f"{r['open_s']} s ({r['opens_per_s']:,} /s)"),
        ("relay CPU per open", f"{r['relay_cpu_ms_per_open']} ms"),
        ("relay CPU while idle", f"{r['idle_cpu_percent']} % over {r['hold_s']} s"),
        ("relay RSS before", f"{r['rss_before_mib']} MiB"),
        ("relay RSS after", f"{r['rss_after_mib']} MiB"),
        ("relay PSS / USS after", f"{r['pss_after_mib']} / {r['uss_after_mib']} MiB"),
        ("RSS per connection", f"{r['rss_per_connection_bytes']:,} B"),
        ("USS per connection", f"{r['uss_per_connection_bytes']:,} B"),
        ("RSS at 100k (estimate)", f"{r['rss_for_100k_mib_estimate']} MiB"),
        (
            "live probe",
            f"{'ok' if r['probe_ok'] else 'FAILED'}: "
            + ", ".join(f"{x:.1f}" for x in r["probe_ms"])
            + f" ms (bound {r['probe_bound_ms']} ms)",
        ),
    ]
    if r["connections"] < r["connections_wanted"]:
        rows.insert(
            0,
            (
                "capped",
                f"{r['connections_wanted']:,} asked; open-files hard limit "
                f"{r['open_files_hard_limit']:,}",
            ),
        )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=30, help="hold them this long")
    parser.add_argument("--per-client", type=int, default=25_000, help="sockets per process")
    parser.add_argument("--addresses", type=int, default=8, help="source addresses 127.0.0.2+")
    parser.add_argument("--concurrency", type=int, default=256, help="handshakes in flight")
    parser.add_argument("--probe-bound-ms", type=float, default=1000)
    parser.add_argument(
        "--relay-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the relay, e.g. TRESEN_LIMITS__DELIVERY_POLL_S=5",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/connections.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args))
        return
    result = asyncio.run(bench(args))
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": os.uname().nodename,
                "cpus": os.cpu_count(),
                "command": " ".join(["bench/connections.py", *sys.argv[1:]]),
                "result": result,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

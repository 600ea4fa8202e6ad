"""Relay hot path: send -> store -> push -> ack -> delete, end to end over WebSocket.

Starts ``tresen relay serve`` in a child process (SQLite in a temporary folder, or PostgreSQL
in a schema of its own), registers sender/recipient pairs, and streams messages with a bounded
window of unanswered sends per sender. Prints a table and writes JSON.

With ``--reference`` the same generator runs against Tresen's relay and the minimal relay of
``bench/reference_relay.py`` in turn (Tresen, reference, Tresen, reference, ... for
``--rounds``), in a throughput configuration (``--pairs``, ``--window``) and at one pair with
window 1 for latency, and prints both side by side with the ratio Tresen/reference. The
reference relay is given its accounts and tokens directly; what is timed is identical.
``--profile`` records Tresen's relay with py-spy while its first workload runs (with
``--reference``: one extra throughput run of each relay on the first backend, left out of the
medians; the reference relay's profile is named ``*_reference``).

    .venv/bin/python bench/relay_throughput.py --pairs 8 --messages 500
    .venv/bin/python bench/relay_throughput.py --reference --pairs 32 --window 32 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import vodozemac
import websockets

from tresen.relay.accounts.sms import read_last_code
from tresen.wire import relay as wire

PG_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"
REFERENCE = Path(__file__).with_name("reference_relay.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for_health(url: str, within_s: float = 30.0) -> None:
    """Return once the relay at ``url`` answers its health check."""
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(int(within_s / 0.05)):
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/v1/health")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"the relay at {url} did not start within {within_s:.0f} s")


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
        *,
        schema: str | None = None,
    ) -> None:
        """``schema``: a PostgreSQL schema another node made already (several nodes)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sms = folder / "sms.jsonl"
        self.schema = schema or (f"bench_{secrets.token_hex(4)}" if backend == "postgres" else None)
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

    async def devices(self, count: int) -> list[Dev]:
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as http:
            return [
                await register(http, self.sms, f"+49151{70000000 + i:08d}") for i in range(count)
            ]

    async def wait(self) -> None:
        await wait_for_health(self.url)

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


class ReferenceRelay(Relay):
    """``bench/reference_relay.py`` in a child process, with ``count`` accounts made up front."""

    def __init__(self, backend: str, folder: Path, write_batch: int, count: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.schema = None  # the reference relay drops its own schema when it stops
        self.accounts = [Dev(f"ref{i:05d}", secrets.token_urlsafe(24)) for i in range(count)]
        accounts = folder / "accounts.json"
        accounts.write_text(
            json.dumps([{"account_id": d.account_id, "token": d.token} for d in self.accounts])
        )
        store = (
            ["--postgres", PG_URL.replace("+asyncpg", "")]
            if backend == "postgres"
            else ["--sqlite", str(folder / "reference.db")]
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(REFERENCE),
                "--accounts",
                str(accounts),
                *store,
                "--port",
                str(self.port),
                "--batch",
                str(write_batch),
            ],
            stdout=subprocess.DEVNULL,
            stderr=None,
        )

    async def devices(self, count: int) -> list[Dev]:
        return self.accounts[:count]


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
    rx_url: str | None = None,
    on_finished: Callable[[], None] | None = None,
) -> list[float]:
    """``sender`` streams ``count`` messages to ``recipient`` with ``window`` unanswered; the
    recipient connects to ``rx_url`` (another relay node) when given. Latencies in seconds.
    ``on_finished`` is called once the last message has arrived, before the connections
    close (the client's close handshakes are not the workload)."""
    tx = await connect(url, sender)
    rx = await connect(rx_url or url, recipient)
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
    if on_finished is not None:
        on_finished()
    events.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await events
    await tx.close()
    await rx.close()
    return latencies


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system, all threads) process ``pid`` has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU time the PostgreSQL server on this machine has used so far: every process named
    ``postgres`` (its backends, WAL writer, checkpointer, ...), and what its ended processes
    used (the postmaster's reaped children's time), so that a backend ending during a run
    keeps its time in the sum; readable by the same user or root, else 0 for that process."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        head, _, rest = text.rpartition(")")
        if head.partition(" (")[2] == "postgres":
            fields = rest.split()
            # utime, stime, and the time of its children that ended (cutime, cstime).
            used = sum(int(field) for field in fields[11:15])
            total += used / os.sysconf("SC_CLK_TCK")
    return total


def start_profile(pid: int, out: Path, *, gil: bool = False) -> subprocess.Popen[bytes]:
    """py-spy recording process ``pid`` (per thread) until it is interrupted;
    speedscope JSON for a ``.json`` file, else folded stacks. ``gil``: only samples of the
    thread that holds the GIL, i.e. where the interpreter's time goes."""
    py_spy = shutil.which("py-spy") or str(Path.home() / ".local/bin/py-spy")
    form = "speedscope" if out.suffix == ".json" else "raw"
    out.parent.mkdir(parents=True, exist_ok=True)
    # BENCH_PROFILE_RATE: samples per second; BENCH_PROFILE_NATIVE: C frames too.
    rate = os.environ.get("BENCH_PROFILE_RATE", "100")
    command = [py_spy, "record", "--pid", str(pid), "-r", rate, "--threads", "-f", form]
    if gil:
        command.append("--gil")
    if os.environ.get("BENCH_PROFILE_NATIVE"):
        command.append("--native")
    return subprocess.Popen([*command, "-o", str(out)], stdout=subprocess.DEVNULL)


def stop_profile(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)
    profiler.wait(timeout=60)


async def bench(
    backend: str,
    write_batch: int,
    pairs: int,
    messages: int,
    window: int,
    size: int,
    *,
    relay_kind: str = "tresen",
    profile: Path | None = None,
    profile_gil: bool = False,
    samples: list[float] | None = None,
) -> dict[str, object]:
    """One run; every message's latency (seconds) is also appended to ``samples``."""
    samples = [] if samples is None else samples
    with tempfile.TemporaryDirectory() as folder:
        relay = (
            ReferenceRelay(backend, Path(folder), write_batch, 2 * pairs)
            if relay_kind == "reference"
            else Relay(backend, Path(folder), write_batch)
        )
        try:
            await relay.wait()
            devs = await relay.devices(2 * pairs)
            profiler = (
                None if profile is None else start_profile(relay.proc.pid, profile, gil=profile_gil)
            )
            finished: list[float] = []
            started = time.perf_counter()
            cpu_before = cpu_seconds(relay.proc.pid)
            db_before = postgres_cpu_seconds() if backend == "postgres" else 0.0
            at_end: list[float] = []

            def on_finished() -> None:
                # CPU when the last pair is done: what the closes cost afterwards is left out.
                if len(finished) == pairs:
                    at_end.append(cpu_seconds(relay.proc.pid))
                    at_end.append(postgres_cpu_seconds() if backend == "postgres" else 0.0)

            try:
                results = await asyncio.gather(
                    *(
                        run_pair(
                            relay.url,
                            devs[2 * i],
                            devs[2 * i + 1],
                            messages,
                            window,
                            size,
                            finished,
                            on_finished=on_finished,
                        )
                        for i in range(pairs)
                    )
                )
            finally:
                if profiler is not None:
                    stop_profile(profiler)
            elapsed = max(finished) - started
            cpu = at_end[0] - cpu_before
            db_cpu = at_end[1] - db_before if backend == "postgres" else None
        finally:
            relay.stop()
            await relay.drop_schema()
    latencies = sorted(x for r in results for x in r)
    total = len(latencies)
    samples.extend(latencies)
    return {
        "relay": relay_kind,
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
        "relay_cpu_us_per_message": round(cpu / total * 1e6, 1),
        # PostgreSQL's own CPU (its server runs on the same cores); None on SQLite.
        "database_cpu_us_per_message": None if db_cpu is None else round(db_cpu / total * 1e6, 1),
    }


def compare(args: argparse.Namespace) -> dict[str, object]:
    """Tresen and the reference relay in turn, in both configurations, on every backend."""
    write_batch = int(args.write_batches.split(",")[0])
    configs = [
        ("throughput", args.pairs, args.window, args.messages),
        ("latency", 1, 1, args.latency_messages),
    ]
    runs: list[dict[str, object]] = []
    # Every message's latency of every round, per (backend, config, relay): the summary's
    # percentiles are taken over all of them. A p99 of one round of 1,000 messages is its
    # tenth-slowest message, and moved by half between rounds of the same code.
    pooled: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    backends = args.backends.split(",")
    profiled = []
    for kind in ("tresen", "reference") if args.profile else ():
        # Sampling slows a relay down: the profiled runs are runs of their own, not in the
        # medians. The reference relay's profile goes next to Tresen's, named *_reference.
        out = args.profile
        if kind == "reference":
            out = out.with_name(f"{out.stem}_reference{out.suffix}")
        row = asyncio.run(
            bench(
                backends[0],
                write_batch,
                args.pairs,
                args.messages,
                args.window,
                args.size,
                relay_kind=kind,
                profile=out,
                profile_gil=args.profile_gil,
            )
        )
        profiled.append(row | {"profile": str(out)})
        print(f"  profiled {kind}: {row['messages_per_s']} msg/s, {out}", flush=True)
    for backend in backends:
        for config, pairs, window, messages in configs:
            for round_ in range(args.rounds):
                for kind in ("tresen", "reference"):
                    row = asyncio.run(
                        bench(
                            backend,
                            write_batch,
                            pairs,
                            messages,
                            window,
                            args.size,
                            relay_kind=kind,
                            samples=pooled[backend, config, kind],
                        )
                    )
                    row |= {"config": config, "round": round_ + 1}
                    runs.append(row)
                    database = row["database_cpu_us_per_message"]
                    print(
                        f"  {backend:<9}{config:<11}{kind:<10}{row['messages_per_s']:>9} msg/s"
                        f"{row['latency_p50_ms']:>8} /{row['latency_p99_ms']:>7} ms"
                        f"{row['relay_cpu_us_per_message']:>8} cpu us/msg"
                        + ("" if database is None else f"{database:>8} db cpu us/msg"),
                        flush=True,
                    )
    summary = []
    for backend in backends:
        for config, *_ in configs:

            def median(kind: str, key: str, backend: str = backend, config: str = config) -> float:
                values = [
                    float(r[key])  # type: ignore[arg-type]
                    for r in runs
                    if (r["backend"], r["config"], r["relay"]) == (backend, config, kind)
                ]
                return round(statistics.median(values), 2)

            def percentile(
                kind: str, key: str, backend: str = backend, config: str = config
            ) -> float:
                ordered = sorted(pooled[backend, config, kind])
                if key == "latency_p50_ms":
                    return round(statistics.median(ordered) * 1000, 2)
                return round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2)

            line: dict[str, object] = {"backend": backend, "config": config}
            for key in (
                "messages_per_s",
                "latency_p50_ms",
                "latency_p99_ms",
                "relay_cpu_us_per_message",
                "database_cpu_us_per_message",
            ):
                if backend != "postgres" and key == "database_cpu_us_per_message":
                    continue
                pick = percentile if key.startswith("latency_") else median
                tresen, reference = pick("tresen", key), pick("reference", key)
                line[key] = {
                    "tresen": tresen,
                    "reference": reference,
                    "ratio": round(tresen / reference, 2),
                }
            summary.append(line)
    print(
        f"\n{'backend':<10}{'config':<12}{'msg/s T':>9}{'msg/s R':>9}{'T/R':>6}"
        f"{'p50 T':>8}{'p50 R':>8}{'T/R':>6}{'p99 T':>8}{'p99 R':>8}{'T/R':>6}"
        f"{'cpu T':>7}{'cpu R':>7}{'T/R':>6}"
    )
    for line in summary:
        cells = ""
        for key, width in (
            ("messages_per_s", 9),
            ("latency_p50_ms", 8),
            ("latency_p99_ms", 8),
            ("relay_cpu_us_per_message", 7),
        ):
            m: dict[str, float] = line[key]  # type: ignore[assignment]
            cells += f"{m['tresen']:>{width}}{m['reference']:>{width}}{m['ratio']:>6}"
        print(f"{line['backend']:<10}{line['config']:<12}{cells}")
    for line in summary:
        if "database_cpu_us_per_message" in line:
            db: dict[str, float] = line["database_cpu_us_per_message"]  # type: ignore[assignment]
            print(
                f"{line['backend']:<10}{line['config']:<12}PostgreSQL's CPU per message: "
                f"{db['tresen']} us T, {db['reference']} us R, T/R {db['ratio']}"
            )
    print(
        "T = tresen relay serve, R = bench/reference_relay.py; msg/s and cpu: medians of the "
        "rounds; p50/p99 in ms, over every message of all rounds; cpu: the relay process's CPU "
        "microseconds per message"
    )
    return {
        "rounds": args.rounds,
        "write_batch": write_batch,
        "configs": {c: {"pairs": p, "window": w, "messages": m} for c, p, w, m in configs},
        "summary": summary,
        "runs": runs,
        "profiled_runs": profiled,
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
    parser.add_argument(
        "--reference",
        action="store_true",
        help="run bench/reference_relay.py too, alternating, and print the ratios",
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --reference: runs of each")
    parser.add_argument(
        "--latency-messages", type=int, default=1000, help="with --reference: at 1 pair, window 1"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="record Tresen's relay with py-spy during its first run (.json: speedscope, "
        "else folded stacks); py-spy is not a dependency: uv tool install py-spy",
    )
    parser.add_argument(
        "--profile-gil", action="store_true", help="profile only the thread holding the GIL"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="default bench/results/relay_throughput.json, "
        "with --reference bench/results/relay_reference.json",
    )
    args = parser.parse_args()
    machine = {"machine": os.uname().nodename, "cpus": os.cpu_count()}
    if args.reference:
        out = args.out or Path("bench/results/relay_reference.json")
        result = compare(args)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**machine, **result}, indent=2) + "\n")
        print(f"written {out}")
        return
    rows: list[dict[str, object]] = []
    for backend in args.backends.split(","):
        for batch in args.write_batches.split(","):
            rows.append(
                asyncio.run(
                    bench(
                        backend,
                        int(batch),
                        args.pairs,
                        args.messages,
                        args.window,
                        args.size,
                        profile=None if rows else args.profile,
                        profile_gil=args.profile_gil,
                    )
                )
            )
    print(
        f"{'backend':<10}{'batch':>6}{'pairs':>6}{'messages':>10}{'msg/s':>10}"
        f"{'p50 ms':>10}{'p99 ms':>10}"
    )
    for r in rows:
        print(
            f"{r['backend']:<10}{r['write_batch']:>6}{r['pairs']:>6}{r['messages']:>10}"
            f"{r['messages_per_s']:>10}{r['latency_p50_ms']:>10}{r['latency_p99_ms']:>10}"
        )
    out = args.out or Path("bench/results/relay_throughput.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**machine, "results": rows}, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()

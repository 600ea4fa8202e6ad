"""Throughput of one and of two relay nodes on one PostgreSQL database and NATS.

The same generator as ``bench/relay_throughput.py`` (pairs of devices, each sender streaming
``--messages`` with ``--window`` unanswered sends, every message acked by its recipient and
its ``delivered`` receipt acked by the sender), in three layouts, in one run:

- ``1 node``: every device on one node;
- ``2 nodes, apart``: half of the pairs on each node (a sender and its recipient on the same
  node: what a load balancer gives when traffic is local);
- ``2 nodes, across``: every sender on node A, every recipient on node B (each message and
  each receipt crosses: A's commit is announced over NATS, B reads and pushes it).

Reported per layout: messages per second, latency p50/p99, and CPU per message of the relay
nodes and of the PostgreSQL server (every ``postgres`` process on this machine), the inputs of
the capacity estimate in ``docs/benchmarks.md``. On this 2-core machine the generator, the
nodes and PostgreSQL share the cores: two nodes cannot be faster than one here, and the CPU
per message is the figure that carries over to a bigger machine.

    .venv/bin/python bench/relay_nodes.py --pairs 16 --messages 300 --window 16

Prints a table and writes ``bench/results/relay_nodes.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from relay_throughput import PG_URL, Relay, cpu_seconds, run_pair

RESULTS = Path(__file__).parent / "results"
NATS_URL = "nats://127.0.0.1:4222"


def postgres_cpu_s() -> float:
    """CPU seconds of the PostgreSQL server on this machine so far: its live processes, and
    the connection processes that ended (counted in the postmaster's children's time)."""
    total = 0.0
    clock = os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            fields = (proc / "stat").read_text().rpartition(")")[2].split()
            parent = Path(f"/proc/{fields[1]}/comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        total += (int(fields[11]) + int(fields[12])) / clock
        if parent != "postgres":  # the postmaster: add its ended children
            total += (int(fields[13]) + int(fields[14])) / clock
    return total


async def layout(name: str, nodes: int, across: bool, args: argparse.Namespace) -> dict[str, Any]:
    schema = f"bench_{secrets.token_hex(4)}"
    subject = f"bench{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as folder:
        env = {
            "TRESEN_CLUSTER__NATS_URL": NATS_URL,
            "TRESEN_CLUSTER__SUBJECT": subject,
        }
        running: list[Relay] = []
        try:
            for i in range(nodes):
                node = Relay(
                    "postgres",
                    Path(folder),
                    256,
                    {**env, "TRESEN_CLUSTER__NODE_ID": f"n{i}"},
                    schema=schema,
                )
                running.append(node)
                await node.wait()  # one after the other: the first makes the schema
            devices = await running[0].devices(2 * args.pairs)
            finished: list[float] = []
            pids = [n.proc.pid for n in running]
            cpu_before = sum(cpu_seconds(p) for p in pids)
            pg_before = postgres_cpu_s()
            started = time.perf_counter()
            pairs = []
            for i in range(args.pairs):
                if across:
                    tx, rx = running[0], running[1]
                else:
                    tx = rx = running[i % nodes]
                pairs.append(
                    run_pair(
                        tx.url,
                        devices[2 * i],
                        devices[2 * i + 1],
                        args.messages,
                        args.window,
                        args.size,
                        finished,
                        rx_url=rx.url,
                    )
                )
            results = await asyncio.gather(*pairs)
            elapsed = max(finished) - started
            cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
            pg = postgres_cpu_s() - pg_before
        finally:
            for node in running:
                node.stop()
            if running:
                await running[0].drop_schema()
    latencies = sorted(x for r in results for x in r)
    total = len(latencies)
    return {
        "layout": name,
        "nodes": nodes,
        "pairs": args.pairs,
        "messages": total,
        "window": args.window,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(total / elapsed, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "latency_p99_ms": round(latencies[int(total * 0.99) - 1] * 1000, 2),
        "relay_cpu_us_per_message": round(cpu / total * 1e6, 1),
        "postgres_cpu_us_per_message": round(pg / total * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--messages", type=int, default=300, help="per pair")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--size", type=int, default=256, help="ciphertext bytes")
    parser.add_argument("--rounds", type=int, default=2, help="each layout, alternating")
    args = parser.parse_args()
    layouts = [("1 node", 1, False), ("2 nodes, apart", 2, False), ("2 nodes, across", 2, True)]
    rows: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        for name, nodes, across in layouts:
            rows.append(asyncio.run(layout(name, nodes, across, args)))
            print(f"  {name}: {rows[-1]['messages_per_s']} msg/s", flush=True)
    summary = []
    for name, _, _ in layouts:
        mine = [r for r in rows if r["layout"] == name]
        summary.append(
            {
                "layout": name,
                **{
                    key: statistics.median(r[key] for r in mine)
                    for key in (
                        "messages_per_s",
                        "latency_p50_ms",
                        "latency_p99_ms",
                        "relay_cpu_us_per_message",
                        "postgres_cpu_us_per_message",
                    )
                },
            }
        )
    header = f"{'layout':<18}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'relay µs':>10}{'pg µs':>9}"
    print(header)
    for s in summary:
        print(
            f"{s['layout']:<18}{s['messages_per_s']:>9.0f}{s['latency_p50_ms']:>9.1f}"
            f"{s['latency_p99_ms']:>9.1f}{s['relay_cpu_us_per_message']:>10.0f}"
            f"{s['postgres_cpu_us_per_message']:>9.0f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "relay_nodes.json"
    out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "database": PG_URL,
                "args": vars(args),
                "summary": summary,
                "runs": rows,
            },
            indent=2,
        )
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()

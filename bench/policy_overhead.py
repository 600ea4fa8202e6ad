"""Platform rules on the relay hot path: throughput with every rule on versus off, one run.

Each pair is a business and a customer: the customer writes first (opening the 24-hour
window), then the business streams replies over WebSocket with a bounded window of unanswered
sends, and the customer acks them. With the rules on, every send is checked for blocks, the
window, throughput and pair limits, and priced; every delivery looks up its pricing, bills and
counts. With ``TRESEN_POLICY__ENABLED=false`` the same traffic skips all of it. The runs
alternate (off, on, off, on, ...) so that drift on a shared machine hits both alike.

    .venv/bin/python bench/policy_overhead.py --pairs 8 --messages 600 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from relay_throughput import Dev, Relay, register, run_pair

# The limits are raised for both runs: the bench measures what the checks cost, not them
# refusing traffic.
ENV = {
    "TRESEN_POLICY__BUSINESS_THROUGHPUT_MPS": "1000",
    "TRESEN_POLICY__PAIR_RATE_PER_MINUTE": "10000000",
    "TRESEN_POLICY__PAIR_BURST": "10000000",
}


async def business_pair(http: httpx.AsyncClient, relay: Relay, i: int) -> tuple[Dev, Dev]:
    business = await register(http, relay.sms, f"+49151{71000000 + i:08d}")
    customer = await register(http, relay.sms, f"+49151{72000000 + i:08d}")
    r = await http.put(
        "/v1/business/profile",
        json={"display_name": f"Bench Shop {i}"},
        headers={"Authorization": f"Bearer {business.token}"},
    )
    r.raise_for_status()
    opened = await http.post(
        "/v1/messages",
        headers={"Authorization": f"Bearer {customer.token}"},
        json={
            "client_msg_id": "hello",
            "to": business.account_id,
            "per_device": [{"device_id": 1, "type": 1, "body": "aGVsbG8gc2hvcA"}],
        },
    )
    opened.raise_for_status()
    return business, customer


async def run(
    backend: str, rules: bool, pairs: int, messages: int, window: int, size: int
) -> dict[str, object]:
    env = {**ENV, "TRESEN_POLICY__ENABLED": "true" if rules else "false"}
    with tempfile.TemporaryDirectory() as folder:
        relay = Relay(backend, Path(folder), 256, env)
        try:
            await relay.wait()
            async with httpx.AsyncClient(base_url=relay.url, timeout=60) as http:
                devs = [await business_pair(http, relay, i) for i in range(pairs)]
            finished: list[float] = []
            started = time.perf_counter()
            results = await asyncio.gather(
                *(run_pair(relay.url, b, c, messages, window, size, finished) for b, c in devs)
            )
            elapsed = max(finished) - started
        finally:
            relay.stop()
            await relay.drop_schema()
    latencies = sorted(x for r in results for x in r)
    total = len(latencies)
    return {
        "backend": backend,
        "rules": "on" if rules else "off",
        "messages": total,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(total / elapsed, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "latency_p99_ms": round(latencies[int(total * 0.99) - 1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--messages", type=int, default=600, help="per pair")
    parser.add_argument("--window", type=int, default=32, help="unanswered sends per sender")
    parser.add_argument("--size", type=int, default=200, help="ciphertext bytes")
    parser.add_argument("--rounds", type=int, default=2, help="off/on runs per backend")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--out", type=Path, default=Path("bench/results/policy_overhead.json"))
    args = parser.parse_args()
    rows = []
    summary = []
    for backend in args.backends.split(","):
        runs = [
            asyncio.run(run(backend, rules, args.pairs, args.messages, args.window, args.size))
            for _ in range(args.rounds)
            for rules in (False, True)
        ]
        rows.extend(runs)
        off = statistics.median(float(r["messages_per_s"]) for r in runs if r["rules"] == "off")  # type: ignore[arg-type]
        on = statistics.median(float(r["messages_per_s"]) for r in runs if r["rules"] == "on")  # type: ignore[arg-type]
        summary.append(
            {
                "backend": backend,
                "off_msg_per_s": round(off, 1),
                "on_msg_per_s": round(on, 1),
                "overhead_pct": round((off - on) / off * 100, 1),
            }
        )
    print(f"{'backend':<10}{'rules':>6}{'messages':>10}{'msg/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for r in rows:
        print(
            f"{r['backend']:<10}{r['rules']:>6}{r['messages']:>10}{r['messages_per_s']:>10}"
            f"{r['latency_p50_ms']:>10}{r['latency_p99_ms']:>10}"
        )
    print()
    print(f"{'backend':<10}{'off msg/s':>12}{'on msg/s':>12}{'overhead':>10}")
    for s in summary:
        print(
            f"{s['backend']:<10}{s['off_msg_per_s']:>12}{s['on_msg_per_s']:>12}"
            f"{s['overhead_pct']:>9}%"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": os.uname().nodename,
                "cpus": os.cpu_count(),
                "results": rows,
                "summary": summary,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

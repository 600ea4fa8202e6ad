"""The FAQ bot's reply latency: from a customer's send to the customer's receipt of the answer.

``tresen relay serve`` and ``tresen gateway serve`` run in child processes (SQLite, or
PostgreSQL with ``--backend postgres``); the gateway runs the demo airline's bot file with the
FAQ bot on. ``--customers`` customers (``tresen.client.Client``, in this process) each ask
``--questions`` questions one after the other, each as soon as the answer to the previous one
arrived; the questions are the examples of the bot's text-answered intents. The latency of a
question is from the moment its customer's app starts sending it (encryption and the relay's
round trip included) to the moment the answer is decrypted on the customer's device: relay,
gateway receive path, the recorder's commit, the matcher, the send back, the relay again.

    .venv/bin/python bench/bot.py --customers 4 --questions 25

Prints a table and writes ``bench/results/bot.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway_api import (
    UNLIMITED_RELAY,
    drop_schema,
    free_port,
    register_gateway,
    start_gateway,
    start_relay,
    stop,
    wait_http,
)

BUSINESS_PHONE = "+4930555088000"
RESULTS = Path(__file__).parent / "results"


def percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * share))]


async def setup_gateway(folder: Path, relay_url: str, backend: str) -> tuple[str | None, list[str]]:
    """Register the gateway's device and configure its bot (the demo airline's file, the FAQ
    bot on, no greeting) before its process starts; the questions to ask."""
    from tresen.core.clock import SystemClock
    from tresen.demo import DEMO_BOT, SYSTEMS_URL
    from tresen.gateway.automation.config import AnswerKind, AutomationSettings, parse_bot_file
    from tresen.gateway.automation.store import AutomationStore
    from tresen.gateway.database import gateway_key, open_database

    settings, schema = await register_gateway(
        folder, relay_url, backend, BUSINESS_PHONE, "Bench Airline", "TRAVEL"
    )
    db = await open_database(settings)
    store = AutomationStore(db, SystemClock(), gateway_key(settings))
    bot = parse_bot_file(DEMO_BOT.read_text().replace(SYSTEMS_URL, "http://127.0.0.1:9"))
    await store.import_config(bot)
    await store.save_settings(AutomationSettings.from_json({"bot": {"mode": "faq"}}))
    await db.dispose()
    questions = [
        example
        for intent in bot.intents
        if intent.answer.kind is AnswerKind.TEXT
        for example in intent.examples
    ]
    return schema, questions


async def ask(
    relay_url: str, folder: Path, index: int, questions: list[str], count: int
) -> list[float]:
    """One customer asks ``count`` questions in turn; the latency of each answer (ms)."""
    from tresen.client import Client
    from tresen.client.events import MessageEvent
    from tresen.relay.accounts.sms import read_last_code

    phone = f"+49152{secrets.randbelow(10**3):03d}{index:05d}"
    client = Client.open(folder / phone, relay_url, key=os.urandom(32))
    latencies: list[float] = []
    try:
        await client.request_code(phone)
        code = read_last_code(folder / "sms.jsonl", phone)
        assert code is not None
        await client.register(phone, code)
        client.start()

        async def answered(question: str) -> float:
            began = time.perf_counter()
            await client.send_text(BUSINESS_PHONE, question)
            while True:
                event = await client.next_event(30)
                if isinstance(event, MessageEvent) and not event.outgoing:
                    return (time.perf_counter() - began) * 1000

        await answered(questions[index % len(questions)])  # the first: sessions are made
        for n in range(count):
            latencies.append(await answered(questions[(index * 7 + n) % len(questions)]))
    finally:
        await client.close()
    return latencies


async def measure(*, customers: int, questions: int, backend: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        relay_port, gateway_port = free_port(), free_port()
        relay_url = f"http://127.0.0.1:{relay_port}"
        relay_schema = f"bench_{secrets.token_hex(4)}" if backend == "postgres" else None
        # A customer asks far faster than people do: the business's answers would meet the
        # relay's limit of messages to one customer a minute.
        relay = start_relay(folder, relay_port, relay_schema, UNLIMITED_RELAY)
        gateway: subprocess.Popen[bytes] | None = None
        gateway_schema: str | None = None
        try:
            await wait_http(relay_url, "/v1/health")
            gateway_schema, asked = await setup_gateway(folder, relay_url, backend)
            gateway = start_gateway(folder, relay_url, BUSINESS_PHONE, gateway_port, gateway_schema)
            await wait_http(f"http://127.0.0.1:{gateway_port}", "/inbox/login")
            each = await asyncio.gather(
                *(ask(relay_url, folder, i, asked, questions) for i in range(customers))
            )
            latencies = sorted(x for one in each for x in one)
            return {
                "backend": backend,
                "customers": customers,
                "answers": len(latencies),
                "p50_ms": round(percentile(latencies, 0.50), 1),
                "p90_ms": round(percentile(latencies, 0.90), 1),
                "p99_ms": round(percentile(latencies, 0.99), 1),
                "max_ms": round(latencies[-1], 1) if latencies else None,
            }
        finally:
            if gateway is not None:
                stop(gateway)
            stop(relay)
            await drop_schema(relay_schema)
            await drop_schema(gateway_schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=4)
    parser.add_argument("--questions", type=int, default=25)
    parser.add_argument("--backends", default="sqlite", help="sqlite,postgres")
    args = parser.parse_args()
    rows = [
        asyncio.run(measure(customers=args.customers, questions=args.questions, backend=b))
        for b in args.backends.split(",")
    ]
    header = ("backend", "customers", "answers", "p50_ms", "p90_ms", "p99_ms", "max_ms")
    print(" | ".join(f"{h:>9}" for h in header))
    for row in rows:
        print(" | ".join(f"{row[h]!s:>9}" for h in header))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bot.json"
    out.write_text(json.dumps({"command": " ".join(sys.argv), "results": rows}, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()

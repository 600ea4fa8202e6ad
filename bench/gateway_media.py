"""The gateway's media: uploads, document messages by media id, and template messages with a
document header, from the Cloud API to customers who download and decrypt every file.

``tresen relay serve`` and ``tresen gateway serve`` run in child processes (SQLite);
customers (``tresen.client.Client``, in a child process of their own) each write to the
business once and opt in to its utility templates. Then this process:

1. uploads ``--messages`` distinct PDFs (``--kib`` each, a marker per passenger) with
   ``POST /v23.0/{phone_number_id}/media`` (multipart), over ``--connections`` connections;
2. sends each as a ``document`` message by its media id, round robin over the customers;
3. sends each again as a ``boarding_pass`` template with the PDF as its document header.

For each phase: requests per second, API latency p50/p99, (for 2 and 3) how long until every
customer had downloaded, verified and decrypted every file, and the CPU milliseconds per
message each process spent (gateway, relay, customers; from /proc/PID/stat). The gateway's and the
relay's resident memory (VmRSS, and the peak VmHWM) are read from /proc after each phase.

    .venv/bin/python bench/gateway_media.py --messages 300 --customers 20

Prints a table and writes ``bench/results/gateway_media.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from gateway_api import (
    BUSINESS_PHONE,
    UNLIMITED_RELAY,
    free_port,
    register_customer,
    setup_gateway,
    start_gateway,
    start_relay,
    stop,
    wait_http,
)

RESULTS = Path(__file__).parent / "results"
TEMPLATE = {
    "name": "boarding_pass",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "HEADER",
            "format": "DOCUMENT",
            "example": {"header_handle": ["https://airline.example/bp.pdf"]},
        },
        {
            "type": "BODY",
            "text": "Your boarding pass for flight {{1}} is attached.",
            "example": {"body_text": [["KL1234"]]},
        },
    ],
}


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak resident) of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def boarding_pass(i: int, kib: int) -> bytes:
    head = f"%PDF-1.4\nBT (Passenger {i:06d} seat {i % 30 + 1}A) Tj ET\n".encode()
    return head + secrets.token_bytes(max(0, kib * 1024 - len(head) - 6)) + b"%%EOF\n"


# --- customers, in a child process -----------------------------------------------------------


def customers_main(
    relay_url: str, folder: str, count: int, ready: Any, decrypted: Any, phones: Any, done: Any
) -> None:
    asyncio.run(_customers(relay_url, Path(folder), count, ready, decrypted, phones, done))


async def _customers(
    relay_url: str,
    folder: Path,
    count: int,
    ready: Any,
    decrypted: Any,
    phones: Any,
    done: Any,
) -> None:
    from tresen.client import Client
    from tresen.client.events import MessageEvent

    clients: list[Client] = []
    for i in range(count):
        phone = f"+49151{secrets.randbelow(10**3):03d}{i:05d}"
        client = await register_customer(relay_url, folder, phone)
        client.start()
        await client.send_text(BUSINESS_PHONE, "hello")
        await client.opt_in(BUSINESS_PHONE)
        clients.append(client)
        phones.put(phone)

    async def open_files(client: Client) -> None:
        async for event in client.events():
            if not isinstance(event, MessageEvent) or event.outgoing:
                continue
            try:
                path = await client.download(event)
            except ValueError:
                continue  # not a file
            path.unlink()
            with decrypted.get_lock():
                decrypted.value += 1

    tasks = [asyncio.create_task(open_files(c)) for c in clients]
    ready.set()
    while not done.is_set():
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    for client in clients:
        await client.close()


# --- the phases ------------------------------------------------------------------------------


async def run_phase(
    http: httpx.AsyncClient, requests: list[Any], connections: int
) -> tuple[float, list[float], list[Any]]:
    """Send ``requests`` (callables returning a coroutine of a response) over ``connections``
    workers; elapsed seconds, latencies and the answers in order."""
    answers: list[Any] = [None] * len(requests)
    latencies: list[float] = []
    queue = list(enumerate(requests))
    queue.reverse()

    async def worker() -> None:
        while queue:
            index, make = queue.pop()
            started = time.perf_counter()
            answers[index] = await make()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started, latencies, answers


async def wait_decrypted(decrypted: Any, target: int, started: float) -> float:
    for _ in range(6000):
        if decrypted.value >= target:
            break
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


class CpuMeter:
    """CPU milliseconds per message of the gateway, the relay and the customers' process."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: cpu_s(pid) for name, pid in pids.items()}

    def per_message(self, count: int) -> dict[str, float]:
        return {
            f"cpu_ms_{name}": round((cpu_s(pid) - self.start[name]) * 1000 / count, 1)
            for name, pid in self.pids.items()
        }


async def delivered_phase(
    http: httpx.AsyncClient,
    name: str,
    requests: list[Any],
    connections: int,
    decrypted: Any,
    pids: dict[str, int],
) -> dict[str, Any]:
    """Send one message per request and wait until the customers decrypted them all: the
    API's figures, the time until the last was decrypted and the CPU per message."""
    base = decrypted.value
    meter = CpuMeter(pids)
    started = time.perf_counter()
    elapsed, latencies, answers = await run_phase(http, requests, connections)
    check(answers)
    row = figures(name, len(requests), elapsed, latencies)
    row["all_decrypted_s"] = round(
        await wait_decrypted(decrypted, base + len(requests), started), 2
    )
    row["decrypted"] = decrypted.value - base
    row.update(meter.per_message(len(requests)))
    return row


def figures(name: str, count: int, elapsed: float, latencies: list[float]) -> dict[str, Any]:
    latencies = sorted(latencies)
    return {
        "phase": name,
        "count": count,
        "seconds": round(elapsed, 2),
        "per_s": round(count / elapsed, 1),
        "api_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "api_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
    }


@dataclass
class Platform:
    """A relay and a gateway in child processes, and the customers' process (started by the
    bench once the gateway is set up): what the media benches share."""

    folder: Path
    relay_url: str
    gateway_port: int
    token: str
    relay: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]
    crowd: Any
    ready: Any
    decrypted: Any
    phones: Any

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def node(self) -> str:
        return BUSINESS_PHONE.lstrip("+")

    def pids(self) -> dict[str, int]:
        return {
            "gateway": self.gateway.pid,
            "relay": self.relay.pid,
            "customers": self.crowd.pid or 0,
        }

    async def start_customers(self, customers: int) -> list[str]:
        """Start the customers' process; their numbers once all have written and opted in."""
        self.crowd.start()
        while not self.ready.is_set():
            await asyncio.sleep(0.1)
        return [self.phones.get().lstrip("+") for _ in range(customers)]


@contextlib.asynccontextmanager
async def media_platform(customers: int, relay_extra: dict[str, str]) -> AsyncIterator[Platform]:
    """The relay (SQLite, throughput caps lifted, ``relay_extra`` added) and the gateway
    running, the customers' process made; all stopped on the way out."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        relay_port, gateway_port = free_port(), free_port()
        relay_url = f"http://127.0.0.1:{relay_port}"
        relay = start_relay(
            folder,
            relay_port,
            None,
            {
                **UNLIMITED_RELAY,
                "TRESEN_POLICY__BUSINESS_THROUGHPUT_MPS": "100000",
                "TRESEN_POLICY__BUSINESS_THROUGHPUT_MAX_MPS": "100000",
                **relay_extra,
            },
        )
        gateway = None
        context = multiprocessing.get_context("spawn")
        done, ready = context.Event(), context.Event()
        decrypted = context.Value("q", 0)
        phones: Any = context.Queue()
        crowd = context.Process(
            target=customers_main,
            args=(relay_url, str(folder), customers, ready, decrypted, phones, done),
        )
        try:
            await wait_http(relay_url, "/v1/health")
            token, _ = await setup_gateway(folder, relay_url, "sqlite")
            gateway = start_gateway(
                folder,
                relay_url,
                BUSINESS_PHONE,
                gateway_port,
                None,
                {
                    "TRESEN_GATEWAY_API__REQUESTS_PER_SECOND": "1000000",
                    "TRESEN_GATEWAY_API__REQUEST_BURST": "1000000",
                },
            )
            await wait_http(f"http://127.0.0.1:{gateway_port}", "/docs")
            yield Platform(
                folder=folder,
                relay_url=relay_url,
                gateway_port=gateway_port,
                token=token,
                relay=relay,
                gateway=gateway,
                crowd=crowd,
                ready=ready,
                decrypted=decrypted,
                phones=phones,
            )
        finally:
            done.set()
            if crowd.is_alive():
                crowd.join(timeout=120)
            if gateway is not None:
                stop(gateway)
            stop(relay)


async def bench(messages: int, customers: int, connections: int, kib: int) -> dict[str, Any]:
    attachments = {
        "TRESEN_ATTACHMENTS__CREATIONS_PER_MINUTE": "1000000",
        "TRESEN_ATTACHMENTS__BUSINESS_CREATIONS_PER_MINUTE": "1000000",
        "TRESEN_ATTACHMENTS__MAX_UNFINISHED": "100000",
    }
    async with media_platform(customers, attachments) as running:
        node = running.node
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(
            base_url=f"{running.gateway_url}/v23.0",
            headers={"Authorization": f"Bearer {running.token}"},
            timeout=120,
            limits=limits,
        ) as http:
            await approve_template(running.folder, running.relay_url, http)
            to = await running.start_customers(customers)
            rows: list[dict[str, Any]] = []
            memory: dict[str, Any] = {}

            files = [boarding_pass(i, kib) for i in range(messages)]

            def uploader(i: int) -> Any:
                return lambda: http.post(
                    f"/{node}/media",
                    files={"file": (f"bp-{i:06d}.pdf", files[i], "application/pdf")},
                    data={"messaging_product": "whatsapp", "type": "application/pdf"},
                )

            pids = running.pids()
            meter = CpuMeter(pids)
            elapsed, latencies, answers = await run_phase(
                http, [uploader(i) for i in range(messages)], connections
            )
            ids = [a.json()["id"] for a in answers]
            rows.append(figures("upload", messages, elapsed, latencies))
            rows[-1].update(meter.per_message(messages))
            memory["after_upload"] = gateway_memory(running.gateway.pid, running.relay.pid)

            def document(i: int) -> Any:
                body = {
                    "messaging_product": "whatsapp",
                    "to": to[i % customers],
                    "type": "document",
                    "document": {"id": ids[i], "filename": f"Boarding pass {i}.pdf"},
                }
                return lambda: http.post(f"/{node}/messages", json=body)

            rows.append(
                await delivered_phase(
                    http,
                    "document by id",
                    [document(i) for i in range(messages)],
                    connections,
                    running.decrypted,
                    pids,
                )
            )
            memory["after_documents"] = gateway_memory(running.gateway.pid, running.relay.pid)

            def template(i: int) -> Any:
                body = {
                    "messaging_product": "whatsapp",
                    "to": to[i % customers],
                    "type": "template",
                    "template": {
                        "name": "boarding_pass",
                        "language": {"code": "en_US"},
                        "components": [
                            {
                                "type": "header",
                                "parameters": [{"type": "document", "document": {"id": ids[i]}}],
                            },
                            {
                                "type": "body",
                                "parameters": [{"type": "text", "text": f"KL{i:04d}"}],
                            },
                        ],
                    },
                }
                return lambda: http.post(f"/{node}/messages", json=body)

            rows.append(
                await delivered_phase(
                    http,
                    "template, document header",
                    [template(i) for i in range(messages)],
                    connections,
                    running.decrypted,
                    pids,
                )
            )
            memory["after_templates"] = gateway_memory(running.gateway.pid, running.relay.pid)
        return {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "messages": messages,
            "customers": customers,
            "connections": connections,
            "kib": kib,
            "phases": rows,
            "memory_mib": memory,
        }


def check(answers: list[Any]) -> None:
    bad = [a for a in answers if a.status_code != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} sends refused, e.g. {bad[0].text[:300]}")


def gateway_memory(gateway_pid: int, relay_pid: int) -> dict[str, Any]:
    return {"gateway": memory_mib(gateway_pid), "relay": memory_mib(relay_pid)}


async def approve_template(
    folder: Path, relay_url: str, http: httpx.AsyncClient, template: dict[str, Any] = TEMPLATE
) -> None:
    """Submit a template (the boarding-pass one) through the gateway and approve it as the
    operator does, with an operator token (``tresen admin token create``)."""
    node = BUSINESS_PHONE.lstrip("+")
    r = await http.post(f"/{node}/message_templates", json=template)
    r.raise_for_status()
    template_id = r.json()["id"]
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tresen", "admin", "token", "create", "bench"),
        *("--data-dir", str(folder / "relay")),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    token = out.decode().strip().splitlines()[-1]
    async with httpx.AsyncClient(base_url=relay_url) as relay:
        r = await relay.post(
            f"/v1/admin/templates/{template_id}/approve",
            headers={"Authorization": f"Bearer {token}"},
        )
        r.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--kib", type=int, default=40, help="size of each PDF")
    args = parser.parse_args()
    result = asyncio.run(bench(args.messages, args.customers, args.connections, args.kib))
    header = (
        "phase",
        "count",
        "s",
        "per s",
        "p50 ms",
        "p99 ms",
        "all dec s",
        "gw cpu",
        "relay",
        "cust",
    )
    print(f"{header[0]:28} " + " ".join(f"{h:>8}" for h in header[1:]))
    for row in result["phases"]:
        keys = ("count", "seconds", "per_s", "api_p50_ms", "api_p99_ms", "all_decrypted_s")
        keys += ("cpu_ms_gateway", "cpu_ms_relay", "cpu_ms_customers")
        print(f"{row['phase']:28} " + " ".join(f"{row.get(k, ''):>8}" for k in keys))
    for when, procs in result["memory_mib"].items():
        print(when, json.dumps(procs))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gateway_media.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

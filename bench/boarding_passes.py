"""Boarding passes: an airline sends each passenger a utility template whose document header is
the passenger's own PDF boarding pass, to customers who opted in, until every customer has
decrypted every pass.

``tresen relay serve`` and ``tresen gateway serve`` run in child processes (SQLite);
``--customers`` customers (``tresen.client.Client``, in a child process of their own) each
write to the airline once and opt in to its utility templates, and open every file they
receive (digest check, decryption, the file written to their attachments folder). Then:

1. this process draws ``--passengers`` distinct passes with the demo airline's generator
   (``tresen.demo_passes``: a PDF with the pass's IATA bar code as a QR code), in a pool of
   worker processes, before anything is timed (the airline's own work);
2. uploads each PDF with ``POST /v23.0/{phone_number_id}/media`` (multipart);
3. sends each passenger the approved ``boarding_pass`` template (the demo airline's) with the
   PDF as its document header and seven body values, round robin over the customers.

The goal figure is phase 3: from the first send to the last pass decrypted. For each timed
phase: requests per second, API latency, CPU milliseconds per pass of the gateway, the relay
and the customers' process (``/proc/PID/stat``), how busy the two cores were, and the
resident memory of the gateway and the relay sampled every 0.2 s during the phase (peak).

    .venv/bin/python bench/boarding_passes.py --passengers 10000 --customers 200

Prints a table and writes ``bench/results/boarding_passes.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from gateway_media import (
    CpuMeter,
    approve_template,
    figures,
    media_platform,
    memory_mib,
    wait_decrypted,
)

from tresen.demo import BOARDING_PASS_TEMPLATES
from tresen.demo_passes import BoardingPass, boarding_pass_pdf

RESULTS = Path(__file__).parent / "results"
TEMPLATE = BOARDING_PASS_TEMPLATES[0]
ROUTES = [
    ("TA100", "BER", "Berlin", "LIS", "Lisbon", "10:15", "09:40"),
    ("TA104", "BER", "Berlin", "VIE", "Vienna", "12:40", "12:05"),
    ("TA210", "MUC", "Munich", "CPH", "Copenhagen", "08:30", "07:55"),
    ("TA330", "HAM", "Hamburg", "BCN", "Barcelona", "18:55", "18:20"),
]
GIVEN = ("Anna", "Jonas", "Zoë", "Mehmet", "Lucía", "Sofia", "Piotr", "Emma", "Noah", "Ines")
FAMILY = ("Schmidt", "Weber", "Müller", "Yilmaz", "Fernández", "Rossi", "Nowak", "Jansen")


def passenger(i: int) -> BoardingPass:
    """The ``i``-th passenger's pass: every one differs (name, booking, seat, sequence)."""
    number, origin, origin_city, destination, destination_city, departs, boards = ROUTES[
        i % len(ROUTES)
    ]
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    booking = "".join(alphabet[(i * 7919 + k * 104729) // 32**k % 32] for k in range(5)) + str(
        i % 10
    )
    return BoardingPass(
        passenger=f"{GIVEN[i % len(GIVEN)]} {FAMILY[i // len(GIVEN) % len(FAMILY)]} {i:06d}",
        booking=booking,
        flight=number,
        origin=origin,
        origin_city=origin_city,
        destination=destination,
        destination_city=destination_city,
        day=date(2026, 12, 5),
        departure=departs,
        boarding=boards,
        gate=f"B{i % 40 + 1}",
        seat=f"{i // 6 % 60 + 1}{'ABCDEF'[i % 6]}",
        group=i % 4 + 1,
        sequence=i % 10_000 + 1,
    )


async def post_all(
    port: int, path: str, token: str, bodies: list[bytes], connections: int, content_type: str
) -> tuple[float, list[float], list[bytes]]:
    """POST every body over ``connections`` keep-alive connections (plain HTTP/1.1 written
    here: the load generator shares the two cores and must not be what is measured);
    elapsed seconds, latencies and the answers in order. Any answer but 200 stops the run."""
    latencies: list[float] = []
    answers: list[bytes] = [b""] * len(bodies)
    queue = list(reversed(range(len(bodies))))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {content_type}\r\n"
    ).encode()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                index = queue.pop()
                body = bodies[index]
                started = time.perf_counter()
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                answer_head = await reader.readuntil(b"\r\n\r\n")
                status = int(answer_head.split(b" ", 2)[1])
                length = 0
                for line in answer_head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                answers[index] = await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"refused ({status}): {answers[index][:300]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started, latencies, answers


def multipart(name: str, pdf: bytes, boundary: str) -> bytes:
    """The Cloud API's upload form for one PDF."""
    fields = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
        for key, value in (("messaging_product", "whatsapp"), ("type", "application/pdf"))
    )
    file_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    )
    return (fields + file_head).encode() + pdf + f"\r\n--{boundary}--\r\n".encode()


def draw(i: int) -> bytes:
    return boarding_pass_pdf(passenger(i))


class MemorySampler:
    """Peak resident memory (VmRSS) of some processes, sampled while a phase runs."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.2) -> None:
        self.pids = pids
        self.every_s = every_s
        self.peak = {name: 0.0 for name in pids}
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], memory_mib(pid)["VmRSS"])
            await asyncio.sleep(self.every_s)

    def __enter__(self) -> MemorySampler:
        self._task = asyncio.create_task(self._sample())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


def cores_busy(row: dict[str, Any], seconds: float) -> float:
    """How many of the machine's cores the three processes kept busy on average."""
    cpu_ms = sum(v for k, v in row.items() if k.startswith("cpu_ms_"))
    return round(cpu_ms * row["count"] / 1000 / seconds, 2)


async def bench(passengers: int, customers: int, connections: int) -> dict[str, Any]:
    started_drawing = time.perf_counter()
    workers = os.cpu_count() or 2
    with ProcessPoolExecutor(workers) as pool:
        pdfs = list(pool.map(draw, range(passengers), chunksize=256))
    drawing_s = time.perf_counter() - started_drawing
    sizes = sorted(len(p) for p in pdfs)
    assert len(set(pdfs)) == passengers, "every passenger's pass differs"

    async with media_platform(customers, {}) as running:
        gateway_port, token, node = running.gateway_port, running.token, running.node
        async with httpx.AsyncClient(
            base_url=f"{running.gateway_url}/v23.0",
            headers={"Authorization": f"Bearer {token}"},
            timeout=300,
        ) as http:
            await approve_template(running.folder, running.relay_url, http, TEMPLATE)
        to = await running.start_customers(customers)
        pids = running.pids()
        servers = {"gateway": running.gateway.pid, "relay": running.relay.pid}
        rows: list[dict[str, Any]] = []

        # The upload forms are made beforehand too.
        boundary = "tresen-bench-boundary"
        forms = [
            multipart(f"Boarding pass {passenger(i).booking}.pdf", pdfs[i], boundary)
            for i in range(passengers)
        ]
        meter = CpuMeter(pids)
        own_cpu = time.process_time()
        with MemorySampler(servers) as memory:
            elapsed, latencies, answers = await post_all(
                gateway_port,
                f"/v23.0/{node}/media",
                token,
                forms,
                connections,
                f"multipart/form-data; boundary={boundary}",
            )
        ids = [json.loads(a)["id"] for a in answers]
        row = figures("upload", passengers, elapsed, latencies)
        row.update(meter.per_message(passengers))
        row["cpu_ms_bench"] = round((time.process_time() - own_cpu) * 1000 / passengers, 2)
        row["cores_busy"] = cores_busy(row, elapsed)
        row["peak_rss_mib"] = dict(memory.peak)
        rows.append(row)

        def body_of(i: int) -> bytes:
            bp = passenger(i)
            values = [
                bp.passenger.split()[0],
                bp.flight,
                bp.origin,
                bp.destination,
                bp.boarding,
                bp.gate,
                bp.seat,
            ]
            document = {"id": ids[i], "filename": f"Boarding pass {bp.booking}.pdf"}
            body = {
                "messaging_product": "whatsapp",
                "to": to[i % customers],
                "type": "template",
                "template": {
                    "name": TEMPLATE["name"],
                    "language": {"code": TEMPLATE["language"]},
                    "components": [
                        {
                            "type": "header",
                            "parameters": [{"type": "document", "document": document}],
                        },
                        {
                            "type": "body",
                            "parameters": [{"type": "text", "text": v} for v in values],
                        },
                    ],
                },
            }
            return json.dumps(body).encode()

        # The bodies are made beforehand: the load generator shares the two cores.
        bodies = [body_of(i) for i in range(passengers)]
        path = f"/v23.0/{node}/messages"
        decrypted = running.decrypted
        base = decrypted.value
        meter = CpuMeter(pids)
        own_cpu = time.process_time()
        # For a profiler to attach to (py-spy record -p PID) while the sends run.
        print(f"sends start: {json.dumps(pids)}", flush=True)
        with MemorySampler(servers) as memory:
            started = time.perf_counter()
            elapsed, latencies, _ = await post_all(
                gateway_port, path, token, bodies, connections, "application/json"
            )
            all_decrypted = await wait_decrypted(decrypted, base + passengers, started)
        row = figures("boarding-pass template", passengers, elapsed, latencies)
        row["all_decrypted_s"] = round(all_decrypted, 2)
        row["decrypted"] = decrypted.value - base
        row.update(meter.per_message(passengers))
        row["cores_busy"] = cores_busy(row, all_decrypted)
        row["cpu_ms_bench"] = round((time.process_time() - own_cpu) * 1000 / passengers, 2)
        row["peak_rss_mib"] = dict(memory.peak)
        rows.append(row)
        return {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "passengers": passengers,
            "customers": customers,
            "connections": connections,
            "pdf_bytes": {
                "min": sizes[0],
                "median": sizes[len(sizes) // 2],
                "max": sizes[-1],
            },
            "drawing": {
                "seconds": round(drawing_s, 2),
                "workers": workers,
                "per_s": round(passengers / drawing_s, 1),
            },
            "phases": rows,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passengers", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    result = asyncio.run(bench(args.passengers, args.customers, args.connections))
    drawing, sizes = result["drawing"], result["pdf_bytes"]
    print(
        f"{args.passengers} passes drawn in {drawing['seconds']} s by {drawing['workers']} "
        f"workers ({drawing['per_s']}/s); PDF bytes min/median/max "
        f"{sizes['min']}/{sizes['median']}/{sizes['max']}"
    )
    header = ("phase", "count", "s", "per s", "p50 ms", "p99 ms", "all dec s")
    header += ("gw cpu", "relay", "cust", "cores", "gw MiB", "relay MiB")
    print(f"{header[0]:24} " + " ".join(f"{h:>9}" for h in header[1:]))
    for row in result["phases"]:
        keys = ("count", "seconds", "per_s", "api_p50_ms", "api_p99_ms", "all_decrypted_s")
        keys += ("cpu_ms_gateway", "cpu_ms_relay", "cpu_ms_customers", "cores_busy")
        cells = [str(row.get(k, "")) for k in keys]
        cells += [str(row["peak_rss_mib"]["gateway"]), str(row["peak_rss_mib"]["relay"])]
        print(f"{row['phase']:24} " + " ".join(f"{c:>9}" for c in cells))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "boarding_passes.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

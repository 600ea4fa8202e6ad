"""The relay's blob store for encrypted attachments: throughput and the relay's memory.

Starts ``tresen relay serve`` in a child process (SQLite in a temporary folder, or PostgreSQL
with ``--postgres``) and, as a business device (whose limits fit mass sending):

- uploads one large blob in a single streamed ``PATCH`` and downloads it streamed, reading
  the relay's resident memory (VmRSS) and its high-water mark (VmHWM) before and after: the
  body never sits in the relay's memory, so the peak grows by far less than the blob;
- uploads many small blobs (create + one ``PATCH`` each, like boarding passes) with a number
  of requests in flight, then downloads them.

Prints a table and writes JSON to ``bench/results/attachments.json``.

    .venv/bin/python bench/attachments.py --large-mib 512 --small 2000 --small-kib 50
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from relay_throughput import Relay

from tresen.relay.accounts.sms import read_last_code

PIECE = 256 * 1024
RESULTS = Path(__file__).with_name("results") / "attachments.json"


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident) of a process, in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def start_relay(folder: Path, backend: str, max_bytes: int) -> Relay:
    """The relay of ``bench/relay_throughput.py`` with room for one blob of ``max_bytes``."""
    return Relay(
        backend,
        folder,
        write_batch=256,
        extra_env={
            "TRESEN_ATTACHMENTS__MAX_DOCUMENT_BYTES": str(max_bytes),
            "TRESEN_ATTACHMENTS__BUSINESS_QUOTA_BYTES": str(8 * max_bytes),
        },
    )


async def business_device(http: httpx.AsyncClient, sms: Path) -> dict[str, str]:
    phone = f"+4915{secrets.randbelow(10**9):09d}"
    await http.post("/v1/registration/code", json={"phone": phone})
    code = read_last_code(sms, phone)
    body = (await http.post("/v1/registration/verify", json={"phone": phone, "code": code})).json()
    auth = {"Authorization": f"Bearer {body['token']}"}
    r = await http.put("/v1/business/profile", json={"display_name": "Bench Air"}, headers=auth)
    r.raise_for_status()
    return auth


async def large(http: httpx.AsyncClient, auth: dict[str, str], relay: Relay, mib: int) -> Any:
    size = mib * 1_048_576
    piece = os.urandom(PIECE)
    r = await http.post("/v1/attachments", json={"kind": "document", "size": size}, headers=auth)
    r.raise_for_status()
    attachment_id = r.json()["id"]
    before = memory_kib(relay.proc.pid)

    async def body() -> Any:
        for _ in range(size // PIECE):
            yield piece

    started = time.perf_counter()
    r = await http.patch(
        f"/v1/attachments/{attachment_id}",
        content=body(),
        headers={**auth, "Upload-Offset": "0", "Content-Length": str(size)},
    )
    upload_s = time.perf_counter() - started
    assert r.json() == {"offset": size, "complete": True}, r.text
    after_upload = memory_kib(relay.proc.pid)

    digest, received = hashlib.sha256(), 0
    started = time.perf_counter()
    async with http.stream("GET", f"/v1/attachments/{attachment_id}", headers=auth) as response:
        async for chunk in response.aiter_bytes(PIECE):
            digest.update(chunk)
            received += len(chunk)
    download_s = time.perf_counter() - started
    after_download = memory_kib(relay.proc.pid)
    assert received == size
    assert digest.digest() == hashlib.sha256(piece * (size // PIECE)).digest()
    return {
        "size_mib": mib,
        "upload_mib_s": round(mib / upload_s, 1),
        "download_mib_s": round(mib / download_s, 1),
        "rss_before_mib": round(before["VmRSS"] / 1024, 1),
        "peak_before_mib": round(before["VmHWM"] / 1024, 1),
        "peak_after_upload_mib": round(after_upload["VmHWM"] / 1024, 1),
        "peak_after_download_mib": round(after_download["VmHWM"] / 1024, 1),
    }


async def small(
    http: httpx.AsyncClient, auth: dict[str, str], count: int, kib: int, in_flight: int
) -> Any:
    blobs = [os.urandom(kib * 1024) for _ in range(min(count, 64))]
    ids: list[str] = [""] * count
    gate = asyncio.Semaphore(in_flight)

    async def one_upload(i: int) -> None:
        blob = blobs[i % len(blobs)]
        async with gate:
            r = await http.post(
                "/v1/attachments", json={"kind": "document", "size": len(blob)}, headers=auth
            )
            r.raise_for_status()
            attachment_id = r.json()["id"]
            r = await http.patch(
                f"/v1/attachments/{attachment_id}",
                content=blob,
                headers={**auth, "Upload-Offset": "0"},
            )
            assert r.json()["complete"], r.text
            ids[i] = attachment_id

    async def one_download(i: int) -> None:
        async with gate:
            r = await http.get(f"/v1/attachments/{ids[i]}", headers=auth)
            assert r.content == blobs[i % len(blobs)]

    started = time.perf_counter()
    await asyncio.gather(*(one_upload(i) for i in range(count)))
    upload_s = time.perf_counter() - started
    started = time.perf_counter()
    await asyncio.gather(*(one_download(i) for i in range(count)))
    download_s = time.perf_counter() - started
    return {
        "count": count,
        "size_kib": kib,
        "in_flight": in_flight,
        "uploads_per_s": round(count / upload_s, 1),
        "downloads_per_s": round(count / download_s, 1),
        "upload_s": round(upload_s, 2),
    }


async def run(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tresen-bench-attachments-") as folder:
        relay = start_relay(Path(folder), backend, max(args.large_mib, 1) * 1_048_576)
        try:
            await relay.wait()
            limits = httpx.Limits(max_connections=args.in_flight)
            async with httpx.AsyncClient(base_url=relay.url, timeout=600, limits=limits) as http:
                auth = await business_device(http, relay.sms)
                few = await small(http, auth, 50, args.small_kib, args.in_flight)  # warm up
                assert few["count"] == 50
                many = await small(http, auth, args.small, args.small_kib, args.in_flight)
                big = await large(http, auth, relay, args.large_mib)
        finally:
            relay.stop()
            await relay.drop_schema()
    return {"backend": backend, "large": big, "small": many}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large-mib", type=int, default=512)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--small-kib", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    results = [asyncio.run(run(args, backend)) for backend in backends]

    print("\nOne large blob, one streamed PATCH and one streamed GET")
    print(
        "| backend | MiB | up MiB/s | down MiB/s | relay RSS before | peak before | "
        "peak after up | peak after down |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        b = r["large"]
        print(
            f"| {r['backend']} | {b['size_mib']} | {b['upload_mib_s']} | {b['download_mib_s']} "
            f"| {b['rss_before_mib']} | {b['peak_before_mib']} | {b['peak_after_upload_mib']} "
            f"| {b['peak_after_download_mib']} |"
        )
    print("\nMany small blobs (POST + PATCH each; then GET each)")
    print("| backend | blobs | KiB | in flight | uploads/s | downloads/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        s = r["small"]
        print(
            f"| {r['backend']} | {s['count']} | {s['size_kib']} | {s['in_flight']} "
            f"| {s['uploads_per_s']} | {s['downloads_per_s']} |"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"runs": results}, indent=2) + "\n")
    print(f"\nwritten: {RESULTS}")


if __name__ == "__main__":
    main()

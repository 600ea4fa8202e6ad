"""Encrypted attachments: sealing and opening speed and memory, and a file's way through a
relay (encrypt, upload, send, download, verify, decrypt).

Part 1, in this process: ``encrypt_file`` and ``decrypt_file`` (which reads the blob twice:
the SHA-256 check before decrypting, then the chunks) on random files of each size, with the
peak of Python's traced memory (``tracemalloc``) during each.

Part 2 (skipped with ``--no-relay``): ``tresen relay serve`` in a child process (SQLite), two
``tresen.client.Client`` in this process; per size, the time from ``send_file`` to the sender
having sent it, and from the recipient's message event to its file decrypted on disk.

    .venv/bin/python bench/attachments_client.py --sizes 1,15,99

Prints a table and writes ``bench/results/attachments_client.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from gateway_api import free_port, start_relay, stop, wait_http

from tresen.crypto.attachments import decrypt_file, encrypt_file

RESULTS = Path(__file__).parent / "results"
MIB = 1024 * 1024


def random_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, MIB))
            f.write(block)
            left -= len(block)


def sealing(folder: Path, size: int) -> dict[str, Any]:
    source, blob, out = folder / "plain", folder / "blob", folder / "out"
    random_file(source, size)
    tracemalloc.start()
    started = time.perf_counter()
    sealed = encrypt_file(source, blob)
    sealed_s = time.perf_counter() - started
    _, seal_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    decrypt_file(blob, out, key=sealed.key, sha256=sealed.sha256)
    opened_s = time.perf_counter() - started
    _, open_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    for path in (source, blob, out):
        path.unlink()
    return {
        "size_bytes": size,
        "blob_bytes": sealed.size,
        "encrypt_s": sealed_s,
        "encrypt_mb_s": size / MIB / sealed_s,
        "decrypt_s": opened_s,
        "decrypt_mb_s": size / MIB / opened_s,
        "encrypt_peak_bytes": seal_peak,
        "decrypt_peak_bytes": open_peak,
    }


async def through_relay(folder: Path, sizes: list[int]) -> list[dict[str, Any]]:
    from tresen.client import Client
    from tresen.client.events import MessageEvent
    from tresen.relay.accounts.sms import read_last_code
    from tresen.wire.e2e import Media

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    relay = start_relay(folder, port, None)
    clients: list[Client] = []
    rows = []
    try:
        await wait_http(url, "/v1/health")
        for name, phone in (("sender", "+4915170000001"), ("recipient", "+4915170000002")):
            client = Client.open(folder / name, url)
            await client.request_code(phone)
            code = read_last_code(folder / "sms.jsonl", phone)
            assert code is not None
            await client.register(phone, code)
            client.start()
            clients.append(client)
        sender, recipient = clients
        for size in sizes:
            source = folder / f"file-{size}.pdf"
            random_file(source, size)
            started = time.perf_counter()
            await sender.send_file("+4915170000002", source)
            sent_s = time.perf_counter() - started
            async for event in recipient.events():
                if isinstance(event, MessageEvent) and isinstance(event.payload, Media):
                    break
            started = time.perf_counter()
            kept = await recipient.download(event)
            fetched_s = time.perf_counter() - started
            assert kept.stat().st_size == size
            rows.append(
                {
                    "size_bytes": size,
                    "send_s": sent_s,
                    "send_mb_s": size / MIB / sent_s,
                    "download_s": fetched_s,
                    "download_mb_s": size / MIB / fetched_s,
                }
            )
            source.unlink()
            kept.unlink()
    finally:
        for client in clients:
            await client.close()
        stop(relay)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,15,99", help="file sizes in MiB, comma-separated")
    parser.add_argument("--no-relay", action="store_true", help="only seal and open in-process")
    args = parser.parse_args()
    sizes = [int(float(s) * MIB) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="tresen-bench-") as tmp:
        folder = Path(tmp)
        local = [sealing(folder, size) for size in sizes]
        # The relay's limits: a media blob up to 16 MiB, a document up to 100 MiB.
        relayed = [] if args.no_relay else asyncio.run(through_relay(folder, sizes))
    print(f"{'size':>8} {'encrypt':>12} {'decrypt':>12} {'peak mem':>10}", end="")
    print(f" {'send':>18} {'download':>18}" if relayed else "")
    for i, row in enumerate(local):
        peak = max(row["encrypt_peak_bytes"], row["decrypt_peak_bytes"])
        line = (
            f"{row['size_bytes'] / MIB:>5.0f} MiB {row['encrypt_mb_s']:>7.0f} MB/s "
            f"{row['decrypt_mb_s']:>7.0f} MB/s {peak / 1024:>6.0f} KiB"
        )
        if relayed:
            r = relayed[i]
            line += f" {r['send_s']:>6.2f} s {r['send_mb_s']:>4.0f} MB/s"
            line += f" {r['download_s']:>6.2f} s {r['download_mb_s']:>4.0f} MB/s"
        print(line)
    RESULTS.mkdir(exist_ok=True)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "local": local,
        "through_relay": relayed,
    }
    (RESULTS / "attachments_client.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

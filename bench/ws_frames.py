"""What a WebSocket frame costs the server, by uvicorn protocol class, measured side by side.

A server in a child process runs uvicorn as ``tresen.cli.common.start_server`` configures it
(httptools, no compression) with one of these WebSocket protocols, and an ASGI app that
answers every binary message with itself:

- ``uvicorn``: uvicorn's sans-I/O protocol as it comes;
- ``queued``: :class:`tresen.cli.ws_flow.QueuedFramesProtocol` (pauses a socket only once
  several frames wait);
- ``frames``: :class:`tresen.cli.ws_flow.FramesProtocol` (that, and binary frames read and
  written without ``websockets``' parser and frame objects), which the servers use;
- ``frames-batched``: the same, with the app writing its answers as the relay's device
  connections do: a writer task writes all that waits in one system call
  (``WRITE_FRAMES_EXTENSION``).

``--connections`` clients each keep ``--window`` messages of ``--size`` bytes unanswered until
``--messages`` have come back. The server's CPU time (user and system, from ``/proc``) per
message (one frame in, one out) is the figure; the protocols take turns (A B C C B A ...) for
``--rounds`` so that a change in the machine's speed falls on all of them alike, and the
table gives medians and each protocol's ratio to uvicorn's.

    .venv/bin/python bench/ws_frames.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import websockets
from relay_throughput import cpu_seconds, free_port, wait_for_health

PROTOCOLS = ("uvicorn", "queued", "frames", "frames-batched")


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "bytes": message["bytes"]})


async def echo_batched(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """:func:`echo`, whose answers a writer task writes as the relay's connections do: all
    that waits, at once, through the scope's ``WRITE_FRAMES_EXTENSION``."""
    from tresen.core.http import WRITE_FRAMES_EXTENSION

    if scope["type"] == "http":
        await echo(scope, receive, send)
        return
    await receive()
    await send({"type": "websocket.accept"})
    write_frames = scope["extensions"][WRITE_FRAMES_EXTENSION]
    outbox: list[bytes] = []
    writer: asyncio.Task[None] | None = None

    async def write() -> None:
        nonlocal outbox, writer
        while outbox:
            frames, outbox = outbox, []
            if not write_frames(frames):
                for data in frames:
                    await send({"type": "websocket.send", "bytes": data})
        writer = None

    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        outbox.append(message["bytes"])
        if writer is None:
            writer = asyncio.create_task(write())


def serve(protocol: str, port: int) -> None:
    import uvicorn
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from tresen.cli.ws_flow import FramesProtocol, QueuedFramesProtocol

    classes = {
        "uvicorn": WebSocketsSansIOProtocol,
        "queued": QueuedFramesProtocol,
        "frames": FramesProtocol,
        "frames-batched": FramesProtocol,
    }
    config = uvicorn.Config(
        echo_batched if protocol == "frames-batched" else echo,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http="httptools",
        ws=classes[protocol],
        ws_per_message_deflate=False,
        ws_max_size=2 * 1_048_576,
    )
    asyncio.run(uvicorn.Server(config).serve())


async def client(url: str, messages: int, window: int, size: int) -> None:
    async with websockets.connect(url, compression=None, max_size=None) as ws:
        body = os.urandom(size)
        slots = asyncio.Semaphore(window)

        async def produce() -> None:
            for _ in range(messages):
                await slots.acquire()
                await ws.send(body)

        async def consume() -> None:
            for _ in range(messages):
                await ws.recv()
                slots.release()

        await asyncio.gather(produce(), consume())


async def measure(protocol: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", protocol, "--port", str(port)],
        env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        await wait_for_health(f"http://127.0.0.1:{port}/")
        url = f"ws://127.0.0.1:{port}/echo"
        # One short run first: connections, imports and caches are not what is measured.
        await asyncio.gather(*(client(url, 50, args.window, args.size) for _ in range(2)))
        cpu_before = cpu_seconds(proc.pid)
        started = time.perf_counter()
        await asyncio.gather(
            *(client(url, args.messages, args.window, args.size) for _ in range(args.connections))
        )
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(proc.pid) - cpu_before
    finally:
        proc.terminate()
        proc.wait()
    total = args.connections * args.messages
    return {
        "protocol": protocol,
        "messages": total,
        "messages_per_s": round(total / elapsed, 1),
        "server_cpu_us_per_message": round(cpu / total * 1e6, 2),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        order = PROTOCOLS if round_ % 2 == 0 else tuple(reversed(PROTOCOLS))
        for protocol in order:
            result = await measure(protocol, args)
            print(
                f"round {round_ + 1}  {protocol:<8} {result['messages_per_s']:>10} msg/s "
                f"{result['server_cpu_us_per_message']:>8} cpu us/msg",
                flush=True,
            )
            runs.append(result)
    return runs


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for protocol in PROTOCOLS:
        mine = [r for r in runs if r["protocol"] == protocol]
        rows.append(
            {
                "protocol": protocol,
                "messages_per_s": round(statistics.median(r["messages_per_s"] for r in mine), 1),
                "server_cpu_us_per_message": round(
                    statistics.median(r["server_cpu_us_per_message"] for r in mine), 2
                ),
            }
        )
    base = rows[0]["server_cpu_us_per_message"]
    for row in rows:
        row["cpu_ratio_to_uvicorn"] = round(row["server_cpu_us_per_message"] / base, 3)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=PROTOCOLS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--messages", type=int, default=2000, help="per connection")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--size", type=int, default=300, help="bytes per message")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ws_frames.json"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    runs = asyncio.run(run(args))
    rows = summarize(runs)
    print()
    print(f"{'protocol':<16}{'msg/s':>12}{'cpu us/msg':>12}{'cpu / uvicorn':>15}")
    for row in rows:
        print(
            f"{row['protocol']:<16}{row['messages_per_s']:>12}"
            f"{row['server_cpu_us_per_message']:>12}{row['cpu_ratio_to_uvicorn']:>15}"
        )
    print("medians of the rounds; cpu: the server process's CPU microseconds per message echoed")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("serve", "port", "out")}
    args.out.write_text(json.dumps({"settings": settings, "results": rows, "runs": runs}, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

"""Two relay nodes on one PostgreSQL database and NATS: a message stored by one node reaches
a device connected to the other at once (not at its next mailbox poll), and a node killed
mid-stream loses nothing that was accepted and delivers nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cluster_support import Balancer, cluster_or_skip, new_subject
from gateway_support import next_of
from support import Backend, RelayProcess, free_port, registered_client

from tresen.client import Client
from tresen.client.api import RelayError
from tresen.client.events import MessageEvent
from tresen.core.errors import ErrorCode
from tresen.core.http import tls_context
from tresen.relay.policy.service import CACHE_TTL_S
from tresen.wire.e2e import Text

pytestmark = pytest.mark.slow

POLL_S = 60
"""The nodes' mailbox poll: far longer than any delivery the test waits for."""


async def test_two_nodes_deliver_across_at_once_and_survive_a_node_killed(
    backend: Backend, tmp_path: Path
) -> None:
    nats_url = cluster_or_skip(backend.name)
    shared = {
        "TRESEN_CLUSTER__NATS_URL": nats_url,
        "TRESEN_CLUSTER__SUBJECT": new_subject(),
        "TRESEN_DATA_DIR": str(tmp_path / "data"),
        "TRESEN_SMS_FILE": str(tmp_path / "sms.jsonl"),
        "TRESEN_LIMITS__DELIVERY_POLL_S": str(POLL_S),
    }
    node_a = RelayProcess(backend, tmp_path / "a", TRESEN_CLUSTER__NODE_ID="a", **shared)
    node_b = RelayProcess(backend, tmp_path / "b", TRESEN_CLUSTER__NODE_ID="b", **shared)
    balancer = Balancer([node_a.port, node_b.port])
    people: list[Client] = []
    try:
        await node_a.start()  # first alone: it makes the operator's key the other reads
        await node_b.start()
        await balancer.start()
        sms = tmp_path / "sms.jsonl"
        # Ana reaches the platform through the balancer (node a while it lives); Ben is on b.
        ana = await registered_client(balancer.url, sms, tmp_path / "ana", "+4915111110001")
        ben = await registered_client(node_b.url, sms, tmp_path / "ben", "+4915111110002")
        people += [ana, ben]
        assert ben.account_id is not None
        ana.start()
        ben.start()
        await ana.send(ben.account_id, Text(text="hello"))
        assert (await next_of(ben, MessageEvent)).payload == Text(text="hello")
        assert set(balancer.chosen) == {node_a.port}

        # Across nodes at once: node b hears of each commit of node a.
        took = []
        for i in range(20):
            started = time.perf_counter()
            await ana.send(ben.account_id, Text(text=f"quick {i}"))
            got = await next_of(ben, MessageEvent, within_s=POLL_S / 2)
            took.append(time.perf_counter() - started)
            assert got.payload == Text(text=f"quick {i}")
        assert statistics.median(took) < 0.1, took
        assert max(took) < 5, took  # none waited for a poll

        # A block made on node b stops Ana's sends through node a within milliseconds,
        # although node a had cached, for CACHE_TTL_S, that Ben blocks nobody.
        assert ana.account_id is not None
        await ben.block(ana.account_id)
        before_refused = 0
        blocked_at = time.perf_counter()
        refused: RelayError | None = None
        while refused is None:
            try:
                await ana.send(ben.account_id, Text(text="still there?"))
                before_refused += 1
            except RelayError as exc:
                refused = exc
            assert time.perf_counter() - blocked_at < CACHE_TTL_S / 2, "not told of the block"
        assert refused.code == ErrorCode.UNDELIVERABLE
        await ben.unblock(ana.account_id)
        for _ in range(before_refused):
            assert (await next_of(ben, MessageEvent)).payload == Text(text="still there?")

        # Node a is killed mid-stream: Ana's app reconnects through the balancer to node b,
        # sends again what was not answered, and Ben's app holds every message once.
        texts = [f"stream {i}" for i in range(60)]

        async def stream() -> None:
            for text in texts:
                await ana.send(ben.account_id or "", Text(text=text))

        sending = asyncio.create_task(stream())
        seen: list[str] = []
        while len(seen) < 15:
            event = await next_of(ben, MessageEvent)
            seen.append(event.payload.text)
        node_a.kill()
        await sending
        while set(seen) < set(texts):
            event = await next_of(ben, MessageEvent, within_s=30)
            seen.append(event.payload.text)
        assert sorted(seen) == sorted(texts)  # each once
        assert node_b.port in balancer.chosen
        held = [m for m in ben.store.messages(ana.account_id or "") if not m.outgoing]
        assert len(held) == 1 + 20 + before_refused + len(texts)
    finally:
        for person in people:
            await person.close()
        await balancer.close()
        node_a.stop()
        node_b.stop()


async def test_serve_nodes_starts_several_nodes_and_stops_them_together(
    backend: Backend, tmp_path: Path
) -> None:
    nats_url = cluster_or_skip(backend.name)
    port = free_port(2)
    env = {
        **os.environ,
        "TRESEN_DATA_DIR": str(tmp_path / "data"),
        "TRESEN_CLUSTER__SUBJECT": new_subject(),
        "TRESEN_DATABASE_SCHEMA": backend.schema or "",
    }
    command = [sys.executable, "-m", "tresen", "relay", "serve", "--nodes", "2"]
    command += ["--port", str(port), "--nats", nats_url, "--database-url", backend.url]
    log = tmp_path / "nodes.log"
    with log.open("wb") as out:
        parent = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(
            verify=tls_context(),
        ) as http:
            for node in (port, port + 1):
                for _ in range(600):
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"http://127.0.0.1:{node}/v1/health")).is_success:
                            break
                    assert parent.poll() is None, log.read_text()
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail(f"node on port {node} did not start")
        parent.terminate()
        assert parent.wait(timeout=30) == 0
        for node in (port, port + 1):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", node), timeout=1).close()
    finally:
        if parent.poll() is None:
            parent.kill()

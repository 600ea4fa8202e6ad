"""Several relay nodes for tests: a NATS server to reach, and a TCP load balancer in front of
the nodes that sends each new connection to the first node that accepts it (as a load
balancer with health checks does once a node is gone)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket

import pytest

NATS_URL = "nats://127.0.0.1:4222"
REQUIRE_NATS = os.environ.get("TRESEN_REQUIRE_NATS") == "1"


def cluster_or_skip(backend_name: str) -> str:
    """The NATS server's URL for nodes on ``backend_name``: the test skips on SQLite (nodes
    share PostgreSQL) and without NATS (or fails where NATS is required)."""
    if backend_name != "postgres":
        pytest.skip("relay nodes share a PostgreSQL database")
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=1).close()
    except OSError:
        if REQUIRE_NATS:
            pytest.fail("NATS at 127.0.0.1:4222 is required (TRESEN_REQUIRE_NATS=1)")
        pytest.skip("NATS is not reachable at 127.0.0.1:4222")
    return NATS_URL


def new_subject() -> str:
    """A subject prefix of one test's nodes, apart from every other test's."""
    return f"test{secrets.token_hex(4)}"


class Balancer:
    """Forwards each connection on its own port to the first of ``ports`` that accepts it."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.server: asyncio.Server | None = None
        self.port = 0
        self._pipes: set[asyncio.Task[None]] = set()
        self.chosen: list[int] = []
        """The node port of every connection forwarded, in order."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for port in self.ports:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.chosen.append(port)
            for a, b in ((reader, up_writer), (up_reader, writer)):
                task = asyncio.create_task(self._pipe(a, b))
                self._pipes.add(task)
                task.add_done_callback(self._pipes.discard)
            return
        writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()

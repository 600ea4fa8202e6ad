"""A minimal durable relay that speaks Tresen's frames: the floor Tresen's relay is measured by.

It does the work of Tresen's hot path and nothing else: a ``send`` is stored (one mailbox row
for the recipient) and answered ``accepted`` once its transaction is committed, then pushed
to the recipient as a ``message``; the recipient's ``ack`` deletes the row and stores a
``delivered`` row for the sender in the same transaction, which is pushed and deleted on the
sender's ack. A device that connects first gets what is stored for it, then ``queue_empty``.
All writes of all connections share one group commit (up to ``--batch`` operations per
transaction). Accounts have one device and come from a file (``[{"account_id", "token"}]``);
there are no platform rules, duplicate checks, message records or registration.

    .venv/bin/python bench/reference_relay.py --accounts accounts.json --sqlite ref.db
    .venv/bin/python bench/reference_relay.py --accounts accounts.json \\
        --postgres postgresql://root@127.0.0.1:5432/test --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from tresen.wire import relay as wire

MESSAGE, DELIVERED = 0, 1


class Row(NamedTuple):
    """One mailbox entry; ``peer`` is the sender of a message, the recipient of a receipt."""

    seq: int
    account: str
    kind: int
    message_id: str
    peer: str
    payload: bytes
    server_ms: int


COLUMNS = "seq, account, kind, message_id, peer, payload, server_ms"


class SqliteStore:
    """One connection in WAL mode with ``synchronous=FULL``; each batch runs in a thread."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS mailbox (seq INTEGER PRIMARY KEY, account TEXT NOT NULL,"
            " kind INTEGER NOT NULL, message_id TEXT NOT NULL, peer TEXT NOT NULL,"
            " payload BLOB NOT NULL, server_ms INTEGER NOT NULL)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS mailbox_account ON mailbox (account, seq)")

    async def last_seq(self) -> int:
        return int(self.db.execute("SELECT coalesce(max(seq), 0) FROM mailbox").fetchone()[0])

    async def apply(self, batch: Batch) -> None:
        await asyncio.to_thread(self._apply, batch)

    def _apply(self, batch: Batch) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(f"INSERT INTO mailbox ({COLUMNS}) VALUES (?,?,?,?,?,?,?)", batch.rows)
            for account, seqs in batch.acks:
                marks = ",".join("?" * len(seqs))
                deleted = db.execute(
                    f"DELETE FROM mailbox WHERE account = ? AND seq IN ({marks})"
                    f" RETURNING {COLUMNS}",
                    (account, *seqs),
                )
                batch.deleted += map(Row._make, deleted)
            db.executemany(
                f"INSERT INTO mailbox ({COLUMNS}) VALUES (?,?,?,?,?,?,?)", batch.receipts()
            )
            for account in batch.fetches:
                rows = db.execute(
                    f"SELECT {COLUMNS} FROM mailbox WHERE account = ? ORDER BY seq", (account,)
                )
                batch.fetched.append([Row._make(r) for r in rows])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        self.db.close()


class PostgresStore:
    """One asyncpg connection in a schema of its own, dropped on close."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.schema = f"reference_{secrets.token_hex(4)}"

    async def last_seq(self) -> int:
        self.conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
        await self.conn.execute(
            f'CREATE SCHEMA "{self.schema}"; SET search_path TO "{self.schema}";'
            "CREATE TABLE mailbox (seq bigint PRIMARY KEY, account text NOT NULL,"
            " kind smallint NOT NULL, message_id text NOT NULL, peer text NOT NULL,"
            " payload bytea NOT NULL, server_ms bigint NOT NULL);"
            "CREATE INDEX mailbox_account ON mailbox (account, seq)"
        )
        return 0

    async def apply(self, batch: Batch) -> None:
        conn = self.conn
        insert = f"INSERT INTO mailbox ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        async with conn.transaction():
            if batch.rows:
                await conn.executemany(insert, batch.rows)
            if batch.acks:
                pairs = [(account, seq) for account, seqs in batch.acks for seq in seqs]
                deleted = await conn.fetch(
                    "DELETE FROM mailbox m USING unnest($1::text[], $2::bigint[]) a(account, seq)"
                    " WHERE m.account = a.account AND m.seq = a.seq RETURNING m.*",
                    [a for a, _ in pairs],
                    [s for _, s in pairs],
                )
                batch.deleted += (Row(*r) for r in deleted)
            receipts = batch.receipts()
            if receipts:
                await conn.executemany(insert, receipts)
            for account in batch.fetches:
                rows = await conn.fetch(
                    f"SELECT {COLUMNS} FROM mailbox WHERE account = $1 ORDER BY seq", account
                )
                batch.fetched.append([Row(*r) for r in rows])

    async def close(self) -> None:
        await self.conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')
        await self.conn.close()


class Batch:
    """What one transaction writes and reads, and what it deleted and found."""

    def __init__(self, relay: ReferenceRelay, now: int) -> None:
        self.relay, self.now = relay, now
        self.rows: list[Row] = []
        self.acks: list[tuple[str, list[int]]] = []
        self.fetches: list[str] = []
        self.deleted: list[Row] = []
        self.fetched: list[list[Row]] = []
        self.stored_receipts: list[Row] = []

    def receipts(self) -> list[Row]:
        """A ``delivered`` row for the sender of every message row this batch deleted."""
        self.stored_receipts = [
            Row(self.relay.next_seq(), r.peer, DELIVERED, r.message_id, r.account, b"", self.now)
            for r in self.deleted
            if r.kind == MESSAGE
        ]
        return self.stored_receipts


def frame_of(row: Row) -> wire.ServerFrame:
    if row.kind == MESSAGE:
        return wire.MessageFrame(
            id=row.seq,
            message_id=row.message_id,
            sender=row.peer,
            sender_device=1,
            type=1,
            body=row.payload,
            server_ms=row.server_ms,
        )
    return wire.Delivered(
        id=row.seq,
        message_id=row.message_id,
        recipient=row.peer,
        recipient_device=1,
        server_ms=row.server_ms,
    )


class Connection:
    """One device's socket: frames wait in an outbox that one writer task drains."""

    def __init__(self, websocket: WebSocket, account: str) -> None:
        self.websocket, self.account = websocket, account
        self.outbox: deque[bytes] = deque()
        self.ready = asyncio.Event()
        self.cursor = 0  # the last seq sent on this connection
        self.live = False  # pushes start once the stored backlog has been sent

    def send(self, frame: wire.ServerFrame) -> None:
        self.outbox.append(wire.encode(frame))
        self.ready.set()

    def push(self, row: Row) -> None:
        if self.live and row.seq > self.cursor:
            self.cursor = row.seq
            self.send(frame_of(row))

    def backlog(self, rows: list[Row]) -> None:
        self.live = True
        for row in rows:
            self.push(row)
        self.send(wire.QueueEmpty())

    async def write_loop(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.outbox:
                await self.websocket.send_bytes(self.outbox.popleft())


Op = tuple[str, Connection, Any]


class ReferenceRelay:
    def __init__(self, store: SqliteStore | PostgresStore, tokens: dict[str, str], batch: int):
        self.store, self.tokens, self.max_batch = store, tokens, batch
        self.connections: dict[str, Connection] = {}
        self.queue: asyncio.Queue[Op] = asyncio.Queue(50_000)
        self.seq = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def write_loop(self) -> None:
        while True:
            ops = [await self.queue.get()]
            while len(ops) < self.max_batch and not self.queue.empty():
                ops.append(self.queue.get_nowait())
            batch = Batch(self, int(time.time() * 1000))
            sent: list[tuple[Connection, str, Row]] = []
            for kind, conn, arg in ops:
                if kind == "send":
                    seq = self.next_seq()
                    body = arg.per_device[0].body
                    row = Row(seq, arg.to, MESSAGE, f"m{seq}", conn.account, body, batch.now)
                    batch.rows.append(row)
                    sent.append((conn, arg.client_msg_id, row))
                elif kind == "ack":
                    batch.acks.append((conn.account, arg))
                else:
                    batch.fetches.append(conn.account)
            try:
                await self.store.apply(batch)
            except Exception as exc:
                for conn, client_msg_id, _ in sent:
                    conn.send(
                        wire.ErrorFrame(code=500, message=repr(exc), client_msg_id=client_msg_id)
                    )
                continue
            for conn, client_msg_id, row in sent:
                conn.send(
                    wire.Accepted(
                        client_msg_id=client_msg_id,
                        message_id=row.message_id,
                        server_ms=row.server_ms,
                    )
                )
                self.push(row)
            for row in batch.stored_receipts:
                self.push(row)
            fetching = (conn for kind, conn, _ in ops if kind == "fetch")
            for conn, rows in zip(fetching, batch.fetched, strict=True):
                conn.backlog(rows)

    def push(self, row: Row) -> None:
        conn = self.connections.get(row.account)
        if conn is not None:
            conn.push(row)

    async def device_socket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        token = (websocket.headers.get("authorization") or "").removeprefix("Bearer ")
        account = self.tokens.get(token)
        if account is None:
            await websocket.close(4401, "unauthorized")
            return
        conn = Connection(websocket, account)
        self.connections[account] = conn
        conn.send(wire.Hello(account_id=account, device_id=1, server_ms=int(time.time() * 1000)))
        writer = asyncio.create_task(conn.write_loop())
        await self.queue.put(("fetch", conn, None))
        try:
            async for raw in websocket.iter_bytes():
                try:
                    frame = wire.decode_client_frame(raw)
                except msgspec.DecodeError as exc:
                    conn.send(wire.ErrorFrame(code=100, message=str(exc)))
                    continue
                if isinstance(frame, wire.Send):
                    await self.queue.put(("send", conn, frame))
                elif isinstance(frame, wire.Ack):
                    await self.queue.put(("ack", conn, frame.ids))
                elif isinstance(frame, wire.Ping):
                    conn.send(wire.Pong(nonce=frame.nonce))
        except (WebSocketDisconnect, WebSocketDisconnected):
            pass  # the device went away (or its socket failed while being written to)
        finally:
            writer.cancel()
            if self.connections.get(account) is conn:
                del self.connections[account]

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.seq = await self.store.last_seq()
        writer = asyncio.create_task(self.write_loop())
        try:
            yield
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await self.store.close()


async def health(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=Path, required=True, help='[{"account_id","token"}]')
    parser.add_argument("--sqlite", help="database file")
    parser.add_argument("--postgres", help="asyncpg DSN; a schema of its own, dropped at exit")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--batch", type=int, default=256, help="operations per transaction")
    args = parser.parse_args()
    store = PostgresStore(args.postgres) if args.postgres else SqliteStore(args.sqlite)
    tokens = {a["token"]: a["account_id"] for a in json.loads(args.accounts.read_text())}
    relay = ReferenceRelay(store, tokens, args.batch)
    app = Starlette(
        routes=[Route("/v1/health", health), WebSocketRoute("/v1/ws", relay.device_socket)],
        lifespan=relay.lifespan,
    )
    # The WebSocket settings of `tresen relay serve` (tresen.cli.common.start_server).
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="asyncio",
        http="httptools",
        ws_max_size=2 * 1_048_576,
        ws_per_message_deflate=False,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        ws_max_queue=4,
    )
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()

"""Test support: databases on both backends, an in-process relay server, WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import websockets
from sqlalchemy import MetaData, select

from tresen.cli.ws_flow import FramesProtocol
from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.http import tls_context
from tresen.core.settings import Settings
from tresen.relay.accounts.sms import read_last_code
from tresen.relay.app import build_app
from tresen.relay.context import RelayContext
from tresen.wire import relay as wire
from tresen.wire.e2e import Button, Interactive, InteractiveKind, ListRow, ListSection

PG_URL = os.environ.get("TRESEN_TEST_PG_URL", "postgresql+asyncpg://root@127.0.0.1:5432/test")
PG_DSN = PG_URL.replace("+asyncpg", "", 1)
PG_HOSTPORT = ("127.0.0.1", 5432)


def postgres_reachable() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(PG_HOSTPORT, timeout=1):
        return True
    return False


def free_port(count: int = 1) -> int:
    """A port that is free, with the ``count - 1`` after it, for a process to bind later.

    Taken from below the range the system hands out on its own: any socket of another test
    (a connection's local end included) may be given a port in that range between this
    check and the bind, and that made a relay process fail to start now and then."""
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")
    lowest = int(ephemeral.read_text().split()[0]) if ephemeral.exists() else 32_768
    for _ in range(200):
        port = random.randrange(max(1_024, lowest - 12_000), lowest - count)
        with contextlib.ExitStack() as stack:
            try:
                for candidate in range(port, port + count):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no {count} free ports in a row")


@dataclass
class Backend:
    """A fresh, empty database on one backend; ``url``/``schema`` configure a relay for it."""

    name: str
    url: str
    schema: str | None = None

    def database(self) -> Database:
        return Database(self.url, schema=self.schema, sqlite_synchronous="NORMAL")

    def settings_overrides(self) -> dict[str, Any]:
        return {"database_url": self.url, "database_schema": self.schema}


async def drop_schema(schema: str) -> None:
    db = Database(PG_URL)
    async with db.write() as conn:
        await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await db.dispose()


def new_schema_name() -> str:
    return f"t_{secrets.token_hex(6)}"


class SchemaPool:
    """PostgreSQL schemas that a relay or a gateway migrated to the newest revision, emptied
    after their test and handed to the next one in this test process.

    Migrating a new schema costs a few hundred milliseconds of DDL, emptying one a few: a test
    that serves a relay or a gateway starts from the same empty tables either way. A schema
    whose revision or tables are not what the component's migrations make is dropped instead.
    """

    def __init__(self) -> None:
        self._free: dict[str, list[str]] = {}
        self._tables: dict[str, set[str]] = {}

    def take(self, component: str) -> str:
        free = self._free.get(component)
        return free.pop() if free else new_schema_name()

    async def give_back(self, component: str, schema: str) -> None:
        import asyncpg

        if component == "relay":
            from tresen.relay.migrate import head_revision
        else:
            from tresen.gateway.migrate import head_revision
        connection = await asyncpg.connect(PG_DSN)
        try:
            tables = {
                r[0]
                for r in await connection.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
                )
            }
            revision = None
            if "alembic_version" in tables:
                revision = await connection.fetchval(
                    f'SELECT version_num FROM "{schema}".alembic_version'
                )
            known = self._tables.setdefault(component, tables)
            if revision != head_revision() or tables != known:
                await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                return
            sequences = [
                r[0]
                for r in await connection.fetch(
                    "SELECT sequencename FROM pg_sequences WHERE schemaname = $1", schema
                )
            ]
            async with connection.transaction():
                # Rows go in any order: foreign keys and triggers are not checked while
                # the tables are emptied.
                await connection.execute("SET LOCAL session_replication_role = replica")
                await connection.execute(
                    ";".join(
                        f'DELETE FROM "{schema}"."{table}"'
                        for table in sorted(tables - {"alembic_version"})
                    )
                )
                if sequences:
                    await connection.execute(
                        ";".join(f'ALTER SEQUENCE "{schema}"."{s}" RESTART' for s in sequences)
                    )
        finally:
            await connection.close()
        self._free.setdefault(component, []).append(schema)

    async def drop_all(self) -> None:
        """Drop every schema kept (when the test process ends)."""
        for schemas in self._free.values():
            while schemas:
                await drop_schema(schemas.pop())


SCHEMAS = SchemaPool()


class SqliteTemplates:
    """SQLite databases that a relay's or a gateway's migrations made once in this test
    process, copied for each test that serves one: what :class:`SchemaPool` is on PostgreSQL.
    Migrating a new file costs about a tenth of a second, copying one well under a
    millisecond; the relay or gateway then finds its schema at the newest revision."""

    def __init__(self) -> None:
        self._files: dict[str, Path] = {}

    def copy_to(self, component: str, target: Path) -> None:
        """Put a migrated database at ``target``, unless a database is there already."""
        if target.exists():
            return
        template = self._files.get(component)
        if template is None:
            template = self._files[component] = self._migrate(component)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, target)

    def remove_all(self) -> None:
        for template in self._files.values():
            shutil.rmtree(template.parent, ignore_errors=True)
        self._files.clear()

    @staticmethod
    def _migrate(component: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"tresen-{component}-")) / f"{component}.db"

        async def migrate() -> None:
            if component == "relay":
                from tresen.relay.migrate import upgrade
            else:
                from tresen.gateway.migrate import upgrade
            db = Database(f"sqlite+aiosqlite:///{path}", sqlite_synchronous="NORMAL")
            try:
                await upgrade(db)
            finally:
                await db.dispose()

        # Called from inside the test's event loop: the migration runs on a loop of its own.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, migrate()).result()
        leftovers = sorted(p.name for p in path.parent.iterdir() if p != path)
        assert not leftovers, f"the template left {leftovers} beside it"
        return path


SQLITE_TEMPLATES = SqliteTemplates()


@dataclass
class Device:
    """A registered device with its token; opens WebSocket connections."""

    phone: str
    account_id: str
    device_id: int
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class RunningRelay:
    ctx: RelayContext
    url: str
    sms_file: Path
    http: httpx.AsyncClient
    _phones: int = field(default=0)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/ws"

    def next_phone(self) -> str:
        self._phones += 1
        return f"+49151{secrets.randbelow(10**4):04d}{self._phones:04d}"

    async def register(self, phone: str | None = None, device_name: str = "") -> Device:
        phone = phone or self.next_phone()
        r = await self.http.post("/v1/registration/code", json={"phone": phone})
        assert r.status_code == 202, r.text
        code = read_last_code(self.sms_file, phone)
        assert code is not None
        r = await self.http.post(
            "/v1/registration/verify",
            json={"phone": phone, "code": code, "device_name": device_name},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        return Device(phone, body["account_id"], body["device_id"], body["token"])

    async def connect(self, device: Device) -> WsClient:
        ws = await websockets.connect(self.ws_url, additional_headers=device.auth, max_size=None)
        client = WsClient(ws)
        hello = await client.expect(wire.Hello)
        client.hello = hello
        return client


class WsClient:
    """A raw protocol client: encodes frames and waits for typed ones."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.hello: wire.Hello | None = None
        self.backlog: list[wire.ServerFrame] = []

    async def send(self, frame: wire.Frame) -> None:
        await self.ws.send(wire.encode(frame))

    async def send_raw(self, raw: bytes | str) -> None:
        await self.ws.send(raw)

    async def recv(self, timeout: float = 10) -> wire.ServerFrame:
        if self.backlog:
            return self.backlog.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, bytes), raw
        return wire.decode_server_frame(raw)

    async def expect(self, kind: type[Any], timeout: float = 10) -> Any:
        """The next frame of ``kind``; other frames are kept for later ``recv`` calls."""
        kept: list[wire.ServerFrame] = []
        for i, frame in enumerate(self.backlog):
            if isinstance(frame, kind):
                del self.backlog[i]
                return frame
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.backlog.extend(kept)
                raise TimeoutError(f"no {kind.__name__} frame within {timeout}s")
            raw = await asyncio.wait_for(self.ws.recv(), remaining)
            assert isinstance(raw, bytes)
            frame = wire.decode_server_frame(raw)
            if isinstance(frame, kind):
                self.backlog.extend(kept)
                return frame
            kept.append(frame)

    async def drain(self, *, ack: bool = False, timeout: float = 30) -> list[str]:
        """The message ids of every message frame up to ``queue_empty``, acked if asked."""
        received: list[str] = []
        while True:
            frame = await self.recv(timeout=timeout)
            if isinstance(frame, wire.QueueEmpty):
                return received
            if isinstance(frame, wire.KeysLow):
                continue
            assert isinstance(frame, wire.MessageFrame), frame
            received.append(frame.message_id)
            if ack:
                await self.send(wire.Ack(ids=[frame.id]))

    async def close(self) -> None:
        await self.ws.close()


class SendStream:
    """``sender`` sends numbered ciphertexts to the account ``to`` (``total`` of them, or until
    stopped) while the relay's ``accepted`` answers are collected: client message id → the
    relay's message id. With ``ahead``, it stays at most that many sends ahead of the answers."""

    def __init__(
        self, sender: WsClient, to: str, *, total: int | None = None, ahead: int | None = None
    ) -> None:
        self.sender = sender
        self.to = to
        self.total = total
        self.ahead = ahead
        self.accepted: dict[str, str] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._pump()), asyncio.create_task(self._collect())]

    async def until_accepted(self, count: int) -> None:
        while len(self.accepted) < count:
            await asyncio.sleep(0.002)
            collecting = self._tasks[1]
            assert not collecting.done(), collecting

    async def stop(self) -> None:
        """Stop sending and collecting (the connection may already be gone)."""
        self._stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._tasks[0], 10)
        self._tasks[1].cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.sender.close()

    async def _pump(self) -> None:
        i = 0
        while not self._stop.is_set() and (self.total is None or i < self.total):
            frame = wire.Send(
                client_msg_id=f"m{i}",
                to=self.to,
                per_device=[wire.DeviceCiphertext(device_id=1, type=1, body=f"c{i}".encode())],
            )
            await self.sender.ws.send(wire.encode(frame))
            i += 1
            if self.ahead is not None and i - len(self.accepted) > self.ahead:
                await asyncio.sleep(0.005)

    async def _collect(self) -> None:
        while True:
            frame = wire.decode_server_frame(await self.sender.ws.recv())  # type: ignore[arg-type]
            if isinstance(frame, wire.Accepted):
                self.accepted[frame.client_msg_id] = frame.message_id


MakeRelay = Callable[..., AbstractAsyncContextManager["RunningRelay"]]


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, *, lifespan: str = "on", **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port inside the running event loop; yields its
    base URL, and stops the server when the block ends (``lifespan`` "off" for a bare ASGI
    callable). WebSockets are served as the servers serve them (``FramesProtocol``);
    ``config`` adds uvicorn settings."""
    port = free_port()
    server = _PromptServer(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan=lifespan,
            timeout_graceful_shutdown=3,  # streams left open (the inbox's live pages) end then
            **({"ws": FramesProtocol, "ws_per_message_deflate": False} | config),
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        await task


class _PromptServer(uvicorn.Server):
    """uvicorn's server, stopping as soon as asked rather than at its next tick (every 0.1 s):
    the suite starts and stops a few thousand servers."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._stopping.set()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter += 10  # a tick with a multiple of 10 refreshes the Date header
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 1.0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop listening, ask every connection to close and wait until they have (checking
        every few milliseconds, where uvicorn waits at least 0.1 s), cancel what is still
        running after ``timeout_graceful_shutdown``, then run the application's shutdown."""
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.config.timeout_graceful_shutdown or 0)
        while self.server_state.connections or self.server_state.tasks:
            if loop.time() >= deadline:
                for task in self.server_state.tasks:
                    task.cancel()
                # A connection that did not close when asked is cut: the listening socket's
                # wait_closed would wait for it for good.
                for connection in list(self.server_state.connections):
                    transport = getattr(connection, "transport", None)
                    if transport is not None:
                        transport.abort()
                break
            await asyncio.sleep(0.005)
        for server in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 3)
        await self.lifespan.shutdown()


@contextlib.asynccontextmanager
async def serve_until_stopped(app: Any) -> AsyncIterator[str]:
    """``serve_asgi`` for a bare ASGI callable whose slow handlers wait on its ``stop`` event:
    the event is set when the block ends, so that the server can stop."""
    async with serve_asgi(app, lifespan="off") as base:
        try:
            yield base
        finally:
            app.stop.set()


@contextlib.asynccontextmanager
async def serve_relay(
    backend: Backend, tmp_path: Path, *, clock: Clock | None = None, **overrides: Any
) -> AsyncIterator[RunningRelay]:
    """A relay on a free port inside the running event loop."""
    sms_file = tmp_path / f"sms-{secrets.token_hex(4)}.jsonl"
    limits = dict(overrides.pop("limits", {}))
    # Every test client registers from 127.0.0.1; per-address throttling has its own test.
    limits.setdefault("code_requests_per_address", 10_000)
    # A look-up of a peer whose keys are not published yet publishes an epoch at once.
    transparency = {"min_interval_s": 0, **overrides.pop("transparency", {})}
    settings = Settings(
        data_dir=tmp_path,
        sms_sender="file",
        sms_file=sms_file,
        limits=limits,
        transparency=transparency,
        **backend.settings_overrides(),
        **overrides,
    )
    app = build_app(settings, clock=clock, db=backend.database())
    async with (
        serve_asgi(app) as url,
        httpx.AsyncClient(verify=tls_context(), base_url=url, timeout=30) as http,
    ):
        yield RunningRelay(app.state.relay, url, sms_file, http)


async def publish_identity(relay: RunningRelay | httpx.AsyncClient, device: Device) -> Any:
    """Give ``device`` real identity keys so that it can receive ciphertext; returns the
    vodozemac account that holds them."""
    import vodozemac

    account = vodozemac.Account()
    http = relay if isinstance(relay, httpx.AsyncClient) else relay.http
    r = await http.put(
        "/v1/keys",
        headers=device.auth,
        json={
            "identity_keys": {
                "curve25519": account.curve25519_key.to_base64(),
                "ed25519": account.ed25519_key.to_base64(),
            }
        },
    )
    assert r.status_code == 200, r.text
    return account


async def receiving_device(relay: RunningRelay, phone: str | None = None) -> Device:
    device = await relay.register(phone)
    await publish_identity(relay, device)
    return device


def send_frame(
    to: Device, client_msg_id: str, bodies: dict[int, bytes], **fields: Any
) -> wire.Send:
    return wire.Send(
        client_msg_id=client_msg_id,
        to=to.account_id,
        per_device=[
            wire.DeviceCiphertext(device_id=d, type=1, body=b) for d, b in sorted(bodies.items())
        ],
        **fields,
    )


async def stored_envelopes(relay: RunningRelay) -> int:
    """How many mailbox entries the relay's database holds."""
    from sqlalchemy import func, select

    from tresen.relay.schema import mailbox

    async with relay.ctx.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(mailbox))).scalar_one())


# --- key directory (relay/keys) --------------------------------------------------------------


def make_key_bundle(
    account: Any, n: int = 0, *, identity: bool = True, fallback: bool = True
) -> dict[str, Any]:
    """A ``PUT /v1/keys`` body from a real ``vodozemac.Account``.

    ``n`` fresh one-time keys and (with ``fallback``) a new fallback key, each signed with the
    account's Ed25519 key in the relay's format; the keys are then marked as published.
    """
    from tresen.wire.keys import fallback_key_message, one_time_key_message

    def signed(key_id: str, key: Any, message: Callable[[str, str], bytes]) -> dict[str, str]:
        public_key = key.to_base64()
        signature = account.sign(message(key_id, public_key)).to_base64()
        return {"key_id": key_id, "public_key": public_key, "signature": signature}

    body: dict[str, Any] = {}
    if identity:
        body["identity_keys"] = {
            "curve25519": account.curve25519_key.to_base64(),
            "ed25519": account.ed25519_key.to_base64(),
        }
    if n:
        account.generate_one_time_keys(n)
        body["one_time_keys"] = [
            signed(key_id, key, one_time_key_message)
            for key_id, key in account.one_time_keys.items()
        ]
    if fallback:
        account.generate_fallback_key()
        [(key_id, key)] = account.fallback_key.items()
        body["fallback_key"] = signed(key_id, key, fallback_key_message)
    account.mark_keys_as_published()
    return body


async def upload_keys(
    relay: RunningRelay, device: Device, account: Any, n: int = 0, *, fallback: bool = True
) -> dict[str, Any]:
    """Publish ``account``'s identity keys, ``n`` one-time keys and a fallback key."""
    r = await relay.http.put(
        "/v1/keys", json=make_key_bundle(account, n, fallback=fallback), headers=device.auth
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


class RelayProcess:
    """``python -m tresen relay serve`` in a child process."""

    def __init__(self, backend: Backend, tmp_path: Path, **env: str) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.backend = backend
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sms_file = tmp_path / "sms.jsonl"
        self.log_file = tmp_path / "relay.log"
        self.env = {
            **os.environ,
            "TRESEN_SMS_SENDER": "file",
            "TRESEN_SMS_FILE": str(self.sms_file),
            "TRESEN_DATA_DIR": str(tmp_path / "data"),
            "TRESEN_DATABASE_URL": backend.url,
            "TRESEN_LIMITS__CODE_REQUESTS_PER_ADDRESS": "1000",
            "TRESEN_LIMITS__SEND_RATE_PER_DEVICE": "100000",
            "TRESEN_LIMITS__SEND_BURST_PER_DEVICE": "100000",
        }
        if backend.schema:
            self.env["TRESEN_DATABASE_SCHEMA"] = backend.schema
        self.env.update(env)
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tresen", "relay", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        async with httpx.AsyncClient(verify=tls_context(), base_url=self.url) as http:
            for _ in range(300):
                if self.process.poll() is not None:
                    raise RuntimeError(self.log_file.read_text())
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/v1/health")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise RuntimeError("relay did not start:\n" + self.log_file.read_text())

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    async def mailbox_payloads(self) -> list[tuple[int, bytes]]:
        """(olm type, ciphertext) of every stored envelope, oldest first."""
        from sqlalchemy import select

        from tresen.relay.schema import mailbox

        rows = await _query(
            self.backend,
            select(mailbox.c.olm_type, mailbox.c.payload)
            .where(mailbox.c.kind == 0)
            .order_by(mailbox.c.seq),
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def replace_identity_keys(
        self, account_id: str, device_id: int, curve25519: str, ed25519: str
    ) -> None:
        """Swap a device's identity keys in the relay's directory, as an attacker would who
        also has the swap logged (so clients see a changed key rather than a key the log does
        not vouch for; tests/client/test_transparency.py has the unlogged kind)."""
        from sqlalchemy import insert, update

        from tresen.relay.schema import devices, kt_pending_accounts

        await _query(
            self.backend,
            update(devices)
            .where(devices.c.account_id == account_id, devices.c.device_id == device_id)
            .values(identity_curve25519=curve25519, identity_ed25519=ed25519),
        )
        await _query(
            self.backend, insert(kt_pending_accounts).values(account_id=account_id, queued_ms=0)
        )

    async def raw_socket(self, client: Any) -> websockets.ClientConnection:
        """A protocol-level connection with the token of ``client`` (to forge frames)."""
        ws = await websockets.connect(
            self.url.replace("http", "ws", 1) + "/v1/ws",
            additional_headers={"Authorization": f"Bearer {client.api.token}"},
        )
        await ws.recv()  # hello
        return ws


async def register_device(http: httpx.AsyncClient, sms_file: Path, phone: str) -> Device:
    """Register ``phone`` on the relay ``http`` talks to (its codes written to ``sms_file``)."""
    r = await http.post("/v1/registration/code", json={"phone": phone})
    assert r.status_code == 202, r.text
    code = read_last_code(sms_file, phone)
    r = await http.post("/v1/registration/verify", json={"phone": phone, "code": code})
    assert r.status_code == 200, r.text
    body = r.json()
    return Device(phone, body["account_id"], body["device_id"], body["token"])


async def connect_device(url: str, device: Device) -> WsClient:
    """A raw protocol connection of ``device`` to the relay at ``url``, past its hello."""
    ws = await websockets.connect(
        url.replace("http", "ws", 1) + "/v1/ws", additional_headers=device.auth
    )
    client = WsClient(ws)
    client.hello = await client.expect(wire.Hello)
    return client


async def registered_client(
    relay_url: str, sms_file: Path, data_dir: Path, phone: str, **options: Any
) -> Any:
    """A ``tresen.client.Client`` registered (and its keys published) for ``phone``."""
    from tresen.client import Client

    client = Client.open(data_dir, relay_url, **options)
    await client.request_code(phone)
    code = read_last_code(sms_file, phone)
    assert code is not None
    await client.register(phone, code)
    return client


async def _query(backend: Backend, statement: Any) -> list[Any]:
    db = backend.database()
    try:
        async with db.write() as conn:
            result = await conn.execute(statement)
            return list(result.all()) if result.returns_rows else []
    finally:
        await db.dispose()


# --- templates (relay/templates) ----------------------------------------------------------

# A utility template in the Cloud API shape with a parameter in every kind of component.
ORDER_SHIPPED: dict[str, Any] = {
    "name": "order_shipped",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "HEADER",
            "format": "TEXT",
            "text": "Order {{1}}",
            "example": {"header_text": ["#1"]},
        },
        {
            "type": "BODY",
            "text": "Hi {{1}}, your order ships on {{2}}.",
            "example": {"body_text": [["Anna", "Monday"]]},
        },
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {
            "type": "BUTTONS",
            "buttons": [
                {
                    "type": "URL",
                    "text": "Track",
                    "url": "https://shop.example/o/{{1}}",
                    "example": ["1"],
                }
            ],
        },
    ],
}


# --- interactive messages (client, tui and chat tests) ----------------------------------------

# A utility template with a URL button and two quick replies.
DELIVERY_TOMORROW: dict[str, Any] = {
    "name": "delivery_tomorrow",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "BODY",
            "text": "Your parcel {{1}} arrives tomorrow.",
            "example": {"body_text": [["#4711"]]},
        },
        {
            "type": "BUTTONS",
            "buttons": [
                {
                    "type": "URL",
                    "text": "Track",
                    "url": "https://shop.example/o/{{1}}",
                    "example": ["1"],
                },
                {"type": "QUICK_REPLY", "text": "Leave with neighbour"},
                {"type": "QUICK_REPLY", "text": "Stop updates"},
            ],
        },
    ],
}

YES_NO = Interactive(
    type=InteractiveKind.BUTTON,
    header="Parcel #4711",
    body="May we leave it with a neighbour?",
    footer="Tresen Versand",
    buttons=[Button(id="yes", title="Yes"), Button(id="no", title="No, keep it")],
)
SLOTS = Interactive(
    type=InteractiveKind.LIST,
    body="When shall we come?",
    button="Pick a slot",
    sections=[
        ListSection(
            title="Tomorrow",
            rows=[
                ListRow(id="am", title="Morning", description="8 am to noon"),
                ListRow(id="pm", title="Afternoon"),
            ],
        ),
        ListSection(title="Friday", rows=[ListRow(id="fri", title="All day")]),
    ],
)


async def relay_database_bytes(backend: Backend) -> bytes:
    """Everything the relay's database holds, as bytes (to search for plaintext)."""
    if backend.name == "sqlite":
        path = Path(backend.url.split("///", 1)[1])
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    db = backend.database()
    dump: list[bytes] = []
    try:
        async with db.read() as conn:
            tables = MetaData(schema=backend.schema)
            await conn.run_sync(lambda sync: tables.reflect(sync))
            for table in tables.sorted_tables:
                for row in await conn.execute(select(table)):
                    for value in row:
                        dump.append(value if isinstance(value, bytes) else str(value).encode())
    finally:
        await db.dispose()
    return b"\n".join(dump)


# --- S3-compatible blob storage (relay/attachments) ------------------------------------------

S3_KEYS = {"access_key_id": "test-access-key", "secret_access_key": "test-secret-key-never-logged"}


class S3Server:
    """moto's S3-compatible server (``python -m moto.server``) in a child process on a free
    port: the relay talks to it over HTTP as to any S3 endpoint."""

    def __init__(self, log_file: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import time

        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self.log_file.read_text())
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise RuntimeError("the S3 server did not start:\n" + self.log_file.read_text())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def client(self) -> Any:
        """A synchronous boto3 client, to look into buckets from a test."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["access_key_id"],
            aws_secret_access_key=S3_KEYS["secret_access_key"],
        )

    def new_bucket(self) -> str:
        bucket = f"tresen-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def settings(self, bucket: str, **overrides: Any) -> dict[str, Any]:
        """``attachments`` settings that keep blobs in ``bucket`` on this server."""
        return {
            "storage": "s3",
            "s3": {
                "endpoint_url": self.url,
                "bucket": bucket,
                "path_style": True,
                **S3_KEYS,
                **overrides,
            },
        }

    def held(self, bucket: str) -> list[str]:
        """Every key in ``bucket``, and ``upload:<key>`` for each multipart upload in
        progress."""
        client = self.client()
        keys = [
            item["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])
        ]
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted(keys + [f"upload:{u['Key']}" for u in uploads])

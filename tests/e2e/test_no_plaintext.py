"""The relay never stores or logs what people write.

1,000 messages carry random markers end to end; afterwards the relay's database (the SQLite
file with its WAL, or every PostgreSQL table) and its log output are searched for each marker.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select
from support import Backend, RelayProcess, registered_client

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.wire.e2e import Text

pytestmark = pytest.mark.slow

MESSAGES = 1000


async def receive(client: Client, count: int) -> list[str]:
    texts: list[str] = []
    async for event in client.events():
        if isinstance(event, MessageEvent) and isinstance(event.payload, Text):
            texts.append(event.payload.text)
            if len(texts) == count:
                return texts
    raise AssertionError("event stream ended")


async def relay_database_bytes(backend: Backend) -> bytes:
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


async def test_no_marker_reaches_the_relays_storage_or_logs(
    backend: Backend, tmp_path: Path
) -> None:
    relay = RelayProcess(backend, tmp_path / "relay", TRESEN_LOG_LEVEL="debug")
    await relay.start()
    try:
        alice = await registered_client(relay.url, relay.sms_file, tmp_path / "a", "+4915110000001")
        bob = await registered_client(relay.url, relay.sms_file, tmp_path / "b", "+4915110000002")
        markers = [f"mk{secrets.token_hex(10)}" for _ in range(MESSAGES)]
        half = MESSAGES // 2
        alice.start()
        bob.start()
        at_bob = asyncio.create_task(receive(bob, half))
        at_alice = asyncio.create_task(receive(alice, MESSAGES - half))
        for marker in markers[:half]:
            await alice.send_text("+4915110000002", f"Your order {marker} is on its way")
        for marker in markers[half:]:
            await bob.send_text("+4915110000001", f"Thanks, {marker} received")
        received = await asyncio.wait_for(asyncio.gather(at_bob, at_alice), 120)
        # The markers did travel: each side decrypted exactly what was sent.
        assert [t.split()[2] for t in received[0]] == markers[:half]
        assert [t.split()[1] for t in received[1]] == markers[half:]
        await alice.close()
        await bob.close()
    finally:
        relay.stop()

    stored = await relay_database_bytes(backend)
    logs = relay.log_file.read_bytes()
    # The search works: the relay does store account ids and phone numbers in the clear.
    assert alice.account_id is not None
    assert alice.account_id.encode() in stored
    assert b"+4915110000001" in stored
    assert alice.account_id.encode() in logs
    found = [m for m in markers if m.encode() in stored or m.encode() in logs]
    assert found == []

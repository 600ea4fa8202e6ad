"""``tresen relay backup`` and ``restore``: a backup taken while messages stream in, restored
into a fresh folder (or schema), delivers every message accepted before it began, once; a
restore refuses what it must not overwrite or cannot use, and says what to do."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from support import (
    PG_URL,
    Backend,
    RelayProcess,
    RunningRelay,
    SendStream,
    connect_device,
    drop_schema,
    new_schema_name,
    publish_identity,
    register_device,
)

from tresen.core.http import tls_context

pytestmark = pytest.mark.slow


async def tresen(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """``python -m tresen ARGS`` in a child process: its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tresen",
        *args,
        env={**os.environ, "COLUMNS": "200", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


def relay_env(backend: Backend, data_dir: Path) -> dict[str, str]:
    env = {"TRESEN_DATA_DIR": str(data_dir), "TRESEN_DATABASE_URL": backend.url}
    if backend.schema:
        env["TRESEN_DATABASE_SCHEMA"] = backend.schema
    return env


@contextlib.asynccontextmanager
async def fresh_target(backend: Backend, folder: Path) -> AsyncIterator[Backend]:
    """An empty database on ``backend``'s kind beside the one under test (dropped after)."""
    if backend.name == "sqlite":
        yield Backend("sqlite", f"sqlite+aiosqlite:///{folder / 'relay.db'}")
        return
    schema = new_schema_name()
    try:
        yield Backend("postgres", PG_URL, schema)
    finally:
        await drop_schema(schema)


async def test_messages_accepted_before_a_backup_under_load_are_delivered_after_restore(
    relay_process: RelayProcess, backend: Backend, tmp_path: Path
) -> None:
    await relay_process.start()
    async with httpx.AsyncClient(
        verify=tls_context(), base_url=relay_process.url, timeout=30
    ) as http:
        alice = await register_device(http, relay_process.sms_file, "+4915110000001")
        bob = await register_device(http, relay_process.sms_file, "+4915110000002")
        await publish_identity(http, alice)
        await publish_identity(http, bob)
        # An attachment Alice uploaded: its blob is a file in the relay's data folder.
        blob = os.urandom(100_000)
        r = await http.post(
            "/v1/attachments", json={"kind": "document", "size": len(blob)}, headers=alice.auth
        )
        assert r.status_code == 201, r.text
        attachment = r.json()["id"]
        r = await http.patch(
            f"/v1/attachments/{attachment}",
            content=blob,
            headers={
                **alice.auth,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert r.json()["complete"], r.text

    # Alice streams messages to Bob, who is offline.
    sender = await connect_device(relay_process.url, alice)
    stream = SendStream(sender, bob.account_id, ahead=200)
    accepted = stream.accepted
    stream.start()
    await stream.until_accepted(200)

    archive = tmp_path / "relay-backup.tar.gz"
    before = set(accepted.values())
    code, out = await tresen(
        "relay",
        "backup",
        "--to",
        str(archive),
        "--with-key",
        env=relay_env(backend, tmp_path / "relay" / "data"),
    )
    assert code == 0, out
    during = len(accepted) - len(before)
    await stream.stop()
    relay_process.stop()
    assert during > 0, "the relay accepted nothing while the backup ran"
    assert "relay backup written" in out

    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[0] == "manifest.json"
    assert "key/key" in names
    assert any(name.startswith("files/attachments/") for name in names)

    async with fresh_target(backend, tmp_path / "restored") as target:
        env = relay_env(target, tmp_path / "restored" / "data")
        code, out = await tresen("relay", "restore", "--from", str(archive), env=env)
        assert code == 0, out
        assert "restored" in out

        restored = RelayProcess(target, tmp_path / "restored")
        try:
            await restored.start()
            receiver = await connect_device(restored.url, bob)
            received = await receiver.drain(ack=True)
            await receiver.close()
            async with httpx.AsyncClient(
                verify=tls_context(), base_url=restored.url, timeout=30
            ) as http:
                r = await http.get(f"/v1/attachments/{attachment}", headers=bob.auth)
                assert r.status_code == 200, r.text
                assert r.content == blob
        finally:
            restored.stop()
    lost = before - set(received)
    assert not lost, f"{len(lost)} messages accepted before the backup were lost"
    assert len(received) == len(set(received)), "a message was delivered twice"
    assert set(received) <= set(accepted.values())


async def test_a_restore_refuses_a_target_that_holds_data(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    await relay.register()
    archive = tmp_path / "backup.tar"
    env = relay_env(backend, tmp_path)
    code, out = await tresen("relay", "backup", "--to", str(archive), env=env)
    assert code == 0, out
    assert "not in the archive" in out  # the key stays out unless asked for

    code, out = await tresen("relay", "restore", "--from", str(archive), env=env)
    assert code == 1
    assert "restore_target_not_empty" in out
    assert "--force" in out


async def test_a_restore_without_the_key_says_where_the_key_must_go(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    await relay.register()
    archive = tmp_path / "backup.tar"
    code, out = await tresen(
        "relay", "backup", "--to", str(archive), env=relay_env(backend, tmp_path)
    )
    assert code == 0, out

    async with fresh_target(backend, tmp_path / "restored") as target:
        data_dir = tmp_path / "restored" / "data"
        env = relay_env(target, data_dir)
        code, out = await tresen("relay", "restore", "--from", str(archive), env=env)
        assert code == 1
        assert "restore_key_missing" in out
        assert str(data_dir / "operator.key") in out
        assert "--with-key" in out

        # With the old relay's key in place, the restored relay opens its signing key.
        (data_dir / "operator.key").write_bytes((tmp_path / "operator.key").read_bytes())
        (data_dir / "operator.key").chmod(0o600)
        code, out = await tresen("relay", "restore", "--from", str(archive), "--force", env=env)
        assert code == 0, out


async def test_a_restore_refuses_another_backend_and_a_damaged_archive(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    archive = tmp_path / "backup.tar"
    code, out = await tresen(
        "relay", "backup", "--to", str(archive), env=relay_env(backend, tmp_path)
    )
    assert code == 0, out

    other = (
        Backend("postgres", PG_URL, new_schema_name())
        if backend.name == "sqlite"
        else Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'other' / 'relay.db'}")
    )
    env = relay_env(other, tmp_path / "other")
    code, out = await tresen("relay", "restore", "--from", str(archive), env=env)
    assert code == 1
    assert "backup_backend" in out
    assert not (tmp_path / "other" / "relay.db").exists()

    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    code, out = await tresen("relay", "restore", "--from", str(damaged), env=env)
    assert code == 1
    assert "restore failed" in out

    code, out = await tresen("relay", "restore", "--from", str(tmp_path / "none.tar"), env=env)
    assert code == 1
    assert "backup_missing" in out

"""Key transparency: what publishing epochs costs the relay, and what a look-up costs a client.

Three phases, each in its own process so that its peak memory is its own:

- ``build``: a fresh relay database (migrated) gets ``--accounts`` simulated accounts queued
  at once, and the relay publishes epochs until all are logged (``transparency.max_batch``
  changes per epoch, 100,000 by default): the initial build of the log and the map.
- ``incremental``: ``--changes`` of those accounts change their device set (half of them) or
  are new (the other half), and the relay publishes one epoch on top.
- ``lookups``: ``--lookups`` random accounts are looked up as the key directory answers them
  (the relay's time), their proofs are encoded as on the wire (bytes), and checked as a client
  checks them (signature, map proof, inclusion proof; the client's time).

Device sets are simulated (one device with random keys per account, from the account id):
the relay's read of its ``devices`` table is replaced, everything else is the relay's own
code and SQL. SQLite by default, in a temporary folder; ``--database-url`` for PostgreSQL.

    .venv/bin/python bench/transparency.py --accounts 1000000 --changes 10000 --lookups 1000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import SystemClock
from tresen.core.db import Database
from tresen.core.settings import TransparencySettings
from tresen.crypto.certificates import KeyRing, OperatorKey
from tresen.crypto.encoding import b64, unb64
from tresen.crypto.transparency import (
    DeviceEntry,
    DevicesLeaf,
    MapProof,
    SignedEpoch,
    account_key,
    encode_leaf,
    hashes_of,
    log_leaf_hash,
    map_value,
    verify_epoch,
    verify_inclusion,
    verify_map_proof,
)
from tresen.relay import migrate
from tresen.relay.schema import kt_pending_accounts
from tresen.relay.transparency import repo
from tresen.relay.transparency.models import lookup_public
from tresen.relay.transparency.service import TransparencyService

KEY_FILE = "operator-key.bin"


def account_id(i: int) -> str:
    return hashlib.sha256(b"bench-account" + i.to_bytes(8, "big")).hexdigest()[:32]


def device_of(account: str, generation: int) -> DeviceEntry:
    seed = hashlib.sha512(f"{account}:{generation}".encode()).digest()
    return DeviceEntry(1, b64(seed[:32]), b64(seed[32:]))


class BenchSigner:
    """The operator's signing as ``OperatorService.sign_document`` does it, with a key in a
    file (the bench has no sealed key store)."""

    def __init__(self, key: OperatorKey) -> None:
        self.key = key

    async def sign_document(
        self, prefix: bytes, make_body: Callable[[str], bytes], *, conn: AsyncConnection
    ) -> tuple[bytes, str, str]:
        body = make_body(self.key.key_id)
        return body, self.key.key_id, self.key.sign(prefix + body)


def simulate_devices(generation: dict[str, int]) -> None:
    """Replace the relay's read of its devices table with simulated device sets."""

    async def device_sets(
        _conn: AsyncConnection, account_ids: Sequence[str]
    ) -> dict[str, list[DeviceEntry]]:
        return {a: [device_of(a, generation.get(a, 0))] for a in account_ids}

    repo.device_sets = device_sets  # type: ignore[assignment]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_parts(args: argparse.Namespace) -> tuple[Database, TransparencyService, OperatorKey]:
    url = args.database_url or f"sqlite+aiosqlite:///{args.data_dir / 'relay.db'}"
    db = Database(url, sqlite_synchronous="NORMAL", schema=args.database_schema)
    key = OperatorKey.from_private_bytes((args.data_dir / KEY_FILE).read_bytes())
    settings = TransparencySettings(max_batch=args.batch)
    return db, TransparencyService(db, SystemClock(), settings, BenchSigner(key)), key


async def queue(db: Database, accounts: Sequence[str]) -> None:
    async with db.write() as conn:
        for start in range(0, len(accounts), 50_000):
            await conn.execute(
                insert(kt_pending_accounts),
                [{"account_id": a, "queued_ms": 1} for a in accounts[start : start + 50_000]],
            )


async def build(args: argparse.Namespace) -> dict[str, Any]:
    (args.data_dir / KEY_FILE).write_bytes(OperatorKey.generate().private_bytes())
    db, service, _ = open_parts(args)
    if args.database_schema:
        await db.ensure_schema(args.database_schema)
    await migrate.upgrade(db)
    simulate_devices({})
    await queue(db, [account_id(i) for i in range(args.accounts)])
    epochs = []
    started, cpu = time.perf_counter(), time.process_time()
    while True:
        t = time.perf_counter()
        epoch = await service.publish(force=not epochs)
        if epoch is None:
            break
        epochs.append(time.perf_counter() - t)
        async with db.read() as conn:
            if not await repo.count_pending(conn):
                break
    result = {
        "accounts": args.accounts,
        "epochs": len(epochs),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "slowest_epoch_s": max(epochs),
        "peak_rss_mib": peak_rss_mib(),
    }
    await db.dispose()
    return result


async def incremental(args: argparse.Namespace) -> dict[str, Any]:
    db, service, _ = open_parts(args)
    rng = random.Random(7)
    changed = [account_id(i) for i in rng.sample(range(args.accounts), args.changes // 2)]
    new = [account_id(args.accounts + i) for i in range(args.changes - len(changed))]
    simulate_devices(dict.fromkeys(changed, 1))
    await queue(db, changed + new)
    rss_before = peak_rss_mib()
    started, cpu = time.perf_counter(), time.process_time()
    epoch = await service.publish()
    assert epoch is not None
    result = {
        "changes": args.changes,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss_before,
        "tree_size": epoch.head.tree_size,
    }
    await db.dispose()
    return result


async def lookups(args: argparse.Namespace) -> dict[str, Any]:
    db, service, key = open_parts(args)
    ring = KeyRing(key.public_key)
    rng = random.Random(11)
    picks = [account_id(i) for i in rng.sample(range(args.accounts), args.lookups)]
    relay_s, client_s, wire_bytes, raw_bytes, map_depths, log_depths = [], [], [], [], [], []
    for account in picks:
        t = time.perf_counter()
        async with db.read() as conn:
            found = await service.lookup_in(conn, account, None)
        relay_s.append(time.perf_counter() - t)
        assert found is not None
        body = lookup_public(found).model_dump(mode="json")
        wire_bytes.append(len(json.dumps(body, separators=(",", ":"))))
        raw_bytes.append(
            32 * (len(found.map_proof.siblings) + len(found.inclusion))
            + len(found.epoch.signed.body)
            + 64
            + 72  # the map leaf's key and value
        )
        map_depths.append(len(found.map_proof.siblings))
        log_depths.append(len(found.inclusion))
        t = time.perf_counter()
        check(account, body, ring)
        client_s.append(time.perf_counter() - t)
    await db.dispose()
    return {
        "lookups": args.lookups,
        "relay_ms_median": 1000 * statistics.median(relay_s),
        "relay_ms_p95": 1000 * sorted(relay_s)[int(0.95 * len(relay_s))],
        "client_verify_ms_median": 1000 * statistics.median(client_s),
        "client_verify_ms_p95": 1000 * sorted(client_s)[int(0.95 * len(client_s))],
        "proof_json_bytes_median": statistics.median(wire_bytes),
        "proof_binary_bytes_median": statistics.median(raw_bytes),
        "map_siblings_median": statistics.median(map_depths),
        "map_siblings_max": max(map_depths),
        "inclusion_hashes_median": statistics.median(log_depths),
    }


def check(account: str, body: dict[str, Any], ring: KeyRing) -> None:
    """What a client does with a look-up's proofs (``client/transparency.py``)."""
    epoch = body["epoch"]
    head = verify_epoch(SignedEpoch(unb64(epoch["body"]), epoch["signature"]), ring)
    proof = body["map_proof"]
    value = verify_map_proof(
        account_key(account),
        MapProof(
            siblings=hashes_of(proof["siblings"]),
            leaf_key=unb64(proof["leaf_key"]),
            leaf_value=unb64(proof["leaf_value"]),
        ),
        head.map_root,
    )
    entries = [DeviceEntry(d["device_id"], d["curve25519"], d["ed25519"]) for d in body["devices"]]
    leaf = log_leaf_hash(
        encode_leaf(DevicesLeaf(account_id=account, epoch=body["leaf_epoch"], devices=entries))
    )
    assert value == map_value(body["leaf_index"], leaf)
    assert verify_inclusion(
        leaf, body["leaf_index"], head.tree_size, hashes_of(body["inclusion"]), head.log_root
    )


async def drop_schema(url: str, schema: str) -> None:
    db = Database(url)
    async with db.write() as conn:
        await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await db.dispose()


PHASES = {"build": build, "incremental": incremental, "lookups": lookups}


def run_phase(args: argparse.Namespace, phase: str) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--phase",
        phase,
        "--accounts",
        str(args.accounts),
        "--changes",
        str(args.changes),
        "--lookups",
        str(args.lookups),
        "--batch",
        str(args.batch),
        "--data-dir",
        str(args.data_dir),
    ]
    if args.database_url:
        command += ["--database-url", args.database_url, "--database-schema", args.database_schema]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=TransparencySettings().max_batch)
    parser.add_argument("--database-url", default=None, help="default: SQLite in --data-dir")
    parser.add_argument(
        "--database-schema", default="bench_transparency", help="PostgreSQL: dropped afterwards"
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--phase", choices=sorted(PHASES), default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.out is None:
        name = "transparency_postgres.json" if args.database_url else "transparency.json"
        args.out = Path("bench/results") / name
    if args.phase is not None:
        print(json.dumps(asyncio.run(PHASES[args.phase](args))))
        return

    with tempfile.TemporaryDirectory(prefix="tresen-kt-") as scratch:
        if args.data_dir is None:
            args.data_dir = Path(scratch)
        args.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            results = {
                phase: run_phase(args, phase) for phase in ("build", "incremental", "lookups")
            }
        finally:
            if args.database_url:
                asyncio.run(drop_schema(args.database_url, args.database_schema))
        database = args.data_dir / "relay.db"
        size = database.stat().st_size if database.exists() else None
        if size is not None:
            wal = args.data_dir / "relay.db-wal"
            size += wal.stat().st_size if wal.exists() else 0

    b, i, lk = results["build"], results["incremental"], results["lookups"]
    rows = [
        (
            "initial build",
            f"{b['accounts']:,} accounts in {b['epochs']} epochs",
            f"{b['seconds']:.1f} s (CPU {b['cpu_seconds']:.1f} s)",
            f"{b['peak_rss_mib']:.0f} MiB",
        ),
        (
            "incremental epoch",
            f"{i['changes']:,} changes on top",
            f"{i['seconds']:.2f} s (CPU {i['cpu_seconds']:.2f} s)",
            f"{i['peak_rss_mib']:.0f} MiB",
        ),
        (
            "look-up (relay)",
            "median / p95",
            f"{lk['relay_ms_median']:.2f} / {lk['relay_ms_p95']:.2f} ms",
            "",
        ),
        (
            "verify (client)",
            "median / p95",
            f"{lk['client_verify_ms_median']:.3f} / {lk['client_verify_ms_p95']:.3f} ms",
            "",
        ),
        (
            "proof size",
            f"{lk['map_siblings_median']:.0f} map + {lk['inclusion_hashes_median']:.0f} log hashes",
            f"{lk['proof_json_bytes_median']:.0f} B JSON, "
            f"{lk['proof_binary_bytes_median']:.0f} B binary",
            "",
        ),
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    backend = "postgresql" if args.database_url else "sqlite"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "bench": "transparency",
                "backend": backend,
                "database_bytes": size,
                "machine": f"{os.cpu_count()} cores",
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()

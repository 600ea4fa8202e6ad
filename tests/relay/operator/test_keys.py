"""The operator signing key: created at first start, sealed at rest, rotated with an overlap;
certificates expire. Time moves with a ``ManualClock``."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support import Backend, MakeRelay, RelayProcess

from tresen.core.clock import ManualClock
from tresen.core.settings import Settings
from tresen.crypto.certificates import (
    ExpiredCertificate,
    KeyRing,
    OperatorKey,
    UnknownOperatorKey,
    verify_certificate,
    verify_revocations,
)
from tresen.crypto.secrets import unseal
from tresen.relay.context import build_context
from tresen.relay.operator.keys import OperatorKeyError
from tresen.relay.schema import operator_keys

DAY_MS = 24 * 3600 * 1000


async def key_rows(db: Any) -> list[Any]:
    async with db.read() as conn:
        return list((await conn.execute(select(operator_keys))).all())


# --- creation and storage --------------------------------------------------------------------


async def test_the_first_start_creates_one_published_key(
    op: Any, tmp_path: Path, relay: Any
) -> None:
    r = await relay.http.get("/v1/operator/keys")

    body = r.json()
    [key] = body["keys"]
    assert body["current_key_id"] == key["key_id"]
    assert key["endorsement"] is None
    assert key["retires_ms"] is None
    assert body["fingerprint"] == KeyRing(key["public_key"]).fingerprint()
    assert body["revocations_max_age_s"] == 24 * 3600
    key_file = tmp_path / "operator.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


async def test_the_private_key_is_sealed_at_rest(
    relay: Any, backend: Backend, tmp_path: Path
) -> None:
    [row] = await key_rows(relay.ctx.db)
    kek = (tmp_path / "operator.key").read_bytes()

    raw = unseal(kek, bytes(row.private_sealed), context=b"operator-key:" + row.key_id.encode())

    assert OperatorKey.from_private_bytes(raw).public_key == row.public_key
    spellings = [raw, raw.hex().encode(), base64.b64encode(raw).rstrip(b"=")]
    for column in row:
        value = column.encode() if isinstance(column, str) else column
        if isinstance(value, bytes):
            assert not any(s in value for s in spellings)
    if backend.name == "sqlite":
        for path in tmp_path.glob("relay.db*"):
            content = path.read_bytes()
            assert not any(s in content for s in spellings), path.name


async def test_a_restart_keeps_the_key(make_relay: MakeRelay) -> None:
    async with make_relay() as relay:
        first = (await relay.http.get("/v1/operator/keys")).json()
    async with make_relay() as relay:
        again = (await relay.http.get("/v1/operator/keys")).json()
    assert again == first


async def test_the_wrong_key_encryption_key_stops_the_start(
    make_relay: MakeRelay, backend: Backend, tmp_path: Path
) -> None:
    right = os.urandom(32).hex()
    async with make_relay(operator_key=right) as relay:
        key_id = (await relay.http.get("/v1/operator/keys")).json()["current_key_id"]
    # With the key in the environment, no key file is written.
    assert not (tmp_path / "operator.key").exists()

    wrong = Settings(
        data_dir=tmp_path, operator_key=os.urandom(32).hex(), **backend.settings_overrides()
    )
    ctx = build_context(wrong, db=backend.database())
    try:
        with pytest.raises(OperatorKeyError, match=f"{key_id} does not open.*TRESEN_OPERATOR_KEY"):
            await ctx.operator.start()
        # Nor does the start fall back to a key file, or a new key.
        without = Settings(data_dir=tmp_path, **backend.settings_overrides())
        ctx2 = build_context(without, db=ctx.db)
        with pytest.raises(OperatorKeyError, match=r"key file .* does not exist"):
            await ctx2.operator.start()
        assert not (tmp_path / "operator.key").exists()
        assert len(await key_rows(ctx.db)) == 1
    finally:
        await ctx.db.dispose()

    async with make_relay(operator_key=base64.b64encode(bytes.fromhex(right)).decode()) as relay:
        assert (await relay.http.get("/v1/operator/keys")).json()["current_key_id"] == key_id


async def test_a_malformed_key_encryption_key_is_a_clear_error(
    backend: Backend, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, operator_key="abc", **backend.settings_overrides())
    ctx = build_context(settings, db=backend.database())
    try:
        from tresen.relay import migrate

        await migrate.upgrade(ctx.db)
        with pytest.raises(OperatorKeyError, match="TRESEN_OPERATOR_KEY: the key must be 32"):
            await ctx.operator.start()
    finally:
        await ctx.db.dispose()


@pytest.mark.slow
async def test_a_relay_process_with_the_wrong_key_does_not_serve(
    backend: Backend, tmp_path: Path
) -> None:
    first = RelayProcess(backend, tmp_path / "one", TRESEN_OPERATOR_KEY=os.urandom(32).hex())
    await first.start()
    first.stop()

    second = RelayProcess(backend, tmp_path / "two", TRESEN_OPERATOR_KEY=os.urandom(32).hex())
    # Waits for the exit rather than probing the port, which another relay might have taken.
    with second.log_file.open("wb") as log:
        exited = subprocess.run(
            [sys.executable, "-m", "tresen", "relay", "serve", "--port", str(second.port)],
            env=second.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=90,
            check=False,
        )
    assert exited.returncode != 0
    output = second.log_file.read_text()
    assert "operator signing key unavailable" in output
    assert "does not open with the key-encryption key from TRESEN_OPERATOR_KEY" in output
    assert "Application startup complete" not in output


# --- expiry ----------------------------------------------------------------------------------


async def test_a_certificate_expires_after_its_lifetime(
    make_relay: MakeRelay, harness_of: Any
) -> None:
    clock = ManualClock()
    # Renewal off: what a certificate left alone does (renewal has its own tests).
    async with make_relay(
        clock=clock, certificate_lifetime_days=30, certificate_renew_before_days=0
    ) as relay:
        op = harness_of(relay)
        ops = await op.headers()
        bakery = await op.business()
        await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)
        signed = await op.certificate(bakery.account_id)
        ring = await op.ring()

        clock.advance(hours=30 * 24, ms=-1)
        verify_certificate(signed, ring, clock.now_ms())
        assert (await relay.http.get(f"/v1/certificates/{bakery.account_id}")).status_code == 200

        clock.advance(ms=1)
        with pytest.raises(ExpiredCertificate):
            verify_certificate(signed, ring, clock.now_ms())
        assert (await relay.http.get(f"/v1/certificates/{bakery.account_id}")).status_code == 404
        shown = (await op.admin("GET", f"/businesses/{bakery.account_id}", ops)).json()
        assert shown["current_serial"] is None
        assert [c["status"] for c in shown["certificates"]] == ["expired"]

        # Verifying again issues a new certificate from now.
        await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)
        renewed = verify_certificate(await op.certificate(bakery.account_id), ring, clock.now_ms())
        assert renewed.issued_ms == clock.now_ms()
        assert renewed.expires_ms == clock.now_ms() + 30 * DAY_MS


async def test_an_expired_revocation_does_not_stay_on_the_list(
    make_relay: MakeRelay, harness_of: Any
) -> None:
    clock = ManualClock()
    async with make_relay(
        clock=clock, certificate_lifetime_days=10, certificate_renew_before_days=0
    ) as relay:
        op = harness_of(relay)
        ops = await op.headers()
        bakery = await op.business()
        await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)
        await op.admin("POST", f"/businesses/{bakery.account_id}/revoke", ops, json={"reason": "x"})
        ring = await op.ring()
        assert verify_revocations(await op.revocations(), ring, clock.now_ms(), DAY_MS).serials

        clock.advance(hours=10 * 24)
        listing = verify_revocations(await op.revocations(), ring, clock.now_ms(), DAY_MS)
        assert listing.serials == []  # expired anyway: the list stays short
        assert listing.issued_ms == clock.now_ms()


# --- rotation --------------------------------------------------------------------------------


async def test_rotation_hands_over_with_an_overlap(make_relay: MakeRelay, harness_of: Any) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        op = harness_of(relay)
        ops = await op.headers()
        ring = await op.ring()  # a client that pinned the first key
        k1 = ring.pinned_key_id
        k1_public = ring.public_key(k1)
        bakery = await op.business()
        first = (await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)).json()
        old = await op.certificate(bakery.account_id)
        clock.advance(hours=24)
        rotated_at = clock.now_ms()

        r = await op.admin("POST", "/operator-keys/rotate", ops, json={"overlap_days": 7})

        assert r.status_code == 200, r.text
        rotation = r.json()
        k2 = rotation["key_id"]
        assert k2 != k1
        assert rotation["previous_key_id"] == k1
        assert rotation["previous_retires_ms"] == rotated_at + 7 * DAY_MS
        [reissued] = rotation["reissued"]
        published = (await relay.http.get("/v1/operator/keys")).json()
        assert published["current_key_id"] == k2
        assert published["fingerprint"] == rotation["fingerprint"]
        new = await op.certificate(bakery.account_id)

        # A client that has not looked at the keys yet: the old certificate still works,
        # the new one is signed by a key it does not know yet.
        verify_certificate(old, ring, clock.now_ms())
        with pytest.raises(UnknownOperatorKey):
            verify_certificate(new, ring, clock.now_ms())

        _, keys = await op.published()
        update = ring.update(keys)
        assert update.added == [k2]
        assert update.retired == [k1]
        assert update.ignored == []
        cert = verify_certificate(new, ring, clock.now_ms())
        before = verify_certificate(old, ring, clock.now_ms())
        assert cert.serial == reissued
        assert cert.key_id == k2
        assert (cert.display_name, cert.phone, cert.device_keys) == (
            before.display_name,
            before.phone,
            before.device_keys,
        )
        assert cert.expires_ms == first["certificate"]["expires_ms"]
        assert cert.issued_ms == rotated_at

        # New certificates and revocation lists come from the new key.
        florist = await op.business("Blumen Schulz")
        await op.admin("POST", f"/businesses/{florist.account_id}/verify", ops)
        assert (
            verify_certificate(
                await op.certificate(florist.account_id), ring, clock.now_ms()
            ).key_id
            == k2
        )
        listing = verify_revocations(await op.revocations(), ring, clock.now_ms(), DAY_MS)
        assert listing.key_id == k2

        # The overlap ends: the old key's certificates have expired with it.
        clock.advance(hours=7 * 24, ms=-1)
        verify_certificate(old, ring, clock.now_ms())
        clock.advance(ms=1)
        with pytest.raises(ExpiredCertificate, match="retired"):
            verify_certificate(old, ring, clock.now_ms())
        verify_certificate(new, ring, clock.now_ms())
        shown = (await op.admin("GET", f"/businesses/{bakery.account_id}", ops)).json()
        assert [(c["key_id"], c["status"], c["current"]) for c in shown["certificates"]] == [
            (k1, "key retired", False),
            (k2, "valid", True),
        ]

        # A second rotation: a client that only ever pinned the first key follows the chain.
        r = await op.admin("POST", "/operator-keys/rotate", ops, json={"overlap_days": 0})
        k3 = r.json()["key_id"]
        assert len(r.json()["reissued"]) == 2  # both verified businesses
        fresh = KeyRing(k1_public)
        _, keys = await op.published()
        assert sorted(fresh.update(keys).added) == sorted([k2, k3])
        now = clock.now_ms()
        assert verify_certificate(await op.certificate(bakery.account_id), fresh, now).key_id == k3
        # Overlap 0: the second key retired at once.
        with pytest.raises(ExpiredCertificate):
            verify_certificate(new, fresh, now)
        assert await op.audit_actions(bakery.account_id) == [("alice", "verify")]
        entries = (await op.admin("GET", "/audit", ops)).json()["entries"]
        assert [e["action"] for e in entries[:2]] == ["rotate_key", "verify"]
        assert entries[0]["details"]["key_id"] == k3


async def test_rotation_does_not_reissue_revoked_certificates(
    make_relay: MakeRelay, harness_of: Any
) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        op = harness_of(relay)
        ops = await op.headers()
        bakery = await op.business()
        await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)
        await op.admin("POST", f"/businesses/{bakery.account_id}/revoke", ops, json={"reason": "x"})

        r = await op.admin("POST", "/operator-keys/rotate", ops, json={"overlap_days": 3})

        assert r.json()["reissued"] == []
        assert (await relay.http.get(f"/v1/certificates/{bakery.account_id}")).status_code == 404


async def test_rotation_needs_a_sane_overlap(op: Any, ops: dict[str, str], error_of: Any) -> None:
    for body in [{}, {"overlap_days": -1}, {"overlap_days": 100_000}, {"overlap_days": "x"}]:
        r = await op.admin("POST", "/operator-keys/rotate", ops, json=body)
        assert r.status_code == 400, body
        assert error_of(r)["code"] == 100
    _, keys = await op.published()
    assert len(keys) == 1


async def test_a_verification_during_a_rotation_ends_up_signed_by_the_new_key(
    op: Any, ops: dict[str, str]
) -> None:
    import asyncio

    verified = await op.business("Früh Verifiziert")
    await op.admin("POST", f"/businesses/{verified.account_id}/verify", ops)
    pending = [await op.business(f"Laden {i}") for i in range(4)]

    results = await asyncio.gather(
        op.admin("POST", "/operator-keys/rotate", ops, json={"overlap_days": 0}),
        *(op.admin("POST", f"/businesses/{b.account_id}/verify", ops) for b in pending),
    )

    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    # Overlap 0: the old key retired at once, so every business needs a certificate by the
    # new key, whichever of rotation and verification came first.
    ring = await op.ring()
    current = results[0].json()["key_id"]
    for business in [verified, *pending]:
        cert = await op.certificate(business.account_id)
        assert verify_certificate(cert, ring, op.relay.ctx.clock.now_ms()).key_id == current


async def test_a_rotation_waits_for_certificates_being_issued(
    op: Any, backend: Backend, relay: Any
) -> None:
    import asyncio

    from tresen.relay.operator import repo
    from tresen.relay.operator.service import OperatorPrincipal

    if backend.name == "sqlite":
        pytest.skip("SQLite serializes all writers anyway")
    # An issuer (verify, revoke) holds the keys shared while it signs and writes.
    async with relay.ctx.db.write() as conn:
        await repo.lock_operator_keys(conn, shared=True)
        rotation = asyncio.create_task(
            relay.ctx.operator.rotate(OperatorPrincipal("alice"), overlap_days=1)
        )
        await asyncio.sleep(0.5)
        assert not rotation.done()
    await asyncio.wait_for(rotation, 10)
    _, keys = await op.published()
    assert len(keys) == 2

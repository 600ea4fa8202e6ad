"""The relay's key log: signed epochs over an append-only log of device sets and certificates,
proofs anyone can check, and an auditor that catches a rewritten history."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import insert, update
from support import Device, RunningRelay, publish_identity, serve_relay
from transparency_support import rewrite_leaf

from tresen.client.audit import AuditFailure, Auditor
from tresen.core.errors import ErrorCode
from tresen.crypto.certificates import KeyRing
from tresen.crypto.encoding import b64, unb64
from tresen.crypto.transparency import (
    EPOCH_PREFIX,
    CertificateLeaf,
    DeviceEntry,
    DevicesLeaf,
    EpochHead,
    MapProof,
    SignedEpoch,
    account_key,
    encode_leaf,
    hashes_of,
    head_hash,
    log_leaf_hash,
    map_value,
    verify_consistency,
    verify_epoch,
    verify_inclusion,
    verify_map_proof,
)
from tresen.relay.businesses.names import name_skeleton
from tresen.relay.operator.service import OperatorPrincipal
from tresen.relay.schema import accounts, business_profiles, verification_requests


async def operator_ring(relay: RunningRelay) -> KeyRing:
    published = (await relay.http.get("/v1/operator/keys")).json()
    current = next(k for k in published["keys"] if k["key_id"] == published["current_key_id"])
    return KeyRing(current["public_key"])


def verified_head(epoch: dict[str, Any], ring: KeyRing) -> EpochHead:
    return verify_epoch(SignedEpoch(unb64(epoch["body"]), epoch["signature"]), ring)


def check_lookup(found: dict[str, Any], account_id: str, ring: KeyRing) -> list[DeviceEntry]:
    """The device set a look-up proves, checked as a client checks it."""
    head = verified_head(found["epoch"], ring)
    proof = found["map_proof"]
    value = verify_map_proof(
        account_key(account_id),
        MapProof(
            siblings=hashes_of(proof["siblings"]),
            leaf_key=None if proof["leaf_key"] is None else unb64(proof["leaf_key"]),
            leaf_value=None if proof["leaf_value"] is None else unb64(proof["leaf_value"]),
        ),
        head.map_root,
    )
    entries = [DeviceEntry(d["device_id"], d["curve25519"], d["ed25519"]) for d in found["devices"]]
    if value is None:
        assert entries == []
        return entries
    leaf = encode_leaf(
        DevicesLeaf(account_id=account_id, epoch=found["leaf_epoch"], devices=entries)
    )
    assert value == map_value(found["leaf_index"], log_leaf_hash(leaf))
    assert verify_inclusion(
        log_leaf_hash(leaf),
        found["leaf_index"],
        head.tree_size,
        hashes_of(found["inclusion"]),
        head.log_root,
    )
    return entries


async def lookup(relay: RunningRelay, asker: Device, account_id: str, **params: Any) -> Any:
    r = await relay.http.get(
        f"/v1/transparency/lookup/{account_id}", headers=asker.auth, params=params
    )
    assert r.status_code == 200, r.text
    return r.json()


async def test_epochs_log_every_device_set_and_prove_it(relay: RunningRelay) -> None:
    ring = await operator_ring(relay)
    first = (await relay.http.get("/v1/transparency/epochs/latest")).json()
    assert verified_head(first, ring).tree_size == 0  # published when the relay started

    alice = await relay.register()
    olm = await publish_identity(relay, alice)
    found = await lookup(relay, alice, alice.account_id)
    [entry] = check_lookup(found, alice.account_id, ring)
    assert entry == DeviceEntry(
        alice.device_id, olm.curve25519_key.to_base64(), olm.ed25519_key.to_base64()
    )

    # A second device: a new leaf, a new epoch, and a log that extends the first.
    second = await relay.register(alice.phone)
    await publish_identity(relay, second)
    before = verified_head(found["epoch"], ring)
    later = await lookup(relay, alice, alice.account_id, since=before.tree_size)
    assert [d.device_id for d in check_lookup(later, alice.account_id, ring)] == [1, 2]
    after = verified_head(later["epoch"], ring)
    assert after.epoch > before.epoch
    assert verify_consistency(
        before.tree_size,
        after.tree_size,
        hashes_of(later["consistency"]["proof"]),
        before.log_root,
        after.log_root,
    )

    # The heads form a chain, published in order for auditors.
    listed = (await relay.http.get("/v1/transparency/epochs", params={"after": -1})).json()
    heads = [verified_head(e, ring) for e in listed["epochs"]]
    assert [h.epoch for h in heads] == list(range(len(heads)))
    for earlier, head, entry in zip(heads, heads[1:], listed["epochs"][:-1], strict=False):
        assert head.previous == head_hash(unb64(entry["body"]))
        assert head.tree_size >= earlier.tree_size

    # An account without devices is proven to have none; the key directory gives the same
    # proofs with its device list when asked.
    stranger = await relay.register()
    assert (
        check_lookup(await lookup(relay, alice, stranger.account_id), stranger.account_id, ring)
        == []
    )
    r = await relay.http.get(
        f"/v1/keys/{alice.account_id}", headers=stranger.auth, params={"transparency": "true"}
    )
    assert [
        d.device_id for d in check_lookup(r.json()["transparency"], alice.account_id, ring)
    ] == [1, 2]
    plain = await relay.http.get(f"/v1/keys/{alice.account_id}", headers=stranger.auth)
    assert "transparency" not in plain.json()


async def test_issued_certificates_are_logged(relay: RunningRelay) -> None:
    ring = await operator_ring(relay)
    shop = await relay.register()
    await publish_identity(relay, shop)
    now = relay.ctx.clock.now_ms()
    async with relay.ctx.db.write() as conn:
        await conn.execute(
            update(accounts).where(accounts.c.id == shop.account_id).values(kind="business")
        )
        await conn.execute(
            insert(business_profiles).values(
                account_id=shop.account_id,
                display_name="Kiosk Nord",
                name_skeleton=name_skeleton("Kiosk Nord"),
                verification="pending",
                created_ms=now,
                updated_ms=now,
            )
        )
        await conn.execute(
            insert(verification_requests).values(
                account_id=shop.account_id, state="pending", note="please", requested_ms=now
            )
        )
    await relay.ctx.operator.verify(OperatorPrincipal("tests"), shop.account_id)
    certificate = await relay.ctx.operator.current_certificate(shop.account_id)
    assert certificate is not None
    await relay.ctx.transparency.publish()

    r = await relay.http.get(
        f"/v1/transparency/certificates/{certificate.serial}", headers=shop.auth
    )
    assert r.status_code == 200, r.text
    found = r.json()
    head = verified_head(found["epoch"], ring)
    leaf = CertificateLeaf(
        account_id=shop.account_id,
        epoch=found["leaf_epoch"],
        serial=certificate.serial,
        digest=hashlib.sha256(certificate.signed.body).digest(),
    )
    assert verify_inclusion(
        log_leaf_hash(encode_leaf(leaf)),
        found["leaf_index"],
        head.tree_size,
        hashes_of(found["inclusion"]),
        head.log_root,
    )
    missing = await relay.http.get("/v1/transparency/certificates/999999", headers=shop.auth)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == ErrorCode.NOT_FOUND_IN_LOG


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_bad_requests_get_clear_errors(relay: RunningRelay) -> None:
    device = await relay.register()
    await publish_identity(relay, device)
    size = (await relay.http.get("/v1/transparency/epochs/latest")).json()["tree_size"]
    cases = [
        (
            "/v1/transparency/consistency",
            {"first": 2, "second": 1},
            400,
            ErrorCode.INVALID_PARAMETER,
        ),
        (
            "/v1/transparency/consistency",
            {"first": 0, "second": size + 1},
            400,
            ErrorCode.INVALID_PARAMETER,
        ),
        (
            "/v1/transparency/consistency",
            {"first": -1, "second": 1},
            400,
            ErrorCode.INVALID_PARAMETER,
        ),
        ("/v1/transparency/epochs/99999", {}, 404, ErrorCode.NO_EPOCH),
        ("/v1/transparency/epochs", {"limit": 10_001}, 400, ErrorCode.INVALID_PARAMETER),
        (f"/v1/transparency/lookup/{device.account_id}", {}, 401, ErrorCode.INVALID_TOKEN),
    ]
    for path, params, status, code in cases:
        r = await relay.http.get(path, params=params)
        assert r.status_code == status, (path, params, r.text)
        assert r.json()["error"]["code"] == code


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_relay_without_a_log_says_so(backend: Any, tmp_path: Path) -> None:
    async with serve_relay(backend, tmp_path, transparency={"enabled": False}) as relay:
        device = await relay.register()
        r = await relay.http.get("/v1/transparency/epochs/latest")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == ErrorCode.NO_EPOCH
        keys = await relay.http.get(
            f"/v1/keys/{device.account_id}", headers=device.auth, params={"transparency": "true"}
        )
        assert "transparency" not in keys.json()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_auditor_follows_the_log_and_catches_a_rewritten_history(
    relay: RunningRelay, tmp_path: Path
) -> None:
    auditor = Auditor(relay.url, tmp_path / "auditor")
    other = Auditor(relay.url, tmp_path / "other")
    try:
        device = await relay.register()
        await publish_identity(relay, device)
        await relay.ctx.transparency.publish()
        first = await auditor.follow()
        assert first.latest is not None
        assert first.checked == first.latest.epoch + 1
        await other.follow()

        more = await relay.register(device.phone)
        await publish_identity(relay, more)
        await relay.ctx.transparency.publish()
        assert (await auditor.follow()).checked == 1
        assert (await auditor.follow()).checked == 0
        assert await auditor.compare(other.roots()) == []

        await rewrite_leaf(relay, device.account_id, "C" * 42 + "E")
        with pytest.raises(AuditFailure, match="another log of the same size"):
            await auditor.follow()
        # What was accepted before stays; nothing of the rewritten history is kept.
        assert [r["epoch"] for r in auditor.roots()] == list(range(first.latest.epoch + 2))
    finally:
        await auditor.close()
        await other.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_tresen_audit_follows_publishes_and_compares_roots(
    relay: RunningRelay, tmp_path: Path
) -> None:
    device = await relay.register()
    await publish_identity(relay, device)
    state = tmp_path / "audit"

    async def tresen(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tresen",
            "audit",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
        out, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode()

    code, out = await tresen("follow", "--relay", relay.url, "--state", str(state))
    assert code == 0, out
    assert "the log is consistent up to epoch" in out
    roots = json.loads((state / "roots.json").read_text())
    assert roots

    # Another party's roots with a head of the same epoch signed twice: a fork.
    forged = dict(roots[-1])
    async with relay.ctx.db.write() as conn:
        head = verified_head(roots[-1], await operator_ring(relay))

        def other_body(key_id: str) -> bytes:
            return msgspec.msgpack.encode(
                EpochHead(
                    epoch=head.epoch,
                    tree_size=head.tree_size + 1,
                    log_root=bytes(32),
                    map_root=head.map_root,
                    previous=head.previous,
                    published_ms=head.published_ms,
                    key_id=key_id,
                )
            )

        body, _, signature = await relay.ctx.operator.sign_document(
            EPOCH_PREFIX, other_body, conn=conn
        )
        forged["body"], forged["signature"] = b64(body), signature
    theirs = tmp_path / "theirs.json"
    theirs.write_text(json.dumps([forged]))
    code, out = await tresen("compare", str(theirs), "--state", str(state), "--relay", relay.url)
    assert code == 1, out
    assert f"Fork at epoch {head.epoch}" in out

"""``tresen admin`` as an operator uses it: real processes against a relay process.

Tokens and ``keys show`` work on the database directly; everything else goes through the
relay's admin API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
import vodozemac
from sqlalchemy import insert
from support import Backend, RelayProcess

from tresen.core.http import tls_context
from tresen.crypto.certificates import KeyRing, PublishedKey, SignedCertificate, verify_certificate
from tresen.relay.accounts.sms import read_last_code
from tresen.relay.schema import business_profiles, verification_requests

pytestmark = pytest.mark.slow

# The child processes get no admin settings from whoever runs the tests; wide output, so
# tables are not cut.
ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("TRESEN_RELAY_URL", "TRESEN_ADMIN_TOKEN", "TRESEN_CONFIG", "TRESEN_OPERATOR_KEY")
} | {"COLUMNS": "250"}


def admin(
    *args: str, backend: Backend | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    extra = dict(env or {})
    if backend is not None:
        args = (*args, "--database-url", backend.url)
        if backend.schema:
            extra["TRESEN_DATABASE_SCHEMA"] = backend.schema
    return subprocess.run(
        [sys.executable, "-m", "tresen", "admin", *args],
        env=ENV | extra,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stderr


async def business(relay: RelayProcess, phone: str, name: str) -> tuple[str, str]:
    """A registered business with one device's identity keys and a pending request;
    returns (account id, Ed25519 key)."""
    async with httpx.AsyncClient(verify=tls_context(), base_url=relay.url) as http:
        r = await http.post("/v1/registration/code", json={"phone": phone})
        assert r.status_code == 202, r.text
        code = read_last_code(relay.sms_file, phone)
        r = await http.post("/v1/registration/verify", json={"phone": phone, "code": code})
        device = r.json()
        olm = vodozemac.Account()
        r = await http.put(
            "/v1/keys",
            headers={"Authorization": f"Bearer {device['token']}"},
            json={
                "identity_keys": {
                    "curve25519": olm.curve25519_key.to_base64(),
                    "ed25519": olm.ed25519_key.to_base64(),
                }
            },
        )
        assert r.status_code == 200, r.text
    db = relay.backend.database()
    try:
        async with db.write() as conn:
            await conn.execute(
                insert(business_profiles).values(
                    account_id=device["account_id"],
                    display_name=name,
                    name_skeleton=name.lower(),
                    verification="pending",
                    created_ms=1,
                    updated_ms=1,
                )
            )
            await conn.execute(
                insert(verification_requests).values(
                    account_id=device["account_id"],
                    state="pending",
                    note="we are a real bakery",
                    requested_ms=1,
                )
            )
    finally:
        await db.dispose()
    return device["account_id"], olm.ed25519_key.to_base64()


async def operator_keys(relay: RelayProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(verify=tls_context(), base_url=relay.url) as http:
        body: dict[str, Any] = (await http.get("/v1/operator/keys")).json()
    return body


async def test_an_operator_verifies_a_business_from_the_command_line(
    relay_process: RelayProcess, backend: Backend
) -> None:
    await relay_process.start()
    phone = "+4915140000001"
    account_id, device_key = await business(relay_process, phone, "Bäckerei Müller")

    created = admin("token", "create", "alice", backend=backend)
    token = ok(created).strip()
    assert token.startswith("tresen_op_")
    assert "shown only now" in created.stderr
    assert "alice" in ok(admin("token", "list", backend=backend))
    api = {"TRESEN_RELAY_URL": relay_process.url, "TRESEN_ADMIN_TOKEN": token}

    listed = ok(admin("requests", "--relay", relay_process.url, "--token", token))
    assert account_id in listed
    assert phone in listed
    assert "Bäckerei Müller" in listed

    # A phone number stands for the account.
    verified = ok(admin("verify", phone, env=api))
    assert "certificate 1" in verified
    assert "Bäckerei Müller" in verified

    published = await operator_keys(relay_process)
    [current] = [k for k in published["keys"] if k["key_id"] == published["current_key_id"]]
    ring = KeyRing(current["public_key"])
    async with httpx.AsyncClient(verify=tls_context(), base_url=relay_process.url) as http:
        signed = SignedCertificate.from_json(
            (await http.get(f"/v1/certificates/{account_id}")).json()
        )
    cert = verify_certificate(signed, ring, signed_now())
    assert (cert.account_id, cert.phone, cert.display_name, cert.device_keys) == (
        account_id,
        phone,
        "Bäckerei Müller",
        [device_key],
    )

    keys = ok(admin("keys", "show", backend=backend))
    assert published["fingerprint"] in keys
    assert published["current_key_id"] in keys

    shown = json.loads(ok(admin("show", account_id, "--json", env=api)))
    assert shown["verification"] == "verified"
    assert shown["current_serial"] == cert.serial
    human = ok(admin("show", account_id, env=api))
    assert "verified" in human
    assert device_key in human

    ok(admin("suspend", phone, "--reason", "complaints", env=api))
    ok(admin("reinstate", phone, env=api))
    rotated = ok(admin("keys", "rotate", "--overlap-days", "3", env=api))
    assert "re-issued with the new key: 1" in rotated
    after = await operator_keys(relay_process)
    assert after["fingerprint"] in rotated
    assert ring.update([PublishedKey.from_json(k) for k in after["keys"]]).added == [
        after["current_key_id"]
    ]
    assert "overlap" in ok(admin("keys", "show", backend=backend))
    ok(admin("revoke", account_id, "--reason", "fraud", env=api))

    audit = ok(admin("audit", "--account", phone, env=api))
    for action in ("verify", "suspend", "reinstate", "revoke"):
        assert action in audit
    assert "alice" in audit


async def test_errors_are_one_clear_line(relay_process: RelayProcess, backend: Backend) -> None:
    await relay_process.start()
    phone = "+4915140000002"
    account_id, _ = await business(relay_process, phone, "Blumen Schulz")
    token = ok(admin("token", "create", "bob", backend=backend)).strip()
    api = {"TRESEN_RELAY_URL": relay_process.url, "TRESEN_ADMIN_TOKEN": token}

    # The relay's code and message, exit code 1.
    ok(admin("reject", account_id, "--reason", "not in the trade register", env=api))
    again = failed(admin("reject", account_id, "--reason", "twice", env=api), 1)
    assert "error 150051" in again
    assert "no pending verification request" in again
    unknown = failed(admin("verify", "+4915149999999", env=api), 1)
    assert "error 131026" in unknown
    nobody = failed(admin("show", "0" * 32, env=api), 1)
    assert "error 150050" in nobody

    # Tokens: a wrong one, none at all, a revoked one.
    wrong = failed(admin("requests", env=api | {"TRESEN_ADMIN_TOKEN": "nope"}), 1)
    assert "error 190" in wrong
    missing = failed(admin("requests", "--relay", relay_process.url), 2)
    assert "token" in missing
    ok(admin("token", "revoke", "bob", backend=backend))
    assert "error 190" in failed(admin("requests", env=api), 1)
    assert "already revoked" in failed(admin("token", "revoke", "bob", backend=backend), 1)
    assert "exists already" in failed(admin("token", "create", "bob", backend=backend), 1)

    # A relay that is not there.
    down = failed(admin("requests", "--relay", "http://127.0.0.1:9", "--token", token), 1)
    assert "cannot reach the relay" in down


def signed_now() -> int:
    import time

    return time.time_ns() // 1_000_000

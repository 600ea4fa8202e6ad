"""A business's verification from request to revocation, through the admin and public API.

``op`` is the harness of ``conftest.py``; ``ops`` are headers with an operator token.
"""

from __future__ import annotations

from typing import Any

import vodozemac
from sqlalchemy import select
from support import RunningRelay, publish_identity

from tresen.core.errors import ErrorCode
from tresen.core.ids import AccountId
from tresen.crypto.certificates import (
    RevokedCertificate,
    check_binding,
    verify_certificate,
    verify_revocations,
)
from tresen.relay.schema import business_profiles, verification_requests

DAY_MS = 24 * 3600 * 1000


async def profile_of(relay: RunningRelay, account_id: str) -> dict[str, Any]:
    async with relay.ctx.db.read() as conn:
        row = (
            await conn.execute(
                select(business_profiles).where(business_profiles.c.account_id == account_id)
            )
        ).one()
    return dict(row._mapping)


async def requests_of(relay: RunningRelay, account_id: str) -> list[dict[str, Any]]:
    async with relay.ctx.db.read() as conn:
        rows = await conn.execute(
            select(verification_requests)
            .where(verification_requests.c.account_id == account_id)
            .order_by(verification_requests.c.id)
        )
        return [dict(r._mapping) for r in rows]


async def test_a_pending_request_is_listed_for_the_operator(op: Any, ops: dict[str, str]) -> None:
    bakery = await op.business("Bäckerei Müller")
    await op.business("Not Asking", pending=False)

    r = await op.admin("GET", "/verification-requests", ops, params={"state": "pending"})

    assert r.status_code == 200, r.text
    [request] = r.json()["requests"]
    assert request["account_id"] == bakery.account_id
    assert request["phone"] == bakery.phone
    assert request["display_name"] == "Bäckerei Müller"
    assert request["state"] == "pending"
    assert request["note"] == "please verify"
    assert request["verification"] == "pending"
    r = await op.admin("GET", "/verification-requests", ops, params={"state": "approved"})
    assert r.json()["requests"] == []


async def test_verify_issues_a_certificate_a_client_trusts(
    op: Any, ops: dict[str, str], relay: RunningRelay
) -> None:
    bakery = await op.business("Bäckerei Müller", devices=2)
    # A third device without identity keys is not part of the binding.
    await relay.register(bakery.phone)

    r = await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verification"] == "verified"
    assert body["certificate"]["display_name"] == "Bäckerei Müller"
    assert body["certificate"]["device_keys"] == bakery.device_keys
    ring = await op.ring()
    signed = await op.certificate(bakery.account_id)
    assert signed.to_json() == body["signed"]
    cert = verify_certificate(signed, ring, relay.ctx.clock.now_ms())
    assert cert.account_id == bakery.account_id
    assert cert.phone == bakery.phone
    assert cert.display_name == "Bäckerei Müller"
    assert cert.device_keys == bakery.device_keys
    assert len(cert.device_keys) == 2
    assert cert.expires_ms - cert.issued_ms == 365 * DAY_MS
    assert cert.serial == body["certificate"]["serial"]
    assert check_binding(
        cert,
        account_id=bakery.account_id,
        phone=bakery.phone,
        display_name="Bäckerei Müller",
        device_keys=bakery.device_keys,
    )
    assert (await profile_of(relay, bakery.account_id))["verification"] == "verified"
    [request] = await requests_of(relay, bakery.account_id)
    assert request["state"] == "approved"
    assert request["decided_by"] == "alice"
    assert request["id"] == body["request_id"]
    assert await op.audit_actions(bakery.account_id) == [("alice", "verify")]
    # The directory embeds the same certificate.
    assert await relay.ctx.operator.certificate_json(AccountId(bakery.account_id)) == body["signed"]


async def test_revoked_certificates_are_on_the_signed_revocation_list(
    op: Any, ops: dict[str, str], relay: RunningRelay, error_of: Any
) -> None:
    bakery = await op.business()
    other = await op.business("Blumen Schulz")
    await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)
    await op.admin("POST", f"/businesses/{other.account_id}/verify", ops)
    signed = await op.certificate(bakery.account_id)
    ring = await op.ring()

    r = await op.admin(
        "POST", f"/businesses/{bakery.account_id}/revoke", ops, json={"reason": "fraud"}
    )

    assert r.status_code == 200, r.text
    cert = verify_certificate(signed, ring, relay.ctx.clock.now_ms())
    assert r.json() == {
        "account_id": bakery.account_id,
        "verification": "revoked",
        "revoked": [cert.serial],
    }
    before = relay.ctx.clock.now_ms()
    signed_list = await op.revocations()
    now = relay.ctx.clock.now_ms()
    listing = verify_revocations(signed_list, ring, now, max_age_ms=60_000)
    assert listing.serials == [cert.serial]
    assert before <= listing.issued_ms <= now  # signed fresh for each request
    try:
        verify_certificate(signed, ring, now, revoked=listing.serials)
        raise AssertionError("a revoked certificate verified")
    except RevokedCertificate:
        pass
    # The other business's certificate is untouched.
    verify_certificate(await op.certificate(other.account_id), ring, now, listing.serials)
    r = await relay.http.get(f"/v1/certificates/{bakery.account_id}")
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.NO_CURRENT_CERTIFICATE
    assert await relay.ctx.operator.certificate_json(AccountId(bakery.account_id)) is None
    assert (await profile_of(relay, bakery.account_id))["verification"] == "revoked"
    # Nothing left to revoke.
    r = await op.admin(
        "POST", f"/businesses/{bakery.account_id}/revoke", ops, json={"reason": "again"}
    )
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.NO_CURRENT_CERTIFICATE
    assert await op.audit_actions(bakery.account_id) == [("alice", "verify"), ("alice", "revoke")]


async def test_reject_needs_a_pending_request_and_a_reason(
    op: Any, ops: dict[str, str], relay: RunningRelay, error_of: Any
) -> None:
    bakery = await op.business()

    r = await op.admin("POST", f"/businesses/{bakery.account_id}/reject", ops, json={})
    assert r.status_code == 400
    assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER
    r = await op.admin(
        "POST", f"/businesses/{bakery.account_id}/reject", ops, json={"reason": "   "}
    )
    assert r.status_code == 400

    r = await op.admin(
        "POST",
        f"/businesses/{bakery.account_id}/reject",
        ops,
        json={"reason": "the trade register does not list this name"},
    )

    assert r.status_code == 200, r.text
    assert r.json()["verification"] == "rejected"
    [request] = await requests_of(relay, bakery.account_id)
    assert request["state"] == "rejected"
    assert request["reason"] == "the trade register does not list this name"
    assert request["decided_by"] == "alice"
    assert (await profile_of(relay, bakery.account_id))["verification"] == "rejected"
    assert (await relay.http.get(f"/v1/certificates/{bakery.account_id}")).status_code == 404

    again = await op.admin(
        "POST", f"/businesses/{bakery.account_id}/reject", ops, json={"reason": "twice"}
    )
    assert again.status_code == 409
    assert error_of(again)["code"] == ErrorCode.NO_PENDING_REQUEST
    assert await op.audit_actions(bakery.account_id) == [("alice", "reject")]


async def test_suspend_and_reinstate(
    op: Any, ops: dict[str, str], relay: RunningRelay, error_of: Any
) -> None:
    bakery = await op.business()
    path = f"/businesses/{bakery.account_id}"

    r = await op.admin("POST", path + "/suspend", ops, json={"reason": "spam complaints"})
    assert r.status_code == 200, r.text
    assert r.json()["suspend_reason"] == "spam complaints"
    profile = await profile_of(relay, bakery.account_id)
    assert profile["suspended_ms"] == r.json()["suspended_ms"]
    assert profile["suspend_reason"] == "spam complaints"
    r = await op.admin("POST", path + "/suspend", ops, json={"reason": "again"})
    assert r.status_code == 409
    assert error_of(r)["code"] == ErrorCode.ALREADY_SUSPENDED
    shown = (await op.admin("GET", path, ops)).json()
    assert shown["suspended_ms"] == profile["suspended_ms"]

    r = await op.admin("POST", path + "/reinstate", ops)
    assert r.status_code == 200, r.text
    profile = await profile_of(relay, bakery.account_id)
    assert profile["suspended_ms"] is None
    assert profile["suspend_reason"] is None
    r = await op.admin("POST", path + "/reinstate", ops)
    assert r.status_code == 409
    assert error_of(r)["code"] == ErrorCode.NOT_SUSPENDED
    assert await op.audit_actions(bakery.account_id) == [
        ("alice", "suspend"),
        ("alice", "reinstate"),
    ]


async def test_actions_on_an_account_without_a_business_profile(
    op: Any, ops: dict[str, str], relay: RunningRelay, error_of: Any
) -> None:
    customer = await relay.register()
    for action, body in [
        ("verify", None),
        ("reject", {"reason": "x"}),
        ("revoke", {"reason": "x"}),
        ("suspend", {"reason": "x"}),
        ("reinstate", None),
    ]:
        r = await op.admin("POST", f"/businesses/{customer.account_id}/{action}", ops, json=body)
        assert r.status_code == 404, action
        assert error_of(r)["code"] == ErrorCode.NOT_A_BUSINESS
    r = await op.admin("GET", f"/businesses/{'0' * 32}", ops)
    assert error_of(r)["code"] == ErrorCode.NOT_A_BUSINESS
    assert (await relay.http.get(f"/v1/certificates/{customer.account_id}")).status_code == 404


async def test_a_business_without_device_keys_cannot_be_verified(
    op: Any, ops: dict[str, str], relay: RunningRelay, error_of: Any
) -> None:
    device = await relay.register()
    await op.profile(device.account_id, "Keyless GmbH")

    r = await op.admin("POST", f"/businesses/{device.account_id}/verify", ops)

    assert r.status_code == 409
    assert error_of(r)["code"] == ErrorCode.IDENTITY_KEYS_MISSING
    [request] = await requests_of(relay, device.account_id)
    assert request["state"] == "pending"  # nothing happened
    assert await op.audit_actions(device.account_id) == []


async def test_a_new_certificate_supersedes_one_with_other_device_keys(
    op: Any, ops: dict[str, str], relay: RunningRelay
) -> None:
    bakery = await op.business()
    first = (await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)).json()
    # A new device joins: the certificate no longer binds the business's keys, so it is
    # revoked at once and a new request waits; the operator certifies the business again.
    tablet = await relay.register(bakery.phone)
    tablet_keys = await publish_identity(relay, tablet)

    second = (await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)).json()

    assert second["request_id"] is not None  # the request filed for the key change
    assert second["certificate"]["device_keys"] == sorted(
        [*bakery.device_keys, tablet_keys.ed25519_key.to_base64()]
    )
    ring = await op.ring()
    now = relay.ctx.clock.now_ms()
    listing = verify_revocations(await op.revocations(), ring, now, max_age_ms=60_000)
    assert listing.serials == [first["certificate"]["serial"]]
    current = verify_certificate(await op.certificate(bakery.account_id), ring, now)
    assert current.serial == second["certificate"]["serial"]
    shown = (await op.admin("GET", f"/businesses/{bakery.account_id}", ops)).json()
    assert [(c["serial"], c["status"], c["current"]) for c in shown["certificates"]] == [
        (first["certificate"]["serial"], "revoked", False),
        (second["certificate"]["serial"], "valid", True),
    ]
    assert shown["certificates"][0]["revoke_reason"] == "device keys changed"


async def test_verifying_the_same_binding_again_keeps_the_old_certificate(
    op: Any, ops: dict[str, str], relay: RunningRelay
) -> None:
    bakery = await op.business()
    await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)
    await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)

    ring = await op.ring()
    listing = verify_revocations(
        await op.revocations(), ring, relay.ctx.clock.now_ms(), max_age_ms=60_000
    )
    assert listing.serials == []


async def test_a_rename_revokes_through_the_directory_hook(
    op: Any, ops: dict[str, str], relay: RunningRelay
) -> None:
    bakery = await op.business()
    verified = (await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)).json()
    serial = verified["certificate"]["serial"]

    # What the business directory does when a verified business renames, in its transaction.
    async with relay.ctx.db.write() as conn:
        revoked = await relay.ctx.operator.revoke_for_change(
            AccountId(bakery.account_id), "display name changed", conn=conn
        )
    await op.add_request(bakery.account_id, "new name")

    assert revoked == [serial]
    ring = await op.ring()
    listing = verify_revocations(
        await op.revocations(), ring, relay.ctx.clock.now_ms(), max_age_ms=60_000
    )
    assert listing.serials == [serial]
    assert (await relay.http.get(f"/v1/certificates/{bakery.account_id}")).status_code == 404
    assert await op.audit_actions(bakery.account_id) == [
        ("alice", "verify"),
        ("system", "revoke_for_change"),
    ]
    # Without a certificate left, the hook does nothing (and audits nothing).
    assert await relay.ctx.operator.revoke_for_change(AccountId(bakery.account_id), "again") == []
    assert len(await op.audit_actions(bakery.account_id)) == 2


async def test_the_directory_hook_is_part_of_the_callers_transaction(
    op: Any, ops: dict[str, str], relay: RunningRelay
) -> None:
    bakery = await op.business()
    await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)

    class RenameFailed(Exception):
        pass

    try:
        async with relay.ctx.db.write() as conn:
            await relay.ctx.operator.revoke_for_change(
                AccountId(bakery.account_id), "display name changed", conn=conn
            )
            raise RenameFailed
    except RenameFailed:
        pass

    # The rename did not happen, so neither did the revocation (nor its audit row).
    assert (await relay.http.get(f"/v1/certificates/{bakery.account_id}")).status_code == 200
    assert await op.audit_actions(bakery.account_id) == [("alice", "verify")]


async def test_the_business_view_shows_everything_the_operator_needs(
    op: Any, ops: dict[str, str]
) -> None:
    bakery = await op.business(devices=2)
    await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)

    r = await op.admin("GET", f"/businesses/{bakery.account_id}", ops)

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["display_name"] == "Bäckerei Müller"
    assert body["phone"] == bakery.phone
    assert body["kind"] == "business"
    assert body["verification"] == "verified"
    assert sorted(d["ed25519"] for d in body["devices"]) == bakery.device_keys
    [cert] = body["certificates"]
    assert cert["current"] is True
    assert body["current_serial"] == cert["serial"]
    [request] = body["requests"]
    assert request["state"] == "approved"
    assert [e["action"] for e in body["audit"]] == ["verify"]
    assert body["audit"][0]["details"]["serial"] == cert["serial"]


async def test_the_audit_log_lists_actions_newest_first(op: Any, ops: dict[str, str]) -> None:
    bakery = await op.business()
    other = await op.business("Blumen Schulz")
    await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)
    bob = await op.headers("bob")
    await op.admin("POST", f"/businesses/{other.account_id}/suspend", bob, json={"reason": "x"})

    everything = (await op.admin("GET", "/audit", ops)).json()["entries"]
    only = (await op.admin("GET", "/audit", ops, params={"account_id": bakery.account_id})).json()[
        "entries"
    ]

    # Token creation is audited too (by whoever created it).
    assert [(e["operator"], e["action"]) for e in everything] == [
        ("bob", "suspend"),
        ("test", "token_created"),
        ("alice", "verify"),
        ("test", "token_created"),
    ]
    assert everything[1]["details"] == {"name": "bob"}
    assert [(e["operator"], e["action"]) for e in only] == [("alice", "verify")]
    assert only[0]["account_id"] == bakery.account_id


async def test_an_account_is_found_by_phone_number(
    op: Any, ops: dict[str, str], relay: RunningRelay, error_of: Any
) -> None:
    bakery = await op.business()
    customer = await relay.register()

    r = await op.admin("GET", "/accounts", ops, params={"phone": bakery.phone})
    assert r.json() == {
        "account_id": bakery.account_id,
        "phone": bakery.phone,
        "kind": "business",
        "business": True,
    }
    r = await op.admin("GET", "/accounts", ops, params={"phone": customer.phone})
    assert r.json()["business"] is False
    r = await op.admin("GET", "/accounts", ops, params={"phone": "+4915199999999"})
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.UNDELIVERABLE
    r = await op.admin("GET", "/accounts", ops, params={"phone": "hello"})
    assert error_of(r)["code"] == ErrorCode.INVALID_PHONE_NUMBER


async def test_an_unknown_requests_state_is_an_invalid_parameter(
    op: Any, ops: dict[str, str], error_of: Any
) -> None:
    r = await op.admin("GET", "/verification-requests", ops, params={"state": "maybe"})
    assert r.status_code == 400
    assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER


def test_vodozemac_keys_are_what_certificates_bind() -> None:
    # Device keys in certificates are spelled exactly as vodozemac (and the relay) spell them.
    key = vodozemac.Account().ed25519_key.to_base64()
    assert len(key) == 43
    assert not key.endswith("=")

"""A verified business that renames or changes its device keys loses its certificate at once."""

from __future__ import annotations

from typing import Any

from support import RunningRelay, publish_identity

from tresen.crypto.certificates import KeyRing, SignedCertificate, verify_revocations


async def verified_business(relay: RunningRelay, op: Any, ops: dict[str, str]) -> Any:
    device = await relay.register()
    await publish_identity(relay, device)
    r = await relay.http.put(
        "/v1/business/profile",
        headers=device.auth,
        json={"display_name": "Nordwind Airlines", "category": "TRAVEL"},
    )
    assert r.status_code in (200, 201), r.text
    r = await relay.http.post(
        "/v1/business/verification", headers=device.auth, json={"note": "we fly"}
    )
    assert r.status_code == 202, r.text
    r = await op.admin("POST", f"/businesses/{device.account_id}/verify", ops)
    assert r.status_code == 200, r.text
    return device, r.json()["certificate"]["serial"]


async def public_profile(relay: RunningRelay, device: Any) -> Any:
    r = await relay.http.get(f"/v1/businesses/{device.account_id}", headers=device.auth)
    return r.json()


async def revoked_serials(op: Any, ring: KeyRing, relay: RunningRelay) -> list[int]:
    signed = await op.revocations()
    listed = verify_revocations(signed, ring, relay.ctx.clock.now_ms(), 86_400_000)
    return list(listed.serials)


async def test_the_directory_shows_the_certificate_and_a_rename_revokes_it(
    relay: RunningRelay, op: Any, ops: dict[str, str]
) -> None:
    device, serial = await verified_business(relay, op, ops)
    ring = await op.ring()
    public = (
        await relay.http.get(f"/v1/businesses/{device.account_id}", headers=device.auth)
    ).json()
    assert public["verification"] == "verified"
    assert SignedCertificate.from_json(public["certificate"]).signature

    r = await relay.http.put(
        "/v1/business/profile", headers=device.auth, json={"display_name": "Nordwind Air"}
    )
    assert r.status_code == 200, r.text
    assert serial in await revoked_serials(op, ring, relay)
    public = (
        await relay.http.get(f"/v1/businesses/{device.account_id}", headers=device.auth)
    ).json()
    assert public["verification"] == "pending"
    assert public["certificate"] is None


async def test_a_new_device_key_sends_the_business_back_to_pending(
    relay: RunningRelay, op: Any, ops: dict[str, str]
) -> None:
    device, serial = await verified_business(relay, op, ops)
    ring = await op.ring()
    second = await relay.register(device.phone)
    await publish_identity(relay, second)
    assert serial in await revoked_serials(op, ring, relay)
    own = (await relay.http.get("/v1/business/profile", headers=device.auth)).json()
    assert own["verification"] == "pending"


async def test_removing_a_device_sends_the_business_back_to_pending(
    relay: RunningRelay, op: Any, ops: dict[str, str]
) -> None:
    device, _ = await verified_business(relay, op, ops)
    second = await relay.register(device.phone)
    await publish_identity(relay, second)
    r = await op.admin("POST", f"/businesses/{device.account_id}/verify", ops)
    assert r.status_code == 200, r.text
    serial = r.json()["certificate"]["serial"]
    ring = await op.ring()
    removed = await relay.http.delete(f"/v1/devices/{second.device_id}", headers=device.auth)
    assert removed.status_code == 204, removed.text
    # The certificate named the removed device's key: it no longer describes the business.
    assert serial in await revoked_serials(op, ring, relay)
    own = (await relay.http.get("/v1/business/profile", headers=device.auth)).json()
    assert own["verification"] == "pending"
    assert own["pending_request"]["note"] == "a device was removed"

"""Certificates are renewed before they expire, so a verified business keeps its tick.

Defaults: a certificate lives 365 days and is renewed in its last 30. Time moves with a
``ManualClock``; ``POST /v1/admin/certificates/renew`` and the service method run what the
relay's periodic task runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from support import MakeRelay, RunningRelay

from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode
from tresen.core.settings import Settings
from tresen.crypto.certificates import (
    ExpiredCertificate,
    SignedCertificate,
    decode_certificate,
    verify_certificate,
    verify_revocations,
)

DAY_MS = 24 * 3600 * 1000
LIFETIME_MS = 365 * DAY_MS
WINDOW_MS = 30 * DAY_MS


async def served_serial(relay: RunningRelay, account_id: str) -> int | None:
    """The serial of the certificate ``GET /v1/certificates/{id}`` serves now."""
    r = await relay.http.get(f"/v1/certificates/{account_id}")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return decode_certificate(SignedCertificate.from_json(r.json()).body).serial


async def verified(op: Any, ops: dict[str, str], name: str = "Bäckerei Müller") -> Any:
    business = await op.business(name)
    r = await op.admin("POST", f"/businesses/{business.account_id}/verify", ops)
    assert r.status_code == 200, r.text
    return business


async def test_a_certificate_is_renewed_in_its_last_30_days(
    make_relay: MakeRelay, harness_of: Any
) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        op = harness_of(relay)
        ops = await op.headers()
        bakery = await verified(op, ops)
        old = await op.certificate(bakery.account_id)
        ring = await op.ring()
        first = verify_certificate(old, ring, clock.now_ms())

        # One millisecond before the window: nothing is due.
        clock.set(first.expires_ms - WINDOW_MS - 1)
        r = await op.admin("POST", "/certificates/renew", ops)
        assert r.status_code == 200, r.text
        assert r.json() == {"reissued": [], "renewals": [], "skipped": []}
        assert await served_serial(relay, bakery.account_id) == first.serial

        # Inside the window: a new certificate for a whole lifetime from now.
        clock.advance(ms=1)
        r = await op.admin("POST", "/certificates/renew", ops)

        assert r.status_code == 200, r.text
        [serial] = r.json()["reissued"]
        [renewal] = r.json()["renewals"]
        assert renewal["account_id"] == bakery.account_id
        assert renewal["replaces"] == first.serial
        assert r.json()["skipped"] == []
        new = await op.certificate(bakery.account_id)
        cert = verify_certificate(new, ring, clock.now_ms())
        assert cert.serial == serial != first.serial
        assert cert.key_id == ring.pinned_key_id  # the current key
        assert (cert.account_id, cert.phone, cert.display_name, cert.device_keys) == (
            first.account_id,
            first.phone,
            first.display_name,
            first.device_keys,
        )
        assert cert.issued_ms == clock.now_ms()
        assert cert.expires_ms == clock.now_ms() + LIFETIME_MS
        # The directory embeds the new one too.
        customer = await relay.register()
        shown = await relay.http.get(f"/v1/businesses/{bakery.account_id}", headers=customer.auth)
        assert shown.status_code == 200, shown.text
        assert shown.json()["certificate"] == new.to_json()

        # The old certificate is not revoked: clients holding it keep the tick until it ends.
        listing = verify_revocations(await op.revocations(), ring, clock.now_ms(), DAY_MS)
        assert first.serial not in listing.serials
        verify_certificate(old, ring, clock.now_ms(), listing.serials)
        summary = (await op.admin("GET", f"/businesses/{bakery.account_id}", ops)).json()
        assert [(c["serial"], c["status"], c["current"]) for c in summary["certificates"]] == [
            (first.serial, "valid", False),
            (serial, "valid", True),
        ]
        assert await op.audit_actions(bakery.account_id) == [
            ("alice", "verify"),
            ("alice", "renew_certificate"),
        ]
        [run, *_] = (await op.admin("GET", "/audit", ops)).json()["entries"]
        assert (run["action"], run["details"]["reissued"]) == ("renew_certificates", [serial])

        # Renewed once: the next run finds nothing due.
        r = await op.admin("POST", "/certificates/renew", ops)
        assert r.json()["reissued"] == []

        clock.set(first.expires_ms)
        with pytest.raises(ExpiredCertificate):
            verify_certificate(old, ring, clock.now_ms())
        verify_certificate(new, ring, clock.now_ms())
        assert await served_serial(relay, bakery.account_id) == serial


async def test_suspended_and_revoked_businesses_are_not_renewed(
    make_relay: MakeRelay, harness_of: Any
) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        op = harness_of(relay)
        ops = await op.headers()
        active = await verified(op, ops, "Bäckerei Müller")
        suspended = await verified(op, ops, "Blumen Schulz")
        revoked = await verified(op, ops, "Metzgerei Weber")
        await op.business("Nie Verifiziert")
        path = "/businesses/{}/{}"
        r = await op.admin(
            "POST", path.format(suspended.account_id, "suspend"), ops, json={"reason": "spam"}
        )
        assert r.status_code == 200, r.text
        r = await op.admin(
            "POST", path.format(revoked.account_id, "revoke"), ops, json={"reason": "fraud"}
        )
        assert r.status_code == 200, r.text
        before = await served_serial(relay, suspended.account_id)

        clock.advance(ms=LIFETIME_MS - WINDOW_MS + DAY_MS)
        run = await relay.ctx.operator.renew_due_certificates()  # as the periodic task does

        assert [r.account_id for r in run.renewed] == [active.account_id]
        assert run.skipped == {}
        assert await served_serial(relay, active.account_id) == run.renewed[0].serial
        assert await served_serial(relay, suspended.account_id) == before
        assert await served_serial(relay, revoked.account_id) is None
        assert (await op.audit_actions(active.account_id))[-1] == ("system", "renew_certificate")
        assert (await op.audit_actions(suspended.account_id))[-1] == ("alice", "suspend")
        assert (await op.audit_actions(revoked.account_id))[-1] == ("alice", "revoke")

        # Reinstated while its certificate is still valid: the next run renews it.
        r = await op.admin("POST", path.format(suspended.account_id, "reinstate"), ops)
        assert r.status_code == 200, r.text
        run = await relay.ctx.operator.renew_due_certificates()
        assert [r.account_id for r in run.renewed] == [suspended.account_id]


async def test_a_certificate_whose_binding_changed_is_not_renewed(
    make_relay: MakeRelay, harness_of: Any
) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        op = harness_of(relay)
        ops = await op.headers()
        bakery = await op.business(devices=2)
        await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)
        # The second device leaves: the certificate named its key, so it is revoked at once
        # and the business waits for the operator again.
        office = bakery.devices[1]
        r = await relay.http.delete(f"/v1/devices/{office.device_id}", headers=office.auth)
        assert r.status_code == 204, r.text
        gone = await relay.http.get(f"/v1/certificates/{bakery.account_id}")
        assert gone.json()["error"]["code"] == ErrorCode.NO_CURRENT_CERTIFICATE

        clock.advance(ms=LIFETIME_MS - WINDOW_MS)
        r = await op.admin("POST", "/certificates/renew", ops)

        assert r.json()["reissued"] == []
        gone = await relay.http.get(f"/v1/certificates/{bakery.account_id}")
        assert gone.json()["error"]["code"] == ErrorCode.NO_CURRENT_CERTIFICATE


async def test_two_runs_at_once_renew_once(make_relay: MakeRelay, harness_of: Any) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        op = harness_of(relay)
        ops = await op.headers()
        businesses = [await verified(op, ops, f"Laden {i}") for i in range(3)]
        clock.advance(ms=LIFETIME_MS - WINDOW_MS)

        # As two relay processes over one database would.
        runs = await asyncio.gather(
            relay.ctx.operator.renew_due_certificates(),
            relay.ctx.operator.renew_due_certificates(),
        )

        renewed = sorted(r.account_id for run in runs for r in run.renewed)
        assert renewed == sorted(b.account_id for b in businesses)
        for business in businesses:
            summary = (await op.admin("GET", f"/businesses/{business.account_id}", ops)).json()
            assert len(summary["certificates"]) == 2


async def test_the_relay_renews_on_its_own(make_relay: MakeRelay, harness_of: Any) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, certificate_renew_interval_s=0.01) as relay:
        op = harness_of(relay)
        ops = await op.headers()
        bakery = await verified(op, ops)
        first = await served_serial(relay, bakery.account_id)

        clock.advance(ms=LIFETIME_MS - WINDOW_MS)

        async def renewed() -> int:
            while (serial := await served_serial(relay, bakery.account_id)) == first:
                await asyncio.sleep(0.01)
            assert serial is not None
            return serial

        serial = await asyncio.wait_for(renewed(), 10)
        assert serial != first
        assert (await op.audit_actions(bakery.account_id))[-1] == ("system", "renew_certificate")


async def test_renewal_can_be_turned_off(make_relay: MakeRelay, harness_of: Any) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, certificate_renew_before_days=0) as relay:
        op = harness_of(relay)
        ops = await op.headers()
        bakery = await verified(op, ops)
        first = await served_serial(relay, bakery.account_id)

        clock.advance(ms=LIFETIME_MS - 1)
        r = await op.admin("POST", "/certificates/renew", ops)

        assert r.json()["reissued"] == []
        assert await served_serial(relay, bakery.account_id) == first


def test_the_renewal_window_is_shorter_than_the_lifetime(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="must be less than certificate_lifetime_days"):
        Settings(data_dir=tmp_path, certificate_lifetime_days=30)
    settings = Settings(
        data_dir=tmp_path, certificate_lifetime_days=30, certificate_renew_before_days=7
    )
    assert settings.certificate_renew_before_days == 7
    assert Settings(data_dir=tmp_path).certificate_renew_before_days == 30

"""Verification requests, and a verified business that changes its name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import update
from support import Device, RunningRelay

from tresen.core.errors import ErrorCode
from tresen.core.ids import AccountId
from tresen.relay.schema import verification_requests as vr

MakeBusiness = Callable[..., Awaitable[Device]]
SetProfile = Callable[..., Awaitable[None]]
Requests = Callable[[RunningRelay, Device], Awaitable[list[dict[str, Any]]]]


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


async def request_verification(
    relay: RunningRelay, device: Device, note: str = ""
) -> httpx.Response:
    return await relay.http.post(
        "/v1/business/verification", json={"note": note}, headers=device.auth
    )


async def own(relay: RunningRelay, device: Device) -> dict[str, Any]:
    r = await relay.http.get("/v1/business/profile", headers=device.auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_one_pending_request_at_a_time(
    relay: RunningRelay, make_business: MakeBusiness, requests_of: Requests
) -> None:
    business = await make_business(relay, "Morgenrot")
    r = await request_verification(relay, business, "  Handelsregister HRB 12345  ")
    assert r.status_code == 202, r.text
    request = r.json()
    assert request == {
        "request_id": request["request_id"],
        "state": "pending",
        "note": "Handelsregister HRB 12345",
        "reason": None,
        "requested_ms": request["requested_ms"],
        "decided_ms": None,
    }
    profile = await own(relay, business)
    assert profile["verification"] == "pending"
    assert profile["pending_request"] == request

    r = await request_verification(relay, business, "again")
    assert r.status_code == 409
    assert error_of(r)["code"] == ErrorCode.VERIFICATION_PENDING
    assert error_of(r)["details"]["request_id"] == request["request_id"]
    assert len(await requests_of(relay, business)) == 1

    # The body may be left out.
    other = await make_business(relay)
    r = await relay.http.post("/v1/business/verification", headers=other.auth)
    assert r.status_code == 202, r.text
    assert r.json()["note"] == ""


async def test_after_a_decision_a_business_may_ask_again(
    relay: RunningRelay, make_business: MakeBusiness, set_profile: SetProfile
) -> None:
    business = await make_business(relay)
    first = (await request_verification(relay, business)).json()
    # The operator rejects (written here directly; the operator side has its own tests).
    async with relay.ctx.db.write() as conn:
        await conn.execute(
            update(vr)
            .where(vr.c.id == first["request_id"])
            .values(state="rejected", reason="no proof", decided_ms=5, decided_by="op")
        )
    await set_profile(relay, business, verification="rejected")
    profile = await own(relay, business)
    assert profile["pending_request"] is None
    assert profile["last_decision"]["state"] == "rejected"
    assert profile["last_decision"]["reason"] == "no proof"

    r = await request_verification(relay, business, "now with proof")
    assert r.status_code == 202
    assert (await own(relay, business))["verification"] == "pending"


async def test_a_customer_cannot_ask_for_verification(relay: RunningRelay) -> None:
    customer = await relay.register()
    r = await request_verification(relay, customer)
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.NOT_A_BUSINESS


async def test_verified_and_suspended_businesses_cannot_ask(
    relay: RunningRelay, make_business: MakeBusiness, set_profile: SetProfile
) -> None:
    verified = await make_business(relay)
    await set_profile(relay, verified, verification="verified")
    r = await request_verification(relay, verified)
    assert r.status_code == 409
    assert error_of(r)["code"] == ErrorCode.ALREADY_VERIFIED

    suspended = await make_business(relay)
    await set_profile(relay, suspended, suspended_ms=1)
    r = await request_verification(relay, suspended)
    assert r.status_code == 403
    assert error_of(r)["code"] == ErrorCode.BUSINESS_SUSPENDED


async def test_a_note_is_at_most_512_characters(
    relay: RunningRelay, make_business: MakeBusiness
) -> None:
    business = await make_business(relay)
    r = await request_verification(relay, business, "n" * 513)
    assert r.status_code == 400
    assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER


async def test_renaming_a_verified_business_asks_for_verification_again(
    relay: RunningRelay, make_business: MakeBusiness, set_profile: SetProfile, requests_of: Requests
) -> None:
    business = await make_business(relay, "Morgenrot")
    await set_profile(relay, business, verification="verified")

    # Other fields, and the same name again, keep the tick.
    for body in ({"about": "Brot"}, {"display_name": "Morgenrot"}, {"display_name": " Morgenrot "}):
        r = await relay.http.put("/v1/business/profile", json=body, headers=business.auth)
        assert r.status_code == 200, r.text
        assert r.json()["verification"] == "verified"
    assert await requests_of(relay, business) == []

    r = await relay.http.put(
        "/v1/business/profile", json={"display_name": "Morgenrot Backstube"}, headers=business.auth
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["display_name"] == "Morgenrot Backstube"
    assert body["verification"] == "pending"
    assert body["pending_request"]["note"] == "display name changed"
    [request] = await requests_of(relay, business)
    assert (request["state"], request["note"]) == ("pending", "display name changed")

    # Renaming while pending files nothing more.
    r = await relay.http.put(
        "/v1/business/profile", json={"display_name": "Backstube"}, headers=business.auth
    )
    assert r.json()["verification"] == "pending"
    assert len(await requests_of(relay, business)) == 1
    customer = await relay.register()
    r = await relay.http.get(f"/v1/businesses/{business.account_id}", headers=customer.auth)
    assert r.json()["verification"] == "pending"


async def test_renaming_an_unverified_business_changes_nothing_else(
    relay: RunningRelay, make_business: MakeBusiness, requests_of: Requests
) -> None:
    business = await make_business(relay, "Morgenrot")
    r = await relay.http.put(
        "/v1/business/profile", json={"display_name": "Abendrot"}, headers=business.auth
    )
    assert r.json()["verification"] == "unverified"
    assert await requests_of(relay, business) == []


async def test_a_changed_identity_of_a_verified_business(
    relay: RunningRelay, make_business: MakeBusiness, set_profile: SetProfile, requests_of: Requests
) -> None:
    business = await make_business(relay)
    service = relay.ctx.businesses
    account = AccountId(business.account_id)
    assert await service.on_verified_identity_changed(account, "device keys changed") is False
    assert await requests_of(relay, business) == []

    await set_profile(relay, business, verification="verified")
    assert await service.on_verified_identity_changed(account, "device keys changed") is True
    profile = await own(relay, business)
    assert profile["verification"] == "pending"
    assert profile["pending_request"]["note"] == "device keys changed"
    assert await service.on_verified_identity_changed(account, "again") is False
    assert len(await requests_of(relay, business)) == 1
    customer = await relay.register()
    assert await service.on_verified_identity_changed(AccountId(customer.account_id), "x") is False

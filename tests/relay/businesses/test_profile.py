"""A business's own profile: ``PUT`` and ``GET /v1/business/profile``, and who may call what."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from support import Device, RunningRelay

from tresen.core.errors import ErrorCode

MakeBusiness = Callable[..., Awaitable[Device]]
SetProfile = Callable[..., Awaitable[None]]


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


def problem_fields(r: httpx.Response) -> set[str]:
    assert r.status_code == 400, r.text
    error = error_of(r)
    assert error["code"] == ErrorCode.INVALID_PARAMETER
    return {p["field"] for p in error["details"]["problems"]}


FULL = {
    "display_name": "  Bäckerei   Morgenrot ",
    "about": "Frisches Brot seit 1921",
    "description": "Sauerteig, Brezeln und Kuchen.\nJeden Tag frisch.",
    "address": "Hauptstraße 1\n10115 Berlin",
    "email": "Laden@Morgenrot.example.org",
    "websites": ["https://morgenrot.example.org/", "http://shop.morgenrot.example.org/brot"],
    "category": "GROCERY",
    "timezone": "Europe/Berlin",
    "hours": {
        "sat": [["07:00", "13:00"]],
        "mon": [["06:30", "12:00"], ["14:00", "18:30"]],
    },
    "closed_dates": ["2026-12-26", "2026-12-25", "2026-12-25"],
}


async def test_saving_a_profile_makes_a_business(relay: RunningRelay, kind_of: Any) -> None:
    device = await relay.register()
    assert await kind_of(relay, device) == "customer"

    r = await relay.http.put("/v1/business/profile", json=FULL, headers=device.auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body == {
        "account_id": device.account_id,
        "display_name": "Bäckerei Morgenrot",
        "about": "Frisches Brot seit 1921",
        "description": "Sauerteig, Brezeln und Kuchen.\nJeden Tag frisch.",
        "address": "Hauptstraße 1\n10115 Berlin",
        "email": "Laden@morgenrot.example.org",
        "websites": ["https://morgenrot.example.org/", "http://shop.morgenrot.example.org/brot"],
        "category": "GROCERY",
        "timezone": "Europe/Berlin",
        "hours": {"mon": [["06:30", "12:00"], ["14:00", "18:30"]], "sat": [["07:00", "13:00"]]},
        "closed_dates": ["2026-12-25", "2026-12-26"],
        "has_picture": False,
        "verification": "unverified",
        "suspended": False,
        "suspended_ms": None,
        "suspend_reason": None,
        "pending_request": None,
        "last_decision": None,
        "created_ms": body["created_ms"],
        "updated_ms": body["created_ms"],
    }
    assert await kind_of(relay, device) == "business"
    r = await relay.http.get("/v1/business/profile", headers=device.auth)
    assert r.status_code == 200
    assert r.json() == body


async def test_an_update_changes_only_the_fields_it_names(
    relay: RunningRelay, make_business: MakeBusiness
) -> None:
    device = await make_business(relay, "Morgenrot", about="Brot", category="GROCERY")
    r = await relay.http.put(
        "/v1/business/profile",
        json={"about": "Brot und Kuchen", "websites": [], "email": None},
        headers=device.auth,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["display_name"], body["about"], body["category"]) == (
        "Morgenrot",
        "Brot und Kuchen",
        "GROCERY",
    )
    assert body["websites"] == []
    # A new profile starts with defaults: no hours, UTC, category OTHER.
    fresh = await make_business(relay, "Neu")
    r = await relay.http.get("/v1/business/profile", headers=fresh.auth)
    assert (r.json()["timezone"], r.json()["category"], r.json()["hours"]) == ("UTC", "OTHER", {})


async def test_a_new_profile_needs_a_display_name(relay: RunningRelay) -> None:
    device = await relay.register()
    r = await relay.http.put("/v1/business/profile", json={"about": "x"}, headers=device.auth)
    assert problem_fields(r) == {"display_name"}
    r = await relay.http.get("/v1/business/profile", headers=device.auth)
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.NOT_A_BUSINESS


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("display_name", "   ", "display_name"),
        ("display_name", "x" * 101, "display_name"),
        ("display_name", "Morgen\x07rot", "display_name"),
        ("display_name", "...", "display_name"),
        ("display_name", "\u202easnahtfuL", "display_name"),
        ("about", "a" * 140, "about"),
        ("about", "two\nlines", "about"),
        ("description", "d" * 513, "description"),
        ("address", "a" * 257, "address"),
        ("email", "not-an-address", "email"),
        ("email", "someone@localhost", "email"),
        ("websites", ["https://a.example", "https://b.example", "https://c.example"], "websites"),
        ("websites", ["ftp://files.example.org"], "websites.0"),
        ("websites", ["https://ok.example", "/relative/path"], "websites.1"),
        ("websites", ["https://lufthansa.com@evil.example"], "websites.0"),
        ("websites", ["https://" + "a" * 250 + ".example"], "websites.0"),
        ("websites", ["https://"], "websites.0"),
        ("category", "BAKERY", "category"),
        ("timezone", "Europe/Springfield", "timezone"),
        ("timezone", "../../etc/passwd", "timezone"),
        ("hours", {"monday": [["09:00", "17:00"]]}, "hours.monday"),
        ("hours", {"mon": [["9:00", "17:00"]]}, "hours.mon.0"),
        ("hours", {"mon": [["17:00", "09:00"]]}, "hours.mon.0"),
        ("hours", {"mon": [["24:00", "24:00"]]}, "hours.mon.0"),
        ("hours", {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]}, "hours.mon.1"),
        ("hours", {"mon": [["09:00"]]}, "hours.mon.0"),
        (
            "hours",
            {
                "tue": [
                    ["08:00", "09:00"],
                    ["10:00", "11:00"],
                    ["12:00", "13:00"],
                    ["14:00", "15:00"],
                ]
            },
            "hours.tue",
        ),
        ("closed_dates", ["2026-02-30"], "closed_dates.0"),
        ("closed_dates", ["25.12.2026"], "closed_dates.0"),
        ("closed_dates", [f"2027-01-{d:02d}" for d in range(1, 32)] * 4, "closed_dates"),
    ],
)
async def test_each_field_is_validated(
    relay: RunningRelay, make_business: MakeBusiness, field: str, value: Any, named: str
) -> None:
    device = await make_business(relay, "Morgenrot")
    r = await relay.http.put("/v1/business/profile", json={field: value}, headers=device.auth)
    assert problem_fields(r) == {named}
    # Nothing was stored.
    r = await relay.http.get("/v1/business/profile", headers=device.auth)
    assert r.json()["display_name"] == "Morgenrot"


async def test_every_offending_field_is_named_at_once(relay: RunningRelay) -> None:
    device = await relay.register()
    r = await relay.http.put(
        "/v1/business/profile",
        json={
            "display_name": "",
            "email": "nope",
            "category": "nope",
            "timezone": "nope",
            "hours": {"sun": [["25:00", "26:00"]]},
        },
        headers=device.auth,
    )
    assert problem_fields(r) == {"display_name", "email", "category", "timezone", "hours.sun.0"}
    # A name without letters is found in the same pass as the other problems.
    r = await relay.http.put(
        "/v1/business/profile",
        json={"display_name": "!!!", "email": "nope"},
        headers=device.auth,
    )
    assert problem_fields(r) == {"display_name", "email"}


async def test_malformed_json_types_are_invalid_parameters(
    relay: RunningRelay, make_business: MakeBusiness
) -> None:
    device = await make_business(relay)
    r = await relay.http.put(
        "/v1/business/profile", json={"websites": "https://x.example"}, headers=device.auth
    )
    assert problem_fields(r) == {"body.websites"}
    r = await relay.http.put("/v1/business/profile", json={"hours": []}, headers=device.auth)
    assert problem_fields(r) == {"body.hours"}


async def test_a_suspended_business_still_sees_and_edits_its_profile(
    relay: RunningRelay, make_business: MakeBusiness, set_profile: SetProfile
) -> None:
    device = await make_business(relay, "Morgenrot")
    await set_profile(relay, device, suspended_ms=1_700_000_000_000, suspend_reason="spam")
    r = await relay.http.get("/v1/business/profile", headers=device.auth)
    assert r.status_code == 200
    assert (r.json()["suspended"], r.json()["suspend_reason"]) == (True, "spam")
    r = await relay.http.put("/v1/business/profile", json={"about": "x"}, headers=device.auth)
    assert r.status_code == 200
    assert r.json()["suspended"] is True


# --- authorization ---------------------------------------------------------------------------

ROUTES = [
    ("PUT", "/v1/business/profile"),
    ("GET", "/v1/business/profile"),
    ("PUT", "/v1/business/profile/picture"),
    ("DELETE", "/v1/business/profile/picture"),
    ("POST", "/v1/business/verification"),
    ("GET", "/v1/businesses"),
    ("GET", "/v1/businesses/{id}"),
    ("GET", "/v1/businesses/{id}/picture"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_needs_a_device_token(
    relay: RunningRelay, make_business: MakeBusiness, method: str, path: str
) -> None:
    business = await make_business(relay)
    url = path.replace("{id}", business.account_id)
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        r = await relay.http.request(method, url, json={"display_name": "x"}, headers=headers)
        assert r.status_code == 401, (method, path, r.text)
        assert error_of(r)["code"] == ErrorCode.INVALID_TOKEN


async def test_a_business_writes_only_its_own_profile(
    relay: RunningRelay, make_business: MakeBusiness
) -> None:
    victim = await make_business(relay, "Morgenrot")
    attacker = await make_business(relay, "Abendrot")
    # No write route takes an account id: naming another account is an unknown field.
    for field in ("account_id", "id", "business_id"):
        r = await relay.http.put(
            "/v1/business/profile",
            json={field: victim.account_id, "display_name": "Gekapert"},
            headers=attacker.auth,
        )
        assert problem_fields(r) == {f"body.{field}"}
    r = await relay.http.put(
        "/v1/business/verification", json={"account_id": victim.account_id}, headers=attacker.auth
    )
    assert r.status_code == 405
    r = await relay.http.post(
        "/v1/business/verification", json={"account_id": victim.account_id}, headers=attacker.auth
    )
    assert problem_fields(r) == {"body.account_id"}
    # There is no route addressed by account id for writing.
    for method in ("PUT", "POST", "PATCH", "DELETE"):
        r = await relay.http.request(
            method,
            f"/v1/businesses/{victim.account_id}",
            json={"display_name": "Gekapert"},
            headers=attacker.auth,
        )
        assert r.status_code == 405, (method, r.text)
        r = await relay.http.request(
            method, f"/v1/businesses/{victim.account_id}/picture", headers=attacker.auth
        )
        assert r.status_code == 405, (method, r.text)
    r = await relay.http.put("/v1/business/profile", json={"about": "x"}, headers=attacker.auth)
    assert r.status_code == 200
    r = await relay.http.get(f"/v1/businesses/{victim.account_id}", headers=attacker.auth)
    assert (r.json()["display_name"], r.json()["about"]) == ("Morgenrot", "")

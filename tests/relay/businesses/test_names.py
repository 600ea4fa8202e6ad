"""Lookalike-proof names: no business may pass for a verified one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from support import Device, RunningRelay

from tresen.core.errors import ErrorCode
from tresen.relay.businesses.names import name_skeleton

MakeBusiness = Callable[..., Awaitable[Device]]
SetProfile = Callable[..., Awaitable[None]]

# Each of these can be taken for "Lufthansa" on a phone screen.
CONFUSABLE = [
    "LUFTHANSA",
    "lufthansa",
    "LuftHansa",
    "Lufthänsa",  # diacritic
    "Lu\u0301fthansa",  # combining acute accent
    "Lufthansa\u00a0",  # trailing no-break space
    "Luft\u200dhansa",  # zero-width joiner
    "Luft\u200bhansa",  # zero-width space
    "Luft\u00adhansa",  # soft hyphen
    "Luft hansa",
    "L u f t h a n s a",
    "Lufthans\u0430",  # Cyrillic a
    "Lufthan\u0455a",  # Cyrillic dze, looks like s
    "LUFTH\u0410NSA",  # Cyrillic capital A
    "Luft\u04bbansa",  # Cyrillic shha, looks like h
    "Lufthans\u0251",  # Latin alpha
    "\u216cufthansa",  # Roman numeral fifty
    "\uff2c\uff55\uff46\uff54\uff48\uff41\uff4e\uff53\uff41",  # fullwidth
    "\U0001d40b\U0001d42e\U0001d41f\U0001d42d\U0001d421\U0001d41a\U0001d427\U0001d42c\U0001d41a",
    "Lufthansa.",
    "L.u.f.t.h.a.n.s.a",
    "-Lufthansa-",
    "Lufthan5a",  # digit five
    "1ufthansa",  # digit one
    "Iufthansa",  # capital i
    "|ufthansa",  # vertical bar
    "Luf7hansa",
    "Lufth@nsa",
    "Lufthansa\u2122",  # trade mark sign
    "Lufthansa \u2708\ufe0f",  # airplane emoji
    "Lufthansa \u2713",  # check mark, mimicking the tick
    "Lufthansa\u3164",  # Hangul filler, renders as nothing
]

# Different names: containing a verified name is allowed, only an equal skeleton is refused.
DIFFERENT = ["Lufthansa Cargo", "Lufthansa Fan Shop", "Luftfahrt", "Condor", "Hansa Luft"]


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


def test_the_table_is_long_enough() -> None:
    assert len(CONFUSABLE) >= 20
    assert len(set(CONFUSABLE)) == len(CONFUSABLE)


@pytest.mark.parametrize("name", CONFUSABLE)
def test_confusables_share_the_skeleton(name: str) -> None:
    assert name_skeleton(name) == name_skeleton("Lufthansa")


@pytest.mark.parametrize("name", DIFFERENT)
def test_different_names_do_not(name: str) -> None:
    assert name_skeleton(name) != name_skeleton("Lufthansa")


def test_skeleton_follows_unicode_prototypes() -> None:
    assert name_skeleton("modern") == name_skeleton("rnodern")
    assert name_skeleton("O0o") == "ooo"
    assert name_skeleton("\u0440ay\u0440al") == name_skeleton("paypal")  # Cyrillic er
    assert name_skeleton("Straße") == name_skeleton("STRASSE")
    assert name_skeleton("AT&T") == "att"
    assert name_skeleton("!!! \u200b") == ""


async def test_no_business_can_take_a_verified_name(
    relay: RunningRelay, make_business: MakeBusiness, set_profile: SetProfile
) -> None:
    lufthansa = await make_business(relay, "Lufthansa")
    await set_profile(relay, lufthansa, verification="verified")
    impostor = await make_business(relay, "Reisebüro Sonnenschein")

    for name in CONFUSABLE:
        # Neither a new business nor a rename of an existing one.
        newcomer = await relay.register()
        for device in (newcomer, impostor):
            r = await relay.http.put(
                "/v1/business/profile", json={"display_name": name}, headers=device.auth
            )
            assert r.status_code == 409, (name, r.text)
            error = error_of(r)
            assert error["code"] == ErrorCode.NAME_CONFUSABLE
            assert error["details"]["conflicts_with"] == {
                "account_id": lufthansa.account_id,
                "display_name": "Lufthansa",
            }
            assert "Lufthansa" in error["message"]
        r = await relay.http.get("/v1/business/profile", headers=newcomer.auth)
        assert r.status_code == 404

    for name in DIFFERENT:
        r = await relay.http.put(
            "/v1/business/profile", json={"display_name": name}, headers=impostor.auth
        )
        assert r.status_code == 200, (name, r.text)


async def test_the_verified_business_itself_may_change_its_spelling(
    relay: RunningRelay, make_business: MakeBusiness, set_profile: SetProfile
) -> None:
    lufthansa = await make_business(relay, "Lufthansa")
    await set_profile(relay, lufthansa, verification="verified")
    r = await relay.http.put(
        "/v1/business/profile", json={"display_name": "LUFTHANSA"}, headers=lufthansa.auth
    )
    assert r.status_code == 200, r.text
    # A new spelling is a new name for the certificate: verified again by the operator.
    assert r.json()["verification"] == "pending"


async def test_unverified_names_bind_nobody(
    relay: RunningRelay, make_business: MakeBusiness, set_profile: SetProfile
) -> None:
    first = await make_business(relay, "Lufthansa")
    await make_business(relay, "LUFTHANSA")
    # Only the verified state protects a name; pending is not verified yet.
    await set_profile(relay, first, verification="pending")
    await make_business(relay, "Lufthänsa")


async def test_a_name_needs_letters_or_digits(
    relay: RunningRelay, make_business: MakeBusiness
) -> None:
    device = await relay.register()
    for name in ("!!!", "...", "\u200b\u200d", "\u2708\ufe0f"):
        r = await relay.http.put(
            "/v1/business/profile", json={"display_name": name}, headers=device.auth
        )
        assert r.status_code == 400, (name, r.text)
        [problem] = error_of(r)["details"]["problems"]
        assert problem["field"] == "display_name"


async def test_a_verified_business_cannot_take_another_verified_name(
    relay: RunningRelay, make_business: MakeBusiness, set_profile: SetProfile
) -> None:
    lufthansa = await make_business(relay, "Lufthansa")
    condor = await make_business(relay, "Condor")
    for device in (lufthansa, condor):
        await set_profile(relay, device, verification="verified")
    r = await relay.http.put(
        "/v1/business/profile", json={"display_name": "LUFTHANSA"}, headers=condor.auth
    )
    assert r.status_code == 409
    assert error_of(r)["code"] == ErrorCode.NAME_CONFUSABLE
    r = await relay.http.get("/v1/business/profile", headers=condor.auth)
    assert (r.json()["display_name"], r.json()["verification"]) == ("Condor", "verified")

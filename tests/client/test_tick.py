"""The tick decision on its own: every way a certificate can fail to earn it."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tresen.client.business import BusinessProfile, TickState, judge
from tresen.crypto.certificates import (
    CERTIFICATE_PREFIX,
    BusinessCertificate,
    KeyRing,
    OperatorKey,
    PublishedKey,
    SignedCertificate,
    decode_certificate,
)

NOW = 1_767_225_600_000
DAY = 86_400_000
KEYS = ["a" * 43, "b" * 43]


def certificate(key: OperatorKey, **fields: Any) -> dict[str, str]:
    values: dict[str, Any] = {
        "serial": 7,
        "account_id": "acc-airline",
        "phone": "+4969123456",
        "display_name": "Tresen Air",
        "device_keys": sorted(KEYS),
        "issued_ms": NOW - DAY,
        "expires_ms": NOW + 30 * DAY,
        "key_id": key.key_id,
    }
    values.update(fields)
    return key.sign_certificate(BusinessCertificate(**values)).to_json()


def decide(cert: dict[str, str] | None, ring: KeyRing | None, **seen: Any) -> TickState:
    facts: dict[str, Any] = {
        "account_id": "acc-airline",
        "phone": "+4969123456",
        "display_name": "Tresen Air",
        "device_keys": list(reversed(KEYS)),
        "revoked": set(),
    }
    facts.update(seen)
    now = facts.pop("now", NOW)
    return judge(cert, ring, now, **facts).state


@pytest.fixture
def operator() -> OperatorKey:
    return OperatorKey.generate()


@pytest.fixture
def ring(operator: OperatorKey) -> KeyRing:
    return KeyRing(operator.public_key)


def test_a_certificate_that_binds_what_the_client_sees_earns_the_tick(
    operator: OperatorKey, ring: KeyRing
) -> None:
    tick = judge(
        certificate(operator),
        ring,
        NOW,
        revoked={1, 2},
        account_id="acc-airline",
        phone="+4969123456",
        display_name="Tresen Air",
        device_keys=KEYS,
    )
    assert tick.verified
    assert (tick.serial, tick.expires_ms) == (7, NOW + 30 * DAY)


@pytest.mark.parametrize(
    ("seen", "state"),
    [
        ({"display_name": "Tresen Air Cargo"}, TickState.CHANGED),
        ({"display_name": "tresen air"}, TickState.CHANGED),
        ({"phone": "+4969000000"}, TickState.CHANGED),
        ({"account_id": "acc-other"}, TickState.CHANGED),
        ({"device_keys": KEYS[:1]}, TickState.CHANGED),
        ({"device_keys": [*KEYS, "c" * 43]}, TickState.CHANGED),
        ({"revoked": {7}}, TickState.REVOKED),
        ({"revoked": None}, TickState.NO_REVOCATION_LIST),
        ({"identity_changed": True}, TickState.IDENTITY_CHANGED),
        ({"now": NOW + 30 * DAY}, TickState.EXPIRED),
    ],
)
def test_no_tick_when_anything_differs(
    operator: OperatorKey, ring: KeyRing, seen: dict[str, Any], state: TickState
) -> None:
    assert decide(certificate(operator), ring, **seen) is state


def test_a_certificate_from_another_key_is_refused(ring: KeyRing) -> None:
    impostor = OperatorKey.generate()
    assert decide(certificate(impostor), ring) is TickState.UNKNOWN_OPERATOR_KEY


def test_a_certificate_claiming_the_pinned_key_id_but_signed_by_another_is_forged(
    operator: OperatorKey, ring: KeyRing
) -> None:
    impostor = OperatorKey.generate()
    claimed = certificate(impostor)
    body = msgspec.msgpack.encode(
        msgspec.structs.replace(
            decode_certificate(SignedCertificate.from_json(claimed).body), key_id=operator.key_id
        )
    )
    forged = SignedCertificate(body, impostor.sign(CERTIFICATE_PREFIX + body)).to_json()
    assert decide(forged, ring) is TickState.FORGED


def test_an_edited_certificate_body_is_forged(operator: OperatorKey, ring: KeyRing) -> None:
    genuine = certificate(operator)
    other = certificate(operator, display_name="Tresen Airways")
    spliced = {"body": other["body"], "signature": genuine["signature"]}
    assert decide(spliced, ring, display_name="Tresen Airways") is TickState.FORGED
    assert decide({"body": "!!", "signature": "x"}, ring) is TickState.FORGED
    assert decide({"nonsense": 1}, ring) is TickState.FORGED


def test_no_certificate_or_no_pinned_key_means_no_tick(operator: OperatorKey) -> None:
    assert decide(None, KeyRing(operator.public_key)) is TickState.NOT_VERIFIED
    assert decide(certificate(operator), None) is TickState.NO_OPERATOR_KEY


def test_a_retired_operator_key_stops_vouching_after_the_overlap(operator: OperatorKey) -> None:
    ring = KeyRing(operator.public_key)
    successor = OperatorKey.generate()
    ring.update(
        [
            PublishedKey(operator.key_id, operator.public_key, None, 0, NOW + DAY),
            PublishedKey(
                successor.key_id,
                successor.public_key,
                operator.endorse(successor.public_key, NOW),
                NOW,
            ),
        ]
    )
    assert decide(certificate(operator), ring) is TickState.VERIFIED
    assert decide(certificate(operator), ring, now=NOW + DAY) is TickState.EXPIRED
    assert decide(certificate(successor), ring, now=NOW + DAY) is TickState.VERIFIED


def test_profile_reads_hours_in_the_business_time_zone() -> None:
    profile = BusinessProfile.from_json(
        {
            "account_id": "acc-airline",
            "display_name": "Tresen Air",
            "timezone": "Europe/Berlin",
            "hours": {"thu": [["09:00", "17:00"]], "fri": [["09:00", "12:00"]]},
            "closed_dates": ["2026-01-02"],
            "certificate": None,
        }
    )
    # NOW is Thursday 2026-01-01 00:00 UTC, 01:00 in Berlin.
    assert profile.open_now(NOW) is False
    assert profile.opening_status(NOW) == "Closed · opens at 09:00 CET"
    ten_am = NOW + 9 * 3_600_000
    assert profile.open_now(ten_am) is True
    assert profile.opening_status(ten_am) == "Open now · closes at 17:00 CET"
    # Friday is a closed date: the next opening is the Thursday after.
    evening = NOW + 17 * 3_600_000
    assert profile.opening_status(evening) == "Closed · opens Thu 09:00 CET"
    assert profile.hours_lines()[3:5] == ["Thu  09:00-17:00", "Fri  09:00-12:00"]
    assert profile.hours_lines()[0] == "Mon  closed"
    no_hours = BusinessProfile.from_json({"account_id": "x", "display_name": "X"})
    assert no_hours.open_now(NOW) is None
    assert no_hours.opening_status(NOW) == "No opening hours published"

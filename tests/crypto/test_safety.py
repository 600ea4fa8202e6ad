"""Safety numbers: the same on both sides, and different whenever a key or number changes."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from tresen.crypto import DeviceIdentity, KeyFormatError, Party, fingerprint, safety_number

# Fixed Ed25519 identity keys (generated once with vodozemac) for the known-answer vector.
KEY_1 = "TrC1bfDxxEp1PrhNxlZ1D/oFEYSZFy15TuP8+q/o7gw"
KEY_2 = "cYwvYfFH1sOD7zJ5ATSzCBwxyp+OWRS+34aJilhha14"
KEY_3 = "ABUYtiqMQ3i53qOGE/Rue6Tu8Zu++lj+cJypfs/v5Ao"


def make_party(phone: str = "+4915112345678", devices: int = 1) -> Party:
    return Party(phone, [DeviceIdentity.create().ed25519 for _ in range(devices)])


def test_both_sides_compute_the_same_number() -> None:
    customer, business = make_party("+4915112345678"), make_party("+4930123456", devices=3)

    assert safety_number(customer, business) == safety_number(business, customer)


def test_the_number_is_twelve_groups_of_five_digits() -> None:
    number = safety_number(make_party(), make_party("+14155550123"))

    assert re.fullmatch(r"\d{5}( \d{5}){11}", number)


def test_known_answer() -> None:
    customer = Party("+4915112345678", [KEY_2, KEY_1])
    business = Party("+14155550123", [KEY_3])

    assert fingerprint(customer) == "757822775731807516976632774632"
    assert fingerprint(business) == "938940254417853757283652843406"
    assert safety_number(customer, business) == (
        "75782 27757 31807 51697 66327 74632 93894 02544 17853 75728 36528 43406"
    )


def test_the_documented_algorithm() -> None:
    """docs/protocol.md §8 spelled out, independently of the implementation."""
    keys = b"".join(sorted(base64.b64decode(k + "=") for k in (KEY_1, KEY_2)))
    data = (1).to_bytes(2, "big") + keys + b"+4915112345678"
    for _ in range(5200):
        data = hashlib.sha512(data + keys).digest()
    digits = "".join(
        f"{int.from_bytes(data[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5)
    )

    assert fingerprint(Party("+4915112345678", [KEY_1, KEY_2])) == digits


def test_the_order_of_devices_does_not_matter() -> None:
    assert fingerprint(Party("+4915112345678", [KEY_1, KEY_2])) == fingerprint(
        Party("+4915112345678", [KEY_2, KEY_1])
    )


def test_a_changed_key_changes_the_number() -> None:
    mine, theirs = make_party(devices=2), make_party("+14155550123")
    before = safety_number(mine, theirs)

    replaced = Party(mine.phone, [mine.identity_keys[0], DeviceIdentity.create().ed25519])
    reinstalled = Party(theirs.phone, [DeviceIdentity.create().ed25519])

    assert safety_number(replaced, theirs) != before
    assert safety_number(mine, reinstalled) != before


def test_an_added_or_removed_device_changes_the_number() -> None:
    mine, theirs = make_party(devices=2), make_party("+14155550123")
    before = safety_number(mine, theirs)

    added = Party(mine.phone, [*mine.identity_keys, DeviceIdentity.create().ed25519])
    removed = Party(mine.phone, mine.identity_keys[:1])

    assert safety_number(added, theirs) != before
    assert safety_number(removed, theirs) != before


def test_a_changed_phone_number_changes_the_number() -> None:
    mine, theirs = make_party(), make_party("+14155550123")

    moved = Party("+4915199999999", mine.identity_keys)

    assert safety_number(moved, theirs) != safety_number(mine, theirs)


@pytest.mark.parametrize(
    "phone", ["", "4915112345678", "+0123", "+49 151 1234", "+1234567890123456"]
)
def test_a_phone_number_not_in_e164_is_refused(phone: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        fingerprint(Party(phone, [KEY_1]))


def test_keys_must_be_ed25519_in_unpadded_base64() -> None:
    with pytest.raises(ValueError, match="at least one"):
        fingerprint(Party("+4915112345678", []))
    for bad in (KEY_1 + "=", "AAAA", "not a key"):
        with pytest.raises(KeyFormatError):
            fingerprint(Party("+4915112345678", [bad]))

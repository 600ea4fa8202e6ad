"""Verified-business certificates, operator key rotation and revocation lists, as a client
checks them offline with the operator key it pinned."""

from __future__ import annotations

import base64

import msgspec
import pytest
import vodozemac

from tresen.crypto.certificates import (
    CERTIFICATE_PREFIX,
    BusinessCertificate,
    CertificateError,
    ExpiredCertificate,
    ForgedCertificate,
    KeyRing,
    OperatorKey,
    PublishedKey,
    RevokedCertificate,
    SignedCertificate,
    SignedRevocationList,
    StaleRevocationList,
    UnknownOperatorKey,
    check_binding,
    key_fingerprint,
    key_id_of,
    verify_certificate,
    verify_revocations,
)

NOW = 1_767_225_600_000
DAY = 24 * 3600 * 1000


def device_key() -> str:
    return vodozemac.Account().ed25519_key.to_base64()


KEYS = sorted([device_key(), device_key()])


def certificate(key: OperatorKey, serial: int = 1, **fields: object) -> BusinessCertificate:
    values: dict[str, object] = {
        "serial": serial,
        "account_id": "a6a8d2daa6ff17aebf0a720206b257c4",
        "phone": "+4915112345678",
        "display_name": "Bäckerei Müller",
        "device_keys": KEYS,
        "issued_ms": NOW,
        "expires_ms": NOW + 365 * DAY,
        "key_id": key.key_id,
    }
    values.update(fields)
    return BusinessCertificate(**values)


def published(key: OperatorKey, endorsed_by: OperatorKey | None, signs_from: int) -> PublishedKey:
    endorsement = None if endorsed_by is None else endorsed_by.endorse(key.public_key, signs_from)
    return PublishedKey(key.key_id, key.public_key, endorsement, signs_from)


@pytest.fixture
def k1() -> OperatorKey:
    return OperatorKey.generate()


# --- keys ------------------------------------------------------------------------------------


def test_key_id_and_fingerprint_come_from_the_public_key(k1: OperatorKey) -> None:
    raw = base64.b64decode(k1.public_key + "=")
    assert len(raw) == 32
    assert len(k1.public_key) == 43  # unpadded, as vodozemac writes keys
    assert k1.key_id == key_id_of(k1.public_key)
    assert len(k1.key_id) == 16
    groups = k1.fingerprint().split(" ")
    assert len(groups) == 16
    assert all(len(g) == 4 for g in groups)
    assert "".join(groups).startswith(k1.key_id)
    assert key_fingerprint(k1.public_key) == k1.fingerprint()


def test_a_key_survives_its_private_bytes(k1: OperatorKey) -> None:
    again = OperatorKey.from_private_bytes(k1.private_bytes())
    assert again.public_key == k1.public_key


# --- certificates ----------------------------------------------------------------------------


def test_a_signed_certificate_verifies_with_the_pinned_key(k1: OperatorKey) -> None:
    signed = k1.sign_certificate(certificate(k1))

    cert = verify_certificate(signed, KeyRing(k1.public_key), NOW + 1)

    assert cert == certificate(k1)
    assert cert.device_keys == KEYS


def test_the_body_is_a_msgpack_map_in_field_order(k1: OperatorKey) -> None:
    signed = k1.sign_certificate(certificate(k1))
    decoded = msgspec.msgpack.decode(signed.body)
    assert list(decoded) == [
        "v",
        "serial",
        "account_id",
        "phone",
        "display_name",
        "device_keys",
        "issued_ms",
        "expires_ms",
        "key_id",
    ]
    assert decoded["v"] == 1
    # The signature covers the domain prefix and the exact bytes.
    public = k1._private.public_key()
    public.verify(base64.b64decode(signed.signature + "=="), CERTIFICATE_PREFIX + signed.body)


def test_the_json_form_round_trips(k1: OperatorKey) -> None:
    signed = k1.sign_certificate(certificate(k1))
    data = signed.to_json()
    assert base64.b64decode(data["body"]) == signed.body
    assert SignedCertificate.from_json(data) == signed
    with pytest.raises(ForgedCertificate):
        SignedCertificate.from_json({"body": "not base64!", "signature": signed.signature})
    with pytest.raises(ForgedCertificate):
        SignedCertificate.from_json({"body": data["body"]})


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize("index", [0, 5, 20, -1])
def test_a_flipped_bit_in_the_body_is_refused(k1: OperatorKey, index: int) -> None:
    signed = k1.sign_certificate(certificate(k1))
    tampered = SignedCertificate(flip(signed.body, index % len(signed.body)), signed.signature)

    # A flip inside the key id names a key the client does not know; anything else breaks
    # the signature or the encoding.
    with pytest.raises((ForgedCertificate, UnknownOperatorKey)):
        verify_certificate(tampered, KeyRing(k1.public_key), NOW)


def test_a_flipped_bit_in_the_signature_is_forged(k1: OperatorKey) -> None:
    signed = k1.sign_certificate(certificate(k1))
    raw = base64.b64decode(signed.signature + "==")
    bad = base64.b64encode(flip(raw, 10)).decode().rstrip("=")

    with pytest.raises(ForgedCertificate):
        verify_certificate(SignedCertificate(signed.body, bad), KeyRing(k1.public_key), NOW)


def test_a_renamed_body_keeps_nothing_of_the_signature(k1: OperatorKey) -> None:
    signed = k1.sign_certificate(certificate(k1))
    renamed = msgspec.msgpack.encode(certificate(k1, display_name="Bäckerei Mül1er"))

    with pytest.raises(ForgedCertificate):
        verify_certificate(
            SignedCertificate(renamed, signed.signature), KeyRing(k1.public_key), NOW
        )


def test_a_certificate_of_an_unpinned_operator_is_refused(k1: OperatorKey) -> None:
    foreign = OperatorKey.generate()
    signed = foreign.sign_certificate(certificate(foreign))

    with pytest.raises(UnknownOperatorKey):
        verify_certificate(signed, KeyRing(k1.public_key), NOW)


def test_another_key_signing_under_the_pinned_key_id_is_forged(k1: OperatorKey) -> None:
    foreign = OperatorKey.generate()
    body = msgspec.msgpack.encode(certificate(k1))  # names k1
    signed = SignedCertificate(body, foreign.sign(CERTIFICATE_PREFIX + body))

    with pytest.raises(ForgedCertificate):
        verify_certificate(signed, KeyRing(k1.public_key), NOW)


def test_a_revocation_signature_is_no_certificate_signature(k1: OperatorKey) -> None:
    body = msgspec.msgpack.encode(certificate(k1))
    # Signed without the certificate prefix (as if for another purpose).
    signed = SignedCertificate(body, k1.sign(body))
    with pytest.raises(ForgedCertificate):
        verify_certificate(signed, KeyRing(k1.public_key), NOW)


def test_signed_garbage_is_forged(k1: OperatorKey) -> None:
    body = msgspec.msgpack.encode({"key_id": k1.key_id, "serial": "one"})
    signed = SignedCertificate(body, k1.sign(CERTIFICATE_PREFIX + body))
    with pytest.raises(ForgedCertificate):
        verify_certificate(signed, KeyRing(k1.public_key), NOW)
    with pytest.raises(ForgedCertificate):
        verify_certificate(SignedCertificate(b"\xc1", "x"), KeyRing(k1.public_key), NOW)


def test_a_certificate_expires(k1: OperatorKey) -> None:
    signed = k1.sign_certificate(certificate(k1, expires_ms=NOW + DAY))
    ring = KeyRing(k1.public_key)

    verify_certificate(signed, ring, NOW + DAY - 1)
    with pytest.raises(ExpiredCertificate):
        verify_certificate(signed, ring, NOW + DAY)


def test_a_revoked_serial_is_refused(k1: OperatorKey) -> None:
    signed = k1.sign_certificate(certificate(k1, serial=7))
    ring = KeyRing(k1.public_key)

    verify_certificate(signed, ring, NOW, revoked=[3, 8])
    with pytest.raises(RevokedCertificate):
        verify_certificate(signed, ring, NOW, revoked={3, 7})


def test_every_certificate_error_is_a_crypto_error() -> None:
    from tresen.crypto import CryptoError

    for kind in (UnknownOperatorKey, ForgedCertificate, ExpiredCertificate, RevokedCertificate):
        assert issubclass(kind, CertificateError)
        assert issubclass(kind, CryptoError)


# --- binding ---------------------------------------------------------------------------------


def test_the_binding_holds_only_for_what_was_certified(k1: OperatorKey) -> None:
    cert = certificate(k1)
    same = {
        "account_id": cert.account_id,
        "phone": cert.phone,
        "display_name": cert.display_name,
        "device_keys": list(reversed(KEYS)),  # order does not matter
    }
    assert check_binding(cert, **same)
    assert not check_binding(cert, **{**same, "display_name": "Bäckerei Müller GmbH"})
    assert not check_binding(cert, **{**same, "device_keys": [KEYS[0]]})
    assert not check_binding(cert, **{**same, "device_keys": [*KEYS, device_key()]})
    assert not check_binding(cert, **{**same, "device_keys": [KEYS[0], device_key()]})
    assert not check_binding(cert, **{**same, "phone": "+4915100000000"})
    assert not check_binding(cert, **{**same, "account_id": "0" * 32})


# --- rotation --------------------------------------------------------------------------------


def test_the_ring_follows_a_chain_of_endorsements(k1: OperatorKey) -> None:
    k2, k3 = OperatorKey.generate(), OperatorKey.generate()
    ring = KeyRing(k1.public_key)
    # Listed newest first: the ring still follows k1 → k2 → k3.
    update = ring.update(
        [
            published(k3, k2, NOW + 20 * DAY),
            published(k2, k1, NOW + 10 * DAY),
            published(k1, None, NOW),
        ]
    )

    assert sorted(update.added) == sorted([k2.key_id, k3.key_id])
    assert update.ignored == []
    assert ring.key_ids == [k1.key_id, k2.key_id, k3.key_id]
    verify_certificate(k3.sign_certificate(certificate(k3)), ring, NOW + 21 * DAY)


def test_an_unendorsed_key_is_ignored_and_reported(k1: OperatorKey) -> None:
    rogue, stranger = OperatorKey.generate(), OperatorKey.generate()
    ring = KeyRing(k1.public_key)

    update = ring.update(
        [
            PublishedKey(rogue.key_id, rogue.public_key, None, NOW),  # no endorsement
            published(rogue, stranger, NOW),  # endorsed by a key the client does not trust
        ]
    )

    assert update.added == []
    assert update.ignored == [rogue.key_id, rogue.key_id]
    assert rogue.key_id not in ring
    with pytest.raises(UnknownOperatorKey):
        verify_certificate(rogue.sign_certificate(certificate(rogue)), ring, NOW)


def test_an_endorsement_for_other_bytes_does_not_count(k1: OperatorKey) -> None:
    k2 = OperatorKey.generate()
    genuine = published(k2, k1, NOW)
    ring = KeyRing(k1.public_key)

    # The endorsement covers signs_from_ms: changing it breaks the signature.
    moved = PublishedKey(k2.key_id, k2.public_key, genuine.endorsement, NOW + 1)
    # A key id that is not the hash of the key is refused too.
    misnamed = PublishedKey("0" * 16, k2.public_key, genuine.endorsement, NOW)
    update = ring.update([moved, misnamed])

    assert update.added == []
    assert k2.key_id not in ring


def test_a_certificate_of_a_rotated_key_is_valid_until_the_key_retires(k1: OperatorKey) -> None:
    k2 = OperatorKey.generate()
    old = k1.sign_certificate(certificate(k1, serial=1))
    new = k2.sign_certificate(certificate(k2, serial=2))
    ring = KeyRing(k1.public_key)
    rotation = NOW + 10 * DAY
    retires = rotation + 7 * DAY

    ring.update([published(k2, k1, rotation)])
    assert ring.retires_ms(k1.key_id) is None
    ring.update([PublishedKey(k1.key_id, k1.public_key, None, NOW, retires)])
    assert ring.retires_ms(k1.key_id) == retires

    verify_certificate(old, ring, retires - 1)
    verify_certificate(new, ring, retires - 1)
    with pytest.raises(ExpiredCertificate, match="retired"):
        verify_certificate(old, ring, retires)
    verify_certificate(new, ring, retires)


def test_a_retirement_never_moves_later(k1: OperatorKey) -> None:
    ring = KeyRing(k1.public_key)
    ring.update([PublishedKey(k1.key_id, k1.public_key, None, NOW, NOW + DAY)])

    update = ring.update([PublishedKey(k1.key_id, k1.public_key, None, NOW, NOW + 100 * DAY)])

    assert update.retired == []
    assert ring.retires_ms(k1.key_id) == NOW + DAY


def test_a_retired_key_cannot_endorse_a_later_key(k1: OperatorKey) -> None:
    late = OperatorKey.generate()
    ring = KeyRing(k1.public_key)
    ring.update([PublishedKey(k1.key_id, k1.public_key, None, NOW, NOW + DAY)])

    update = ring.update([published(late, k1, NOW + 2 * DAY)])

    assert update.ignored == [late.key_id]


def test_the_ring_round_trips_through_its_json_form(k1: OperatorKey) -> None:
    k2 = OperatorKey.generate()
    ring = KeyRing(k1.public_key)
    ring.update([published(k2, k1, NOW), PublishedKey(k1.key_id, k1.public_key, None, 0, NOW)])

    again = KeyRing.from_json(ring.to_json())

    assert again.key_ids == ring.key_ids
    assert again.retires_ms(k1.key_id) == NOW
    assert again.pinned_key_id == k1.key_id


def test_a_malformed_pinned_key_is_refused() -> None:
    with pytest.raises(CertificateError):
        KeyRing("not a key")


# --- revocation lists ------------------------------------------------------------------------


def test_a_revocation_list_verifies_and_revokes(k1: OperatorKey) -> None:
    ring = KeyRing(k1.public_key)
    signed = k1.sign_revocations(NOW, [9, 3, 3])

    listing = verify_revocations(signed, ring, NOW + 1000, max_age_ms=DAY)

    assert listing.serials == [3, 9]
    assert listing.issued_ms == NOW
    with pytest.raises(RevokedCertificate):
        verify_certificate(
            k1.sign_certificate(certificate(k1, serial=9)), ring, NOW, revoked=listing.serials
        )
    assert SignedRevocationList.from_json(signed.to_json()) == signed


def test_a_stale_revocation_list_is_an_error(k1: OperatorKey) -> None:
    signed = k1.sign_revocations(NOW, [])
    ring = KeyRing(k1.public_key)

    verify_revocations(signed, ring, NOW + DAY, max_age_ms=DAY)
    with pytest.raises(StaleRevocationList):
        verify_revocations(signed, ring, NOW + DAY + 1, max_age_ms=DAY)


def test_a_tampered_or_foreign_revocation_list_is_refused(k1: OperatorKey) -> None:
    ring = KeyRing(k1.public_key)
    signed = k1.sign_revocations(NOW, [5])
    emptied = OperatorKey.generate().sign_revocations(NOW, [])

    with pytest.raises(ForgedCertificate):
        verify_revocations(
            SignedRevocationList(flip(signed.body, len(signed.body) - 20), signed.signature),
            ring,
            NOW,
            max_age_ms=DAY,
        )
    with pytest.raises(UnknownOperatorKey):
        verify_revocations(emptied, ring, NOW, max_age_ms=DAY)


def test_a_revocation_list_by_a_retired_key_is_refused(k1: OperatorKey) -> None:
    ring = KeyRing(k1.public_key)
    ring.update([PublishedKey(k1.key_id, k1.public_key, None, 0, NOW)])

    # Fresh, but a retired (perhaps leaked) key must not vouch that nothing is revoked.
    with pytest.raises(StaleRevocationList, match="retired"):
        verify_revocations(k1.sign_revocations(NOW + 5, []), ring, NOW + 10, max_age_ms=DAY)


def test_a_certificate_signature_is_no_revocation_list_signature(k1: OperatorKey) -> None:
    ring = KeyRing(k1.public_key)
    cert = k1.sign_certificate(certificate(k1))
    with pytest.raises(ForgedCertificate):
        verify_revocations(
            SignedRevocationList(cert.body, cert.signature), ring, NOW, max_age_ms=DAY
        )

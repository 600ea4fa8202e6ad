"""Consent statements signed by a customer's device and checked by anyone with its key."""

from __future__ import annotations

import base64

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tresen.crypto.consent import (
    CONSENT_PREFIX,
    ConsentScope,
    ConsentState,
    ConsentStatement,
    ForgedConsent,
    SignedConsent,
    decode_statement,
    new_statement,
    sign_statement,
    verify_statement,
)
from tresen.crypto.olm import DeviceIdentity

NOW = 1_767_225_600_000
BUSINESS = "b" * 32
CUSTOMER = "c" * 32


def statement_of(
    device: DeviceIdentity,
    *,
    scope: ConsentScope = ConsentScope.MARKETING,
    state: ConsentState = ConsentState.OPTED_IN,
) -> ConsentStatement:
    return new_statement(
        business_account=BUSINESS,
        customer_account=CUSTOMER,
        customer_phone="+4915112345678",
        scope=scope,
        state=state,
        at_ms=NOW,
        device_id=1,
        device_ed25519=device.ed25519,
    )


def test_a_signed_opt_in_verifies_with_the_device_key_alone() -> None:
    device = DeviceIdentity.create()
    signed = sign_statement(device, statement_of(device))

    # What an auditor gets: the JSON record and the device's public key, nothing else.
    record = signed.to_json()
    checked = verify_statement(SignedConsent.from_json(record), device.ed25519)

    assert checked.business_account == BUSINESS
    assert checked.customer_account == CUSTOMER
    assert checked.scope is ConsentScope.MARKETING
    assert checked.state is ConsentState.OPTED_IN
    assert checked.at_ms == NOW
    assert checked.device_id == 1


def test_a_revocation_is_a_statement_too() -> None:
    device = DeviceIdentity.create()
    signed = sign_statement(device, statement_of(device, state=ConsentState.OPTED_OUT))
    assert verify_statement(signed, device.ed25519).state is ConsentState.OPTED_OUT


def test_two_statements_with_equal_fields_differ_in_bytes() -> None:
    device = DeviceIdentity.create()
    a = sign_statement(device, statement_of(device))
    b = sign_statement(device, statement_of(device))
    assert a.body != b.body


def test_a_statement_signed_by_another_device_is_refused() -> None:
    device, other = DeviceIdentity.create(), DeviceIdentity.create()
    signed = sign_statement(device, statement_of(device))
    with pytest.raises(ForgedConsent):
        verify_statement(signed, other.ed25519)


def test_a_statement_naming_another_key_than_its_signer_is_refused() -> None:
    device, other = DeviceIdentity.create(), DeviceIdentity.create()
    # The other device signs a statement that claims to come from the first one.
    claimed = statement_of(device)
    body = msgspec.msgpack.encode(claimed)
    signed = SignedConsent(body, other.sign(CONSENT_PREFIX + body))
    with pytest.raises(ForgedConsent):
        verify_statement(signed, other.ed25519)
    with pytest.raises(ForgedConsent):
        verify_statement(signed, device.ed25519)


def test_an_altered_statement_is_refused() -> None:
    device = DeviceIdentity.create()
    signed = sign_statement(device, statement_of(device, state=ConsentState.OPTED_OUT))
    flipped = msgspec.structs.replace(decode_statement(signed.body), state=ConsentState.OPTED_IN)
    altered = SignedConsent(msgspec.msgpack.encode(flipped), signed.signature)
    with pytest.raises(ForgedConsent):
        verify_statement(altered, device.ed25519)


def test_a_forged_signature_is_refused() -> None:
    device = DeviceIdentity.create()
    signed = sign_statement(device, statement_of(device))
    forged = SignedConsent(signed.body, base64.b64encode(b"\x01" * 64).decode().rstrip("="))
    with pytest.raises(ForgedConsent):
        verify_statement(forged, device.ed25519)
    with pytest.raises(ForgedConsent):
        verify_statement(SignedConsent(signed.body, "not base64!"), device.ed25519)


def test_a_signature_without_the_consent_prefix_is_refused() -> None:
    device = DeviceIdentity.create()
    body = msgspec.msgpack.encode(statement_of(device))
    for message in (body, b"tresen-cert-v1\x00" + body, b"tresen-consent-v2\x00" + body):
        with pytest.raises(ForgedConsent):
            verify_statement(SignedConsent(body, device.sign(message)), device.ed25519)


def test_the_signature_is_plain_ed25519_over_prefix_and_body() -> None:
    # A verifier without vodozemac: any Ed25519 library checks the same bytes.
    private = Ed25519PrivateKey.generate()
    public = base64.b64encode(private.public_key().public_bytes_raw()).decode().rstrip("=")
    statement = new_statement(
        business_account=BUSINESS,
        customer_account=CUSTOMER,
        customer_phone="+4915112345678",
        scope=ConsentScope.UTILITY,
        state=ConsentState.OPTED_IN,
        at_ms=NOW,
        device_id=2,
        device_ed25519=public,
    )
    body = msgspec.msgpack.encode(statement)
    signature = base64.b64encode(private.sign(CONSENT_PREFIX + body)).decode().rstrip("=")
    assert verify_statement(SignedConsent(body, signature), public).device_id == 2


def test_a_non_canonical_or_unknown_body_is_refused() -> None:
    device = DeviceIdentity.create()
    statement = statement_of(device)
    fields = msgspec.structs.asdict(statement)
    reordered = msgspec.msgpack.encode(dict(reversed(list(fields.items()))))
    extra = msgspec.msgpack.encode({**fields, "extra": 1})
    newer = msgspec.msgpack.encode({**fields, "v": 2})
    bad_scope = msgspec.msgpack.encode({**fields, "scope": "everything"})
    short_nonce = msgspec.msgpack.encode({**fields, "nonce": b"x"})
    for body in (reordered, extra, newer, bad_scope, short_nonce, b"\xc1"):
        signed = SignedConsent(body, device.sign(CONSENT_PREFIX + body))
        with pytest.raises(ForgedConsent):
            verify_statement(signed, device.ed25519)


def test_signing_refuses_a_statement_for_another_key() -> None:
    device, other = DeviceIdentity.create(), DeviceIdentity.create()
    with pytest.raises(ValueError, match="another Ed25519 key"):
        sign_statement(other, statement_of(device))

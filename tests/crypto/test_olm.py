"""Olm identities and sessions: key publication, conversations, pickles and failure modes."""

from __future__ import annotations

import base64
import os
from dataclasses import replace

import pytest
import vodozemac

from tresen.crypto import (
    Ciphertext,
    CryptoError,
    DecryptionError,
    DeviceIdentity,
    KeyFormatError,
    OlmSession,
    PickleError,
    SignatureError,
    SignedKey,
    verify_signed_key,
)
from tresen.wire.keys import fallback_key_message, one_time_key_message


def claim_one_time_key(owner: DeviceIdentity) -> SignedKey:
    """What a claim against the relay hands out: one published, signed one-time key."""
    [key, *_] = owner.generate_one_time_keys(5)
    owner.mark_published()
    return key


def start_conversation(alice: DeviceIdentity, bob: DeviceIdentity) -> tuple[OlmSession, OlmSession]:
    """Alice opens a session on a verified key of Bob's; Bob answers once (ratchets to type 1)."""
    key = claim_one_time_key(bob)
    verify_signed_key(bob.ed25519, key, fallback=False)
    outbound = alice.create_outbound_session(bob.curve25519, key.public_key)
    inbound, plaintext = bob.create_inbound_session(alice.curve25519, outbound.encrypt(b"hello"))
    assert plaintext == b"hello"
    assert outbound.decrypt(inbound.encrypt(b"hi")) == b"hi"
    return outbound, inbound


@pytest.fixture
def alice() -> DeviceIdentity:
    return DeviceIdentity.create()


@pytest.fixture
def bob() -> DeviceIdentity:
    return DeviceIdentity.create()


@pytest.fixture
def pickle_key() -> bytes:
    return os.urandom(32)


# --- identity and published keys ------------------------------------------------------------


def test_identity_keys_are_canonical_unpadded_base64(alice: DeviceIdentity) -> None:
    assert len(alice.curve25519) == 43
    assert len(alice.ed25519) == 43
    assert vodozemac.Curve25519PublicKey.from_base64(alice.curve25519).to_base64() == (
        alice.curve25519
    )


def test_one_time_keys_are_signed_in_the_relay_format(alice: DeviceIdentity) -> None:
    keys = alice.generate_one_time_keys(3)

    assert len(keys) == 3
    signer = vodozemac.Ed25519PublicKey.from_base64(alice.ed25519)
    for key in keys:
        signer.verify_signature(
            one_time_key_message(key.key_id, key.public_key),
            vodozemac.Ed25519Signature.from_base64(key.signature),
        )
        verify_signed_key(alice.ed25519, key, fallback=False)


def test_unpublished_keys_are_returned_again_until_marked_published(
    alice: DeviceIdentity,
) -> None:
    first = alice.generate_one_time_keys(3)
    again = alice.generate_one_time_keys(2)

    assert len(again) == 5
    assert {k.key_id for k in first} <= {k.key_id for k in again}

    alice.mark_published()
    fresh = alice.generate_one_time_keys(4)
    assert len(fresh) == 4
    assert not {k.key_id for k in fresh} & {k.key_id for k in again}
    assert alice.generate_one_time_keys(0) == fresh


def test_one_time_keys_never_exceed_the_maximum(alice: DeviceIdentity) -> None:
    assert alice.max_one_time_keys == 50

    assert len(alice.generate_one_time_keys(60)) == 50
    assert len(alice.generate_one_time_keys(10)) == 50
    alice.mark_published()
    assert len(alice.generate_one_time_keys(51)) == 50


def test_negative_key_count_is_refused(alice: DeviceIdentity) -> None:
    with pytest.raises(ValueError, match="negative"):
        alice.generate_one_time_keys(-1)


def test_one_time_keys_come_oldest_first(alice: DeviceIdentity) -> None:
    ids = [k.key_id for k in alice.generate_one_time_keys(20)]
    order = [vodozemac_key_number(i) for i in ids]

    assert order == sorted(order)


def vodozemac_key_number(key_id: str) -> int:
    return int.from_bytes(base64.b64decode(key_id + "="))


def test_a_forged_one_time_key_signature_is_refused(
    alice: DeviceIdentity, bob: DeviceIdentity
) -> None:
    key = claim_one_time_key(bob)
    forged = replace(key, signature=alice.sign(one_time_key_message(key.key_id, key.public_key)))
    swapped = replace(key, public_key=alice.generate_one_time_keys(1)[0].public_key)

    for bad in (forged, swapped, replace(key, signature="not a signature")):
        with pytest.raises(SignatureError):
            verify_signed_key(bob.ed25519, bad, fallback=False)


def test_a_one_time_key_signature_does_not_pass_as_a_fallback_key(bob: DeviceIdentity) -> None:
    key = claim_one_time_key(bob)
    fallback = bob.generate_fallback_key()

    with pytest.raises(SignatureError):
        verify_signed_key(bob.ed25519, key, fallback=True)
    with pytest.raises(SignatureError):
        verify_signed_key(bob.ed25519, fallback, fallback=False)


def test_keys_that_are_not_canonical_base64_are_refused(
    alice: DeviceIdentity, bob: DeviceIdentity
) -> None:
    key = claim_one_time_key(bob)

    with pytest.raises(KeyFormatError):
        verify_signed_key(bob.ed25519 + "=", key, fallback=False)
    with pytest.raises(KeyFormatError):
        verify_signed_key(bob.ed25519, replace(key, public_key="AAAA"), fallback=False)
    with pytest.raises(KeyFormatError):
        alice.create_outbound_session("not a key", key.public_key)
    with pytest.raises(KeyFormatError):
        alice.create_outbound_session(bob.curve25519, key.public_key + "=")


def test_a_low_order_key_is_refused(alice: DeviceIdentity, bob: DeviceIdentity) -> None:
    low_order = vodozemac.Curve25519PublicKey.from_bytes(bytes(32)).to_base64()

    with pytest.raises(CryptoError, match="cannot create a session"):
        alice.create_outbound_session(bob.curve25519, low_order)


# --- conversations ---------------------------------------------------------------------------


def test_a_conversation_ratchets_both_ways(alice: DeviceIdentity, bob: DeviceIdentity) -> None:
    key = claim_one_time_key(bob)
    verify_signed_key(bob.ed25519, key, fallback=False)
    outbound = alice.create_outbound_session(bob.curve25519, key.public_key)

    first = [outbound.encrypt(f"hello bob #{i}".encode()) for i in range(3)]
    assert [m.type for m in first] == [0, 0, 0]  # pre-key messages until Bob replies

    inbound, plaintext = bob.create_inbound_session(alice.curve25519, first[0])
    assert plaintext == b"hello bob #0"
    assert inbound.session_id == outbound.session_id
    assert [inbound.decrypt(m) for m in first[1:]] == [b"hello bob #1", b"hello bob #2"]

    reply = inbound.encrypt(b"hi alice")
    assert reply.type == 1
    assert outbound.decrypt(reply) == b"hi alice"

    for i in range(3):
        to_bob = outbound.encrypt(f"ping {i}".encode())
        assert to_bob.type == 1
        assert inbound.decrypt(to_bob) == f"ping {i}".encode()
        assert outbound.decrypt(inbound.encrypt(f"pong {i}".encode())) == f"pong {i}".encode()


def test_messages_decrypt_out_of_order(alice: DeviceIdentity, bob: DeviceIdentity) -> None:
    outbound, inbound = start_conversation(alice, bob)
    messages = [outbound.encrypt(f"m{i}".encode()) for i in range(4)]

    assert [inbound.decrypt(m) for m in reversed(messages)] == [b"m3", b"m2", b"m1", b"m0"]


def test_pre_key_messages_match_only_their_session(
    alice: DeviceIdentity, bob: DeviceIdentity
) -> None:
    carol = DeviceIdentity.create()
    alice_to_bob = alice.create_outbound_session(bob.curve25519, claim_one_time_key(bob).public_key)
    carol_to_bob = carol.create_outbound_session(bob.curve25519, claim_one_time_key(bob).public_key)
    first = alice_to_bob.encrypt(b"one")
    inbound, _ = bob.create_inbound_session(alice.curve25519, first)

    assert inbound.matches(alice_to_bob.encrypt(b"two"))
    assert not inbound.matches(carol_to_bob.encrypt(b"other"))
    assert not inbound.matches(Ciphertext(0, b"garbage"))
    assert not inbound.matches(inbound.encrypt(b"normal"))  # type 1: never a match


def test_pickles_survive_mid_conversation(
    alice: DeviceIdentity, bob: DeviceIdentity, pickle_key: bytes
) -> None:
    outbound, inbound = start_conversation(alice, bob)
    in_flight = outbound.encrypt(b"sent before the restart")

    alice = DeviceIdentity.from_pickle(alice.pickle(pickle_key), pickle_key)
    bob = DeviceIdentity.from_pickle(bob.pickle(pickle_key), pickle_key)
    outbound = OlmSession.from_pickle(outbound.pickle(pickle_key), pickle_key)
    restored = OlmSession.from_pickle(inbound.pickle(pickle_key), pickle_key)

    assert restored.session_id == inbound.session_id
    assert restored.decrypt(in_flight) == b"sent before the restart"
    assert outbound.decrypt(restored.encrypt(b"after")) == b"after"
    assert restored.decrypt(outbound.encrypt(b"and back")) == b"and back"
    # The restored identity keeps its keys and can still sign and open sessions.
    carol = DeviceIdentity.create()
    key = claim_one_time_key(bob)
    verify_signed_key(bob.ed25519, key, fallback=False)
    to_bob = carol.create_outbound_session(bob.curve25519, key.public_key)
    assert bob.create_inbound_session(carol.curve25519, to_bob.encrypt(b"x"))[1] == b"x"


def test_a_wrong_pickle_key_is_refused(
    alice: DeviceIdentity, bob: DeviceIdentity, pickle_key: bytes
) -> None:
    outbound, _ = start_conversation(alice, bob)
    other = os.urandom(32)

    with pytest.raises(PickleError):
        DeviceIdentity.from_pickle(alice.pickle(pickle_key), other)
    with pytest.raises(PickleError):
        OlmSession.from_pickle(outbound.pickle(pickle_key), other)
    with pytest.raises(PickleError):
        OlmSession.from_pickle("corrupted", pickle_key)
    with pytest.raises(PickleError, match="32 bytes"):
        alice.pickle(b"short")


def test_corrupted_ciphertext_is_refused(alice: DeviceIdentity, bob: DeviceIdentity) -> None:
    outbound, inbound = start_conversation(alice, bob)
    message = outbound.encrypt(b"secret")
    flipped = bytearray(message.body)
    flipped[len(flipped) // 2] ^= 0x01

    for bad in (
        Ciphertext(message.type, bytes(flipped)),
        Ciphertext(message.type, message.body[:-1]),
        Ciphertext(message.type, b""),
        Ciphertext(7, message.body),
        Ciphertext(-1, message.body),
    ):
        with pytest.raises(DecryptionError):
            inbound.decrypt(bad)
    assert inbound.decrypt(message) == b"secret"  # the session is unharmed


def test_a_replayed_message_is_refused(alice: DeviceIdentity, bob: DeviceIdentity) -> None:
    outbound, inbound = start_conversation(alice, bob)
    message = outbound.encrypt(b"pay 10 EUR")
    assert inbound.decrypt(message) == b"pay 10 EUR"

    with pytest.raises(DecryptionError):
        inbound.decrypt(message)


def test_a_replayed_pre_key_message_cannot_open_a_second_session(
    alice: DeviceIdentity, bob: DeviceIdentity
) -> None:
    outbound = alice.create_outbound_session(bob.curve25519, claim_one_time_key(bob).public_key)
    first = outbound.encrypt(b"hello")
    bob.create_inbound_session(alice.curve25519, first)

    with pytest.raises(DecryptionError):  # the one-time key is used up
        bob.create_inbound_session(alice.curve25519, first)


def test_a_message_for_another_session_is_refused(
    alice: DeviceIdentity, bob: DeviceIdentity
) -> None:
    _, inbound = start_conversation(alice, bob)
    other_out, _ = start_conversation(alice, DeviceIdentity.create())

    with pytest.raises(DecryptionError):
        inbound.decrypt(other_out.encrypt(b"not for bob"))


def test_only_pre_key_messages_open_sessions(alice: DeviceIdentity, bob: DeviceIdentity) -> None:
    outbound, _ = start_conversation(alice, bob)

    with pytest.raises(DecryptionError, match="pre-key"):
        bob.create_inbound_session(alice.curve25519, outbound.encrypt(b"type 1"))
    with pytest.raises(DecryptionError):
        bob.create_inbound_session(alice.curve25519, Ciphertext(0, b"garbage"))


def test_sessions_open_on_the_fallback_key_and_it_stays_usable(bob: DeviceIdentity) -> None:
    fallback = bob.generate_fallback_key()
    signer = vodozemac.Ed25519PublicKey.from_base64(bob.ed25519)
    signer.verify_signature(
        fallback_key_message(fallback.key_id, fallback.public_key),
        vodozemac.Ed25519Signature.from_base64(fallback.signature),
    )
    bob.mark_published()
    verify_signed_key(bob.ed25519, fallback, fallback=True)

    for sender in (DeviceIdentity.create(), DeviceIdentity.create()):
        outbound = sender.create_outbound_session(bob.curve25519, fallback.public_key)
        inbound, plaintext = bob.create_inbound_session(sender.curve25519, outbound.encrypt(b"hi"))
        assert plaintext == b"hi"
        assert outbound.decrypt(inbound.encrypt(b"hello")) == b"hello"


def test_the_previous_fallback_key_still_opens_sessions(bob: DeviceIdentity) -> None:
    old = bob.generate_fallback_key()
    bob.mark_published()
    new = bob.generate_fallback_key()
    assert new.key_id != old.key_id

    sender = DeviceIdentity.create()
    outbound = sender.create_outbound_session(bob.curve25519, old.public_key)
    assert bob.create_inbound_session(sender.curve25519, outbound.encrypt(b"late"))[1] == b"late"

"""The client key (file or environment) and sealing secrets with it."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from tresen.crypto import SecretsError, key_from_env, load_or_create_key_file, seal, unseal


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


# --- key file --------------------------------------------------------------------------------


def test_a_new_key_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "client.key"

    key = load_or_create_key_file(path)

    assert len(key) == 32
    assert path.read_bytes() == key
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700


def test_the_same_key_is_loaded_again(tmp_path: Path) -> None:
    path = tmp_path / "client.key"

    assert load_or_create_key_file(path) == load_or_create_key_file(path)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "client.key"
    load_or_create_key_file(path)
    path.chmod(0o644)

    with pytest.raises(SecretsError, match=r"permissions 0644.*chmod 600"):
        load_or_create_key_file(path)
    assert mode_of(path) == 0o644  # refused, not silently "fixed"


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_a_key_file_of_the_wrong_length_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "client.key"
    path.write_bytes(os.urandom(size))
    path.chmod(0o600)

    with pytest.raises(SecretsError, match="exactly 32 bytes"):
        load_or_create_key_file(path)


def test_a_folder_in_place_of_the_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "client.key"
    path.mkdir(mode=0o700)

    with pytest.raises(SecretsError, match="not a regular file"):
        load_or_create_key_file(path)


# --- key from the environment ----------------------------------------------------------------


def test_a_key_in_hex_is_accepted(key: bytes) -> None:
    assert key_from_env(key.hex()) == key
    assert key_from_env(key.hex().upper()) == key
    assert key_from_env(f"  {key.hex()}\n") == key


def test_a_key_in_base64_is_accepted(key: bytes) -> None:
    assert key_from_env(base64.b64encode(key).decode()) == key
    assert key_from_env(base64.b64encode(key).decode().rstrip("=")) == key
    assert key_from_env(base64.urlsafe_b64encode(key).decode()) == key


@pytest.mark.parametrize(
    "value",
    [
        "",
        "00" * 31,
        "00" * 33,
        "zz" * 32,
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
        "not a key at all!",
    ],
)
def test_anything_else_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(SecretsError, match="64 hex digits or as base64") as raised:
        key_from_env(value)
    if value:
        assert value not in str(raised.value)


# --- sealing ---------------------------------------------------------------------------------


def test_seal_round_trip(key: bytes) -> None:
    sealed = seal(key, b"device token", context=b"device-token")

    assert b"device token" not in sealed
    assert len(sealed) == 12 + len(b"device token") + 16
    assert unseal(key, sealed, context=b"device-token") == b"device token"
    assert unseal(key, seal(key, b"", context=b"x"), context=b"x") == b""


def test_every_seal_uses_a_fresh_nonce(key: bytes) -> None:
    assert seal(key, b"same", context=b"c") != seal(key, b"same", context=b"c")


def test_a_tampered_value_does_not_open(key: bytes) -> None:
    sealed = seal(key, b"device token", context=b"device-token")

    for i in (0, 12, len(sealed) - 1):  # nonce, ciphertext, tag
        tampered = bytearray(sealed)
        tampered[i] ^= 0x80
        with pytest.raises(SecretsError, match="does not open"):
            unseal(key, bytes(tampered), context=b"device-token")
    with pytest.raises(SecretsError):
        unseal(key, sealed[:-1], context=b"device-token")
    with pytest.raises(SecretsError, match="too short"):
        unseal(key, sealed[:20], context=b"device-token")


def test_a_wrong_key_or_context_does_not_open(key: bytes) -> None:
    sealed = seal(key, b"device token", context=b"device-token")

    with pytest.raises(SecretsError):
        unseal(os.urandom(32), sealed, context=b"device-token")
    with pytest.raises(SecretsError):
        unseal(key, sealed, context=b"session-pickle")


def test_keys_of_the_wrong_size_are_refused() -> None:
    with pytest.raises(SecretsError, match="32 bytes"):
        seal(bytes(16), b"x", context=b"c")
    with pytest.raises(SecretsError, match="32 bytes"):
        unseal(bytes(16), bytes(40), context=b"c")

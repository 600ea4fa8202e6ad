"""Secrets at rest: the client's 32-byte key, and AES-256-GCM sealing of values with it.

The key pickles vodozemac state and seals the device token and other secrets kept in the
client's local database. It comes from a key file only its owner can read, or from the
environment (``TRESEN_CLIENT_KEY``, 64 hex digits or base64).
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tresen.crypto.olm import CryptoError

__all__ = [
    "KEY_BYTES",
    "NONCE_BYTES",
    "SecretsError",
    "key_from_env",
    "load_or_create_key_file",
    "seal",
    "unseal",
]

KEY_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16


class SecretsError(CryptoError):
    """A key that cannot be used, or a sealed value that does not open."""


def load_or_create_key_file(path: Path) -> bytes:
    """The key stored at ``path``; a new random one (file mode 0600) if there is none.

    The parent folder is created with mode 0700. An existing file that group or others may
    access, or that does not hold exactly 32 bytes, is refused rather than used or replaced.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    key = os.urandom(KEY_BYTES)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        # A half-written key file would be refused forever after; leave nothing behind.
        path.unlink(missing_ok=True)
        raise
    return key


def _read_key_file(path: Path) -> bytes:
    # A raw descriptor, not Path.open: a folder opens too, and is then refused by the check.
    fd = os.open(path, os.O_RDONLY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretsError(f"key file {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise SecretsError(
                f"key file {path} has permissions {mode:04o}; others must not access it: "
                f"run `chmod 600 {path}`"
            )
        key = b""
        while len(key) <= KEY_BYTES and (chunk := os.read(fd, KEY_BYTES + 1 - len(key))):
            key += chunk
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        found = "more" if len(key) > KEY_BYTES else str(len(key))
        raise SecretsError(f"key file {path} must hold exactly {KEY_BYTES} bytes, not {found}")
    return key


def key_from_env(value: str) -> bytes:
    """A 32-byte key written as 64 hex digits or as base64 (standard or URL-safe alphabet).

    The value is a secret: error messages never repeat it.
    """
    text = value.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    padded = text + "=" * (-len(text) % 4)
    for altchars in (b"+/", b"-_"):
        try:
            key = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(key) == KEY_BYTES:
            return key
    raise SecretsError(f"the key must be {KEY_BYTES} bytes as 64 hex digits or as base64")


def seal(key: bytes, plaintext: bytes, *, context: bytes) -> bytes:
    """``nonce (12 bytes) || AES-256-GCM(plaintext)``, with ``context`` as associated data.

    ``context`` names what the value is (e.g. ``b"device-token"``), so a sealed value copied
    into another column does not open there.
    """
    nonce = os.urandom(NONCE_BYTES)
    return nonce + _aead(key).encrypt(nonce, plaintext, context)


def unseal(key: bytes, sealed: bytes, *, context: bytes) -> bytes:
    """The plaintext of :func:`seal`; a wrong key or context, or any change, is refused."""
    if len(sealed) < NONCE_BYTES + _TAG_BYTES:
        raise SecretsError("sealed value is too short")
    try:
        return _aead(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)
    except InvalidTag:
        raise SecretsError(
            "sealed value does not open: wrong key or context, or it was altered"
        ) from None


def _aead(key: bytes) -> AESGCM:
    if len(key) != KEY_BYTES:
        raise SecretsError(f"the key must be {KEY_BYTES} bytes, not {len(key)}")
    return AESGCM(key)

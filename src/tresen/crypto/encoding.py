"""Byte encodings shared by the signed formats: base64 as vodozemac writes it, Ed25519 keys."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["ED25519_KEY_BYTES", "ED25519_SIGNATURE_BYTES", "b64", "ed25519_public_key", "unb64"]

ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64


def b64(raw: bytes) -> str:
    """Unpadded standard base64."""
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def unb64(text: str, size: int | None = None) -> bytes:
    """Standard base64, padding optional; raises ``ValueError`` on anything else."""
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if size is not None and len(raw) != size:
        raise ValueError(f"expected {size} bytes, got {len(raw)}")
    return raw


def ed25519_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key in canonical unpadded base64; ``ValueError`` otherwise."""
    raw = unb64(text, ED25519_KEY_BYTES)
    if b64(raw) != text:
        raise ValueError("not canonical unpadded base64")
    return Ed25519PublicKey.from_public_bytes(raw)

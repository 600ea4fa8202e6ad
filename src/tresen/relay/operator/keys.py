"""The operator signing key at rest: sealed with a key-encryption key, never in the clear.

The private half of every operator key is stored in ``operator_keys.private_sealed`` as
AES-256-GCM (``crypto.secrets.seal``) under a 32-byte key-encryption key (KEK), with the key id
as associated data so a sealed key copied into another row does not open. The KEK comes from
``TRESEN_OPERATOR_KEY`` (64 hex digits or base64) or else from a key file (default
``data_dir/operator.key``, mode 0600, created on first start). Every relay process over the
same database needs the same KEK.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tresen.core.settings import Settings
from tresen.crypto.certificates import CertificateError, OperatorKey
from tresen.crypto.secrets import SecretsError, key_from_env, load_or_create_key_file, seal, unseal

__all__ = ["KeyEncryptionKey", "OperatorKeyError", "load_kek"]


class OperatorKeyError(Exception):
    """The operator signing key cannot be used: no key-encryption key, or the wrong one."""


@dataclass(frozen=True, slots=True)
class KeyEncryptionKey:
    key: bytes
    source: str
    """Where the key came from, for error messages (never the key itself)."""

    def seal(self, operator_key: OperatorKey) -> bytes:
        return seal(self.key, operator_key.private_bytes(), context=_context(operator_key.key_id))

    def unseal(self, key_id: str, public_key: str, sealed: bytes) -> OperatorKey:
        try:
            raw = unseal(self.key, sealed, context=_context(key_id))
            operator_key = OperatorKey.from_private_bytes(raw)
        except (SecretsError, CertificateError):
            raise OperatorKeyError(
                f"the operator signing key {key_id} does not open with the key-encryption key "
                f"from {self.source}: it is not the key the signing key was sealed with "
                "(check TRESEN_OPERATOR_KEY or the key file)"
            ) from None
        if operator_key.public_key != public_key:
            raise OperatorKeyError(f"operator key {key_id} does not match its public key")
        return operator_key


def _context(key_id: str) -> bytes:
    return b"operator-key:" + key_id.encode()


def load_kek(settings: Settings, *, keys_exist: bool) -> KeyEncryptionKey:
    """The KEK from ``TRESEN_OPERATOR_KEY`` or the key file.

    A key file is created only while there are no operator keys yet: once keys exist, a
    missing file means the KEK was lost or misplaced, and a fresh one could not open them.
    """
    if settings.operator_key is not None:
        try:
            return KeyEncryptionKey(
                key_from_env(settings.operator_key.get_secret_value()), "TRESEN_OPERATOR_KEY"
            )
        except SecretsError as exc:
            raise OperatorKeyError(f"TRESEN_OPERATOR_KEY: {exc}") from None
    path: Path = settings.resolved_operator_key_file
    if keys_exist and not path.exists():
        raise OperatorKeyError(
            "the operator signing key in the database is sealed with a key-encryption key, "
            f"but TRESEN_OPERATOR_KEY is not set and the key file {path} does not exist"
        )
    try:
        return KeyEncryptionKey(load_or_create_key_file(path), f"key file {path}")
    except (SecretsError, OSError) as exc:
        raise OperatorKeyError(f"operator key file: {exc}") from None

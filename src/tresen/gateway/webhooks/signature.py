"""The ``X-Hub-Signature-256`` header of the Cloud API's webhooks.

``sha256=`` followed by the hex HMAC-SHA256 of the raw request body, keyed with the app secret.
Receivers (pywa, Meta's samples) verify the exact bytes they received, so a body is signed once
as it will be sent and never re-serialised.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["HEADER", "sign", "verify"]

HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


def sign(app_secret: bytes, body: bytes) -> str:
    """The header value for ``body``: ``sha256=<hex HMAC-SHA256(app_secret, body)>``."""
    return _PREFIX + hmac.new(app_secret, body, hashlib.sha256).hexdigest()


def verify(app_secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` (compared in constant time)."""
    if not header or not header.startswith(_PREFIX):
        return False
    expected = hmac.new(app_secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header[len(_PREFIX) :].strip().lower().encode())

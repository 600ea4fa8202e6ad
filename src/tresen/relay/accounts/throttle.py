"""The registration throttle's buckets, as stored: an HMAC, never a phone number or address.

A bucket names a phone number and the client's address (``code:pair:{phone}:{source}``) or an
address alone. ``rate_events`` holds it as HMAC-SHA256 under the key of the throttle window the
event fell in (``slot`` = time // the window); the throttle reads a bucket under the current
and the previous window's key, since it counts events up to one window back. Keys are random,
kept in ``throttle_keys`` so that every relay node counts alike, and deleted with the events of
their window by the retention task: after that nobody, the operator included, can tell which
number or address an old bucket was.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.settings import Limits
from tresen.relay.accounts import repo

__all__ = ["StoredBucket", "ThrottleKeys", "throttle_window_ms"]


def throttle_window_ms(limits: Limits) -> int:
    """How far back the throttle counts: code requests over ``code_request_window_s``, wrong
    codes over ``code_ttl_s``; an event older than that is never read again."""
    return max(limits.code_request_window_s, limits.code_ttl_s) * 1000


@dataclass(frozen=True, slots=True)
class StoredBucket:
    """One bucket as it is written now (``current``) and as it was written in the previous
    window (``previous``)."""

    current: str
    previous: str

    @property
    def both(self) -> list[str]:
        return [self.current, self.previous]


class ThrottleKeys:
    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        # Keys never change once made; a process keeps those of the last two windows.
        self._keys: dict[int, bytes] = {}

    def slot(self, now_ms: int) -> int:
        return now_ms // self.window_ms

    async def stored(
        self, conn: AsyncConnection, buckets: Sequence[str], now_ms: int
    ) -> list[StoredBucket]:
        """``buckets`` as ``rate_events`` holds them, under this window's and the last one's
        key (made if missing)."""
        slot = self.slot(now_ms)
        current, previous = await self._key(conn, slot), await self._key(conn, slot - 1)
        return [StoredBucket(_mac(current, b), _mac(previous, b)) for b in buckets]

    async def _key(self, conn: AsyncConnection, slot: int) -> bytes:
        key = self._keys.get(slot)
        if key is None:
            # Another node may make it at the same time: the first one stored is everyone's.
            key = await repo.throttle_key(conn, slot, secrets.token_bytes(32))
            self._keys = {s: k for s, k in self._keys.items() if s >= slot - 1}
            self._keys[slot] = key
        return key


def _mac(key: bytes, bucket: str) -> str:
    return hmac.new(key, bucket.encode(), hashlib.sha256).hexdigest()

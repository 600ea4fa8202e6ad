"""Key directory rules: signature checks, the 50-key cap and atomic one-time-key claims."""

from __future__ import annotations

from collections.abc import Callable

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.ids import DevicePk
from tresen.core.settings import Limits

__all__ = ["KeyService"]


class KeyService:
    def __init__(self, db: Database, clock: Clock, limits: Limits) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        # Called with (device_pk, remaining) when a claim leaves a device with few keys.
        self.on_keys_low: Callable[[DevicePk, int], None] | None = None

    async def one_time_key_count(self, device_pk: DevicePk) -> int:
        raise NotImplementedError

"""Time as the rules see it.

Every time-dependent rule reads the time from an injected :class:`Clock`, so tests move time
explicitly instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["DAY_MS", "Clock", "ManualClock", "SystemClock", "day_start_ms"]

DAY_MS = 86_400_000


def day_start_ms(ms: int) -> int:
    """The first millisecond of the UTC day ``ms`` falls in: the precision the relay keeps of
    when a person did something nobody needs to the minute (a device's last connection)."""
    return ms - ms % DAY_MS


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(
        self, *, ms: int = 0, seconds: float = 0, minutes: float = 0, hours: float = 0
    ) -> None:
        self._now += ms + int((seconds + minutes * 60 + hours * 3600) * 1000)

    def set(self, now_ms: int) -> None:
        self._now = now_ms

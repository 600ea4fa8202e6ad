"""In-process token buckets, one per key, on an injected clock."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable

from tresen.core.clock import Clock

__all__ = ["TokenBuckets"]


class TokenBuckets:
    """``rate`` tokens per second up to ``burst``; at most ``max_keys`` buckets are tracked."""

    def __init__(self, clock: Clock, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def take(self, key: Hashable, cost: float = 1.0) -> int:
        """Take ``cost`` tokens; 0 on success, else milliseconds until they would be there."""
        now = self.clock.now_ms()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate / 1000)
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, now)
            wait_ms = 0
        else:
            self._buckets[key] = (tokens, now)
            wait_ms = max(1, math.ceil((cost - tokens) * 1000 / self.rate))
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait_ms

    def give_back(self, key: Hashable, cost: float = 1.0) -> None:
        """Return tokens taken for something that then did not happen."""
        found = self._buckets.get(key)
        if found is not None:
            self._buckets[key] = (min(self.burst, found[0] + cost), found[1])

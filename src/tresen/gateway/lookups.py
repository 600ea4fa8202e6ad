"""Numbers recently found not to be on the network, remembered for a while.

A Cloud API client that sends to a number nobody registered gets 131026 — every time, also
when it retries the same number in a loop. Asking the relay each time would spend the
device's lookup budget (the relay limits lookups so that no device can enumerate who uses
the service) and turn the answer into a rate limit; a bounded memory with a time to live
keeps the answer and the budget.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["UnknownNumbers"]


class UnknownNumbers:
    """At most ``max_entries`` numbers, each forgotten ``ttl_ms`` after it was found unknown
    (it may register meanwhile); the oldest go first when full."""

    def __init__(self, *, ttl_ms: int, max_entries: int) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self._until: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def holds(self, phone: str, now_ms: int) -> bool:
        until = self._until.get(phone)
        if until is None:
            return False
        if until <= now_ms:
            del self._until[phone]
            return False
        return True

    def add(self, phone: str, now_ms: int) -> None:
        self._until.pop(phone, None)
        self._until[phone] = now_ms + self.ttl_ms
        while len(self._until) > self.max_entries:
            self._until.popitem(last=False)

    def discard(self, phone: str) -> None:
        self._until.pop(phone, None)

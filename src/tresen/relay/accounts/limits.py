"""The registration and lookup limits as pure functions of times and counts.

``AccountService`` reads the event times from the database and asks these functions whether
one more is allowed, so the rules are tested with plain numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["backoff_wait_ms", "keeps_code", "lookup_interval_ms", "take_lookup", "window_wait_ms"]


def window_wait_ms(times_ms: Sequence[int], now_ms: int, window_ms: int, allowed: int) -> int:
    """0 if one more event fits into the sliding window of ``window_ms``; otherwise how long
    until enough of the ``times_ms`` inside it have left it."""
    recent = sorted(t for t in times_ms if t > now_ms - window_ms)
    if len(recent) < allowed:
        return 0
    return recent[len(recent) - allowed] + window_ms - now_ms


def backoff_wait_ms(
    times_ms: Sequence[int], now_ms: int, window_ms: int, base_ms: int, max_ms: int
) -> int:
    """How long a source still waits before its next code request for a number: after the
    n-th request inside the window, ``base_ms`` · 2ⁿ⁻¹ (at most ``max_ms``) from the last."""
    recent = [t for t in times_ms if t > now_ms - window_ms]
    if not recent or base_ms <= 0:
        return 0
    wait = min(base_ms << min(len(recent) - 1, 32), max_ms)
    return max(0, max(recent) + wait - now_ms)


def keeps_code(expires_ms: int | None, now_ms: int, ttl_ms: int) -> bool:
    """Whether a request re-sends the pending code rather than a new one: while at least half
    of its life is left, so repeated requests (anyone's) never change the code its owner
    received, and a re-sent code is not about to expire."""
    return expires_ms is not None and expires_ms - now_ms >= ttl_ms // 2


def lookup_interval_ms(lookups_per_hour: int) -> int:
    return max(1, 3_600_000 // lookups_per_hour)


def take_lookup(
    tat_ms: int | None, now_ms: int, interval_ms: int, burst: int
) -> tuple[int | None, int]:
    """One lookup from an account's budget (a token bucket written as GCRA: one theoretical
    arrival time per account instead of a count and a refill time).

    ``(new arrival time, 0)`` when allowed; ``(None, wait ms)`` when the budget is spent.
    """
    arrival = max(tat_ms or now_ms, now_ms) + interval_ms
    over = arrival - now_ms - burst * interval_ms
    if over > 0:
        return None, over
    return arrival, 0

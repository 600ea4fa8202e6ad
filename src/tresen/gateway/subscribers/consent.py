"""What the relay's consent records say about a subscriber: rules as pure functions of the
records and the time, and the relay calls they need (typed as a Protocol: the business's
:class:`tresen.client.Client` is one)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from tresen.client.consent import ConsentRecord, PairRecords
from tresen.crypto.consent import ForgedConsent
from tresen.gateway.subscribers.model import CONFIRM_WITHIN_MS, Purpose, State, Subscriber

__all__ = [
    "CLOCK_SKEW_MS",
    "ConsentRelay",
    "Verdict",
    "day_of",
    "own_opt_in",
    "verdict",
]

CLOCK_SKEW_MS = 60_000
"""How far the relay's clock may be behind the gateway's when a confirmation is compared
with the time the subscriber was asked."""


class ConsentRelay(Protocol):
    """The relay as the subscriber lists use it."""

    async def resolve(self, peer: str) -> str: ...

    async def consent_records(
        self, business: str, customer: str | None = None, *, history: int = 100
    ) -> PairRecords: ...

    async def attest_consent(
        self, customer: str, evidence: str, evidence_ms: int
    ) -> ConsentRecord: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """A subscriber's state as the records have it, and why."""

    state: State
    reason: str


def day_of(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def own_opt_in(record: ConsentRecord | None) -> bool:
    """Whether ``record`` is an opt-in the customer signed (and the signature holds)."""
    if record is None or not record.opted_in or record.source != "customer":
        return False
    try:
        record.verify()
    except ForgedConsent:
        return False
    return True


def _counts(record: ConsentRecord | None, purpose: Purpose) -> bool:
    if purpose is Purpose.MARKETING:
        return own_opt_in(record)  # only the customer's own word, never the business's
    return record is not None and record.opted_in


def verdict(
    entry: Subscriber, purpose: Purpose, records: PairRecords, now_ms: int
) -> Verdict | None:
    """The state ``entry`` must move to, given the pair's records now (``None``: it stays).

    A subscribed customer without consent for the list's purpose is unsubscribed (they
    withdrew it in their app, or sent STOP the gateway did not see). A pending marketing
    subscriber whose signed opt-in came after they were asked, within the time to confirm,
    is subscribed."""
    record = records.consents.get(str(purpose))
    if entry.state is State.SUBSCRIBED and not _counts(record, purpose):
        if record is not None and not record.opted_in:
            who = "the customer" if record.source == "customer" else "the business"
            return Verdict(
                State.UNSUBSCRIBED,
                f"{purpose} consent withdrawn by {who} on {day_of(record.updated_ms)}",
            )
        return Verdict(State.UNSUBSCRIBED, f"no {purpose} consent of the customer on record")
    if (
        entry.state is State.PENDING
        and purpose is Purpose.MARKETING
        and record is not None
        and own_opt_in(record)
        and record.updated_ms >= entry.updated_ms - CLOCK_SKEW_MS
        and record.updated_ms - entry.updated_ms <= CONFIRM_WITHIN_MS
        and now_ms - entry.updated_ms <= CONFIRM_WITHIN_MS + CLOCK_SKEW_MS
    ):
        return Verdict(
            State.SUBSCRIBED, f"confirmed with a signed opt-in on {day_of(record.updated_ms)}"
        )
    return None

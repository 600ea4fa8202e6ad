"""What the relay's own mailbox entries carry: why a message failed (``failed``) and how a
delivered message was priced (``delivered``). ``message`` entries carry ciphertext instead."""

from __future__ import annotations

import functools

import msgspec

from tresen.core.errors import ErrorCode
from tresen.relay.policy.rules import Pricing
from tresen.wire.relay import PricingFacts, encode_pricing

__all__ = [
    "UNDELIVERED",
    "UNDELIVERED_PAYLOAD",
    "Failure",
    "encoded_pricing",
    "failure_of",
    "pricing_facts",
]


class Failure(msgspec.Struct, array_like=True, frozen=True):
    """Why a message could not be delivered: what a ``failed`` mailbox entry carries."""

    code: int
    reason: str


UNDELIVERED = Failure(int(ErrorCode.UNDELIVERABLE), "expired before delivery")
UNDELIVERED_PAYLOAD = msgspec.msgpack.encode(UNDELIVERED)
_failure_decoder = msgspec.msgpack.Decoder(Failure)


def failure_of(payload: bytes) -> Failure:
    """The failure a ``failed`` mailbox entry stores."""
    return _failure_decoder.decode(payload)


def pricing_facts(pricing: Pricing) -> PricingFacts:
    return PricingFacts(
        billable=pricing.billable,
        pricing_model=pricing.pricing_model,
        type=str(pricing.type),
        category=str(pricing.category),
    )


@functools.lru_cache(maxsize=64)
def encoded_pricing(pricing: Pricing) -> bytes:
    """The payload of a ``delivered`` entry. A handful of distinct facts exist (billable,
    type, category): each is encoded once."""
    return encode_pricing(pricing_facts(pricing))

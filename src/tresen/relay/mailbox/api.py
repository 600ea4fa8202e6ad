"""The mailbox over plain HTTP, for clients without WebSocket: send, resend, fetch pending,
ack."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

import msgspec
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tresen.core.fields import INT63_MAX, INT63_MIN, LINE_PATTERN
from tresen.relay.http import Authed, Ctx, errors
from tresen.relay.mailbox.payloads import failure_of, pricing_facts
from tresen.relay.mailbox.repo import EntryKind, MailboxEntry
from tresen.wire.relay import (
    DeviceCiphertext,
    MessageClass,
    PricingFacts,
    Resend,
    Send,
    decode_pricing,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["mailbox"])

ClassName = Literal["session", "template", "receipt", "system"]
_CLASSES: dict[str, MessageClass] = {c.name.lower(): c for c in MessageClass}
_CLASS_NAMES: dict[MessageClass, ClassName] = {
    MessageClass.SESSION: "session",
    MessageClass.TEMPLATE: "template",
    MessageClass.RECEIPT: "receipt",
    MessageClass.SYSTEM: "system",
}


class CiphertextCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: int = Field(ge=1, le=INT63_MAX)
    type: int = Field(ge=0, le=1)
    body: str = Field(description="base64 of the Olm message bytes", max_length=200_000)
    registration_id: int | None = Field(default=None, ge=INT63_MIN, le=INT63_MAX)

    @field_validator("body")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("body must be base64") from None
        return value


class SendCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The same bounds as the WebSocket's send frame (wire/relay.py).
    client_msg_id: str = Field(min_length=1, max_length=64, pattern=LINE_PATTERN)
    to: str = Field(min_length=1, max_length=32, pattern=LINE_PATTERN)
    klass: ClassName = Field(default="session", alias="class")
    template_ref: str | None = Field(default=None, max_length=128, pattern=LINE_PATTERN)
    per_device: list[CiphertextCreate] = Field(min_length=1, max_length=64)


class ResendCreate(CiphertextCreate):
    """The message encrypted again for ``device_id``, a device of its recipient."""

    client_msg_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=LINE_PATTERN,
        description="chosen by the client for this request; echoed in the answer",
    )


class ResentPublic(BaseModel):
    client_msg_id: str
    message_id: str
    device_id: int
    resends: int = Field(description="resends of this message so far, this one included")


MessagePath = Annotated[
    str, Path(min_length=1, max_length=32, pattern=LINE_PATTERN, description="a message_id")
]


class PricingPublic(BaseModel):
    billable: bool
    pricing_model: str
    type: str
    category: str


def _pricing(facts: PricingFacts | None) -> PricingPublic | None:
    return None if facts is None else PricingPublic(**msgspec.structs.asdict(facts))


class AcceptedPublic(BaseModel):
    client_msg_id: str
    message_id: str
    server_ms: int
    duplicate: bool
    pricing: PricingPublic | None = Field(
        default=None, description="a business's message to a customer: how it is priced"
    )


KindName = Literal["message", "delivered", "read", "failed"]


class EnvelopePublic(BaseModel):
    id: int
    kind: KindName
    message_id: str
    peer: str = Field(description="sender (message) or recipient (delivered, read, failed) account")
    peer_device: int
    klass: ClassName = Field(serialization_alias="class")
    type: int | None = None
    body: str | None = None
    server_ms: int
    pricing: PricingPublic | None = Field(default=None, description="on delivered events")
    template_ref: str | None = Field(
        default=None, description="a template message: the template it was accepted as"
    )
    code: int | None = Field(
        default=None, description="on failed events: why (131026: expired undelivered)"
    )
    reason: str | None = Field(default=None, description="on failed events: why, in words")


class PendingPublic(BaseModel):
    envelopes: list[EnvelopePublic]
    more: bool


class AckCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Hard cap for parsing; the configured limit (limits.max_acks_per_frame) is checked after.
    ids: list[Annotated[int, Field(ge=1, le=INT63_MAX)]] = Field(min_length=1, max_length=100_000)
    undecryptable: list[Annotated[int, Field(ge=1, le=INT63_MAX)]] = Field(
        default_factory=list,
        max_length=100_000,
        description="those of ids that are messages this device could not decrypt: deleted, "
        "but not counted as delivered (each must also be in ids)",
    )


class AckPublic(BaseModel):
    deleted: int


class ReceiptCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_ids: list[Annotated[str, Field(min_length=1, max_length=32, pattern=LINE_PATTERN)]] = (
        Field(min_length=1, max_length=100_000)
    )


class ReceiptPublic(BaseModel):
    routed: int


_KIND_NAMES: dict[EntryKind, KindName] = {
    EntryKind.MESSAGE: "message",
    EntryKind.DELIVERED: "delivered",
    EntryKind.READ: "read",
    EntryKind.FAILED: "failed",
}


def _b64decode(value: str) -> bytes:
    return base64.b64decode(value + "=" * (-len(value) % 4))


@router.post("/messages", response_model=AcceptedPublic, responses=errors(403, 404, 409, 429, 507))
async def send_message(body: SendCreate, principal: Authed, ctx: Ctx) -> AcceptedPublic:
    frame = Send(
        client_msg_id=body.client_msg_id,
        to=body.to,
        klass=_CLASSES[body.klass],
        template_ref=body.template_ref,
        per_device=[
            DeviceCiphertext(
                device_id=c.device_id,
                type=c.type,
                body=_b64decode(c.body),
                registration_id=c.registration_id,
            )
            for c in body.per_device
        ],
    )
    accepted = await ctx.mailbox.send(principal, frame)
    return AcceptedPublic(
        client_msg_id=body.client_msg_id,
        message_id=accepted.message_id,
        server_ms=accepted.server_ms,
        duplicate=accepted.duplicate,
        pricing=None if accepted.pricing is None else _pricing(pricing_facts(accepted.pricing)),
    )


@router.post(
    "/messages/{message_id}/resend",
    response_model=ResentPublic,
    responses=errors(403, 404, 409, 429, 507),
)
async def resend_message(
    message_id: MessagePath, body: ResendCreate, principal: Authed, ctx: Ctx
) -> ResentPublic:
    """A message this account sent, encrypted again for one device of its recipient that
    could not decrypt it (docs/protocol.md §5.10)."""
    frame = Resend(
        client_msg_id=body.client_msg_id,
        message_id=message_id,
        device_id=body.device_id,
        type=body.type,
        body=_b64decode(body.body),
        registration_id=body.registration_id,
    )
    resent = await ctx.mailbox.resend(principal, frame)
    return ResentPublic(
        client_msg_id=body.client_msg_id,
        message_id=resent.message_id,
        device_id=resent.device_id,
        resends=resent.resends,
    )


@router.get("/messages", response_model=PendingPublic, response_model_by_alias=True)
async def fetch_pending(
    principal: Authed,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=10_000, description="capped by the relay")] = 100,
    after: Annotated[
        int, Query(ge=0, le=INT63_MAX, description="only entries with a larger id")
    ] = 0,
) -> PendingPublic:
    limit = min(limit, ctx.settings.limits.max_fetch_batch)
    entries = await ctx.mailbox.pending(principal.device_pk, after_seq=after, limit=limit + 1)
    more = len(entries) > limit
    return PendingPublic(
        envelopes=[_envelope(e) for e in entries[:limit]],
        more=more,
    )


def _envelope(e: MailboxEntry) -> EnvelopePublic:
    message = e.kind is EntryKind.MESSAGE
    failure = failure_of(e.payload) if e.kind is EntryKind.FAILED else None
    return EnvelopePublic(
        id=e.seq,
        kind=_KIND_NAMES[e.kind],
        message_id=e.message_id,
        peer=e.peer_account,
        peer_device=e.peer_device,
        klass=_CLASS_NAMES[MessageClass(e.klass)],
        type=e.olm_type if message else None,
        body=base64.b64encode(e.payload).decode() if message else None,
        server_ms=e.server_ms,
        pricing=_pricing(decode_pricing(e.payload)) if e.kind is EntryKind.DELIVERED else None,
        template_ref=None if e.template_id is None else str(e.template_id),
        code=None if failure is None else failure.code,
        reason=None if failure is None else failure.reason,
    )


@router.post("/messages/ack", response_model=AckPublic, responses=errors(429))
async def ack_messages(body: AckCreate, principal: Authed, ctx: Ctx) -> AckPublic:
    return AckPublic(deleted=await ctx.mailbox.ack(principal, body.ids, body.undecryptable))


@router.post("/receipts", response_model=ReceiptPublic, responses=errors(429))
async def send_receipts(body: ReceiptCreate, principal: Authed, ctx: Ctx) -> ReceiptPublic:
    return ReceiptPublic(routed=await ctx.mailbox.read(principal, body.message_ids))

"""Routes of consent.

A customer's device submits signed statements and reads its dashboard; a business attests
utility opt-ins; the business, the customer and the operator (admin route) read a pair's
signed records and history, which anyone can then verify offline.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from tresen.core.errors import ErrorCode, TresenError
from tresen.core.fields import INT63_MAX, SafeStr, SafeText
from tresen.core.ids import AccountId
from tresen.crypto.consent import ForgedConsent, SignedConsent
from tresen.relay.consent.service import (
    EVIDENCE_MAX,
    MAX_STATEMENTS,
    BusinessConsents,
    ConsentRecord,
    PairConsents,
)
from tresen.relay.http import Authed, Ctx, OperatorAuthed, errors

__all__ = ["router"]

router = APIRouter(prefix="/v1")

AccountPath = Annotated[SafeStr, Path(min_length=1, max_length=64)]
HistoryLimit = Annotated[int, Query(ge=0, le=500, description="history entries, newest first")]

# A statement is about 250 bytes of msgpack; the bounds only stop absurd bodies early.
_STATEMENT_CHARS = 2048


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignedStatement(_Strict):
    statement: SafeStr = Field(
        min_length=1, max_length=_STATEMENT_CHARS, description="msgpack bytes, standard base64"
    )
    signature: SafeStr = Field(
        min_length=1,
        max_length=128,
        description="Ed25519 signature over b'tresen-consent-v1\\x00' + statement bytes",
    )


class ConsentsCreate(_Strict):
    statements: list[SignedStatement] = Field(min_length=1, max_length=MAX_STATEMENTS)


class AttestationCreate(_Strict):
    customer: SafeStr = Field(min_length=1, max_length=64, description="the customer's account id")
    scope: Literal["utility", "marketing"] = Field(
        default="utility", description="utility only; marketing is always refused (150062)"
    )
    evidence: SafeText = Field(
        min_length=1,
        max_length=EVIDENCE_MAX,
        description="how and where the customer opted in",
        examples=["Ticked 'send me booking updates on Tresen' at checkout, order 4711"],
    )
    evidence_ms: int = Field(ge=0, le=INT63_MAX, description="when the customer opted in")


class ConsentPublic(BaseModel):
    business_account: str
    business_name: str | None = Field(description="the business's display name")
    customer_account: str
    scope: str = Field(description="utility (also authentication) or marketing")
    state: str = Field(description="opted_in or opted_out")
    source: str = Field(description="customer (signed statement) or business (attested)")
    decided_ms: int | None = Field(description="the statement's time, or the evidence time")
    updated_ms: int = Field(description="when the relay recorded it")
    statement: str | None = Field(description="msgpack bytes, standard base64")
    signature: str | None = Field(description="the device's Ed25519 signature")
    device_id: int | None
    device_ed25519: str | None = Field(description="the key that signed, named in the statement")
    evidence: str | None
    evidence_ms: int | None


class ConsentsPublic(BaseModel):
    consents: list[ConsentPublic]


class AttestedPublic(BaseModel):
    consent: ConsentPublic
    changed: bool = Field(description="false when the customer's own signed opt-in stands")


class DashboardLine(BaseModel):
    business_account: str
    display_name: str | None
    consents: list[ConsentPublic]


class DashboardPublic(BaseModel):
    businesses: list[DashboardLine]


class PairPublic(BaseModel):
    business_account: str
    customer_account: str
    display_name: str | None
    consents: list[ConsentPublic] = Field(description="the current consent per scope")
    history: list[ConsentPublic] = Field(description="every change, newest first")


def _public(record: ConsentRecord) -> ConsentPublic:
    row = record.row
    return ConsentPublic(
        business_account=row.business_account,
        business_name=record.business_name,
        customer_account=row.customer_account,
        scope=row.scope,
        state=row.state,
        source=row.source,
        decided_ms=record.decided_ms,
        updated_ms=row.updated_ms,
        statement=None if row.statement is None else base64.b64encode(row.statement).decode(),
        signature=row.signature,
        device_id=row.device_id,
        device_ed25519=record.device_ed25519,
        evidence=row.evidence,
        evidence_ms=row.evidence_ms,
    )


def _line(line: BusinessConsents) -> DashboardLine:
    return DashboardLine(
        business_account=line.business_account,
        display_name=line.display_name,
        consents=[_public(r) for r in line.records],
    )


def _pair(pair: PairConsents) -> PairPublic:
    return PairPublic(
        business_account=pair.business_account,
        customer_account=pair.customer_account,
        display_name=pair.display_name,
        consents=[_public(r) for r in pair.records],
        history=[_public(r) for r in pair.history],
    )


@router.post(
    "/consents", response_model=ConsentsPublic, tags=["consent"], responses=errors(403, 404)
)
async def submit_consents(body: ConsentsCreate, principal: Authed, ctx: Ctx) -> ConsentsPublic:
    """Store opt-ins and revocations the calling customer device signed; all or none."""
    signed = []
    for index, s in enumerate(body.statements):
        try:
            signed.append(SignedConsent.from_json(s.model_dump()))
        except ForgedConsent as exc:
            raise TresenError(
                ErrorCode.INVALID_CONSENT, str(exc), reason="malformed", index=index
            ) from None
    records = await ctx.consent.submit(principal, signed)
    return ConsentsPublic(consents=[_public(r) for r in records])


@router.get("/consents", response_model=DashboardPublic, tags=["consent"])
async def dashboard(principal: Authed, ctx: Ctx) -> DashboardPublic:
    """Every business with a consent of the calling customer on record, by display name."""
    lines = await ctx.consent.dashboard(principal.account_id)
    return DashboardPublic(businesses=[_line(line) for line in lines])


@router.get(
    "/consents/{business}/{customer}",
    response_model=PairPublic,
    tags=["consent"],
    responses=errors(403, 404),
)
async def pair_consents(
    business: AccountPath,
    customer: AccountPath,
    principal: Authed,
    ctx: Ctx,
    history: HistoryLimit = 100,
) -> PairPublic:
    """The signed records of a business and a customer: readable by those two only."""
    pair = await ctx.consent.pair(
        AccountId(business),
        AccountId(customer),
        reader=principal.account_id,
        history_limit=history,
    )
    return _pair(pair)


@router.post(
    "/consents/attestations",
    response_model=AttestedPublic,
    tags=["consent"],
    responses=errors(403, 404),
)
async def attest_consent(body: AttestationCreate, principal: Authed, ctx: Ctx) -> AttestedPublic:
    """The calling business attests that a customer opted in to its utility messages."""
    record, changed = await ctx.consent.attest(
        principal, AccountId(body.customer), body.scope, body.evidence, body.evidence_ms
    )
    return AttestedPublic(consent=_public(record), changed=changed)


@router.get("/admin/consents", response_model=PairPublic, tags=["admin"], responses=errors(404))
async def admin_pair_consents(
    business: Annotated[SafeStr, Query(min_length=1, max_length=64)],
    customer: Annotated[SafeStr, Query(min_length=1, max_length=64)],
    _: OperatorAuthed,
    ctx: Ctx,
    history: HistoryLimit = 100,
) -> PairPublic:
    """The operator's view of a business's and a customer's signed records and history."""
    pair = await ctx.consent.pair(
        AccountId(business), AccountId(customer), reader=None, history_limit=history
    )
    return _pair(pair)

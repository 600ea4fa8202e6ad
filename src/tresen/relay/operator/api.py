"""Routes of the operator: public keys, certificates and revocations (no authentication), and
the admin API under ``/v1/admin`` (operator tokens only; device tokens do not work there)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tresen.core.errors import ErrorCode, TresenError
from tresen.core.fields import TEXT_PATTERN, SafeStr
from tresen.core.ids import AccountId
from tresen.relay.http import Ctx, OperatorAuthed, errors
from tresen.relay.operator.service import (
    CertificateRecord,
    RequestState,
    Verification,
    certificate_summary,
)

__all__ = ["router"]

public = APIRouter(prefix="/v1", tags=["operator"])
admin = APIRouter(prefix="/v1/admin", tags=["admin"])

AccountPath = Annotated[SafeStr, Path(min_length=1, max_length=64)]
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=512, pattern=TEXT_PATTERN),
]

# --- shapes ----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignedPublic(BaseModel):
    body: str = Field(description="msgpack bytes, standard base64")
    signature: str = Field(description="Ed25519 signature over prefix + body, unpadded base64")


class PublishedKeyPublic(BaseModel):
    key_id: str
    public_key: str
    endorsement: str | None = Field(description="the previous key's signature over this key")
    signs_from_ms: int
    retires_ms: int | None


class OperatorKeysPublic(BaseModel):
    current_key_id: str
    fingerprint: str = Field(description="SHA-256 of the current public key, for people")
    revocations_max_age_s: int = Field(description="how old a revocation list may be")
    keys: list[PublishedKeyPublic]


class AccountPublic(BaseModel):
    account_id: str
    phone: str
    kind: str
    business: bool


class RequestPublic(BaseModel):
    id: int
    account_id: str
    phone: str | None
    display_name: str | None
    verification: str | None
    state: str
    note: str
    reason: str | None
    requested_ms: int
    decided_ms: int | None
    decided_by: str | None


class RequestsPublic(BaseModel):
    requests: list[RequestPublic]


class CertificatePublic(BaseModel):
    serial: int
    key_id: str
    account_id: str
    phone: str
    display_name: str
    device_keys: list[str]
    issued_ms: int
    expires_ms: int
    revoked_ms: int | None
    revoke_reason: str | None
    status: str = Field(description="valid, revoked, expired or key retired")
    current: bool


class DeviceKeyPublic(BaseModel):
    device_id: int
    ed25519: str


class AuditPublic(BaseModel):
    at_ms: int
    operator: str
    action: str
    account_id: str | None
    details: dict[str, Any]


class AuditListPublic(BaseModel):
    entries: list[AuditPublic]


class BusinessPublic(BaseModel):
    account_id: str
    phone: str
    kind: str
    display_name: str
    verification: str
    suspended_ms: int | None
    suspend_reason: str | None
    created_ms: int
    updated_ms: int
    devices: list[DeviceKeyPublic]
    current_serial: int | None
    requests: list[RequestPublic]
    certificates: list[CertificatePublic]
    audit: list[AuditPublic]


class VerifiedPublic(BaseModel):
    account_id: str
    verification: str
    request_id: int | None
    certificate: CertificatePublic
    signed: SignedPublic


class RejectedPublic(BaseModel):
    account_id: str
    verification: str
    request_id: int
    revoked: list[int]


class RevokedPublic(BaseModel):
    account_id: str
    verification: str
    revoked: list[int]


class SuspensionPublic(BaseModel):
    account_id: str
    suspended_ms: int | None
    suspend_reason: str | None


class ReasonCreate(_Strict):
    reason: Reason


class RotateCreate(_Strict):
    overlap_days: int = Field(
        ge=0, le=3650, description="days the old key's certificates stay valid"
    )


class RotatedPublic(BaseModel):
    key_id: str
    fingerprint: str
    previous_key_id: str
    previous_retires_ms: int
    reissued: list[int] = Field(description="serials of the certificates issued with the new key")


class RenewalPublic(BaseModel):
    account_id: str
    serial: int
    replaces: int = Field(description="the serial it renews, which stays valid until it expires")
    key_id: str
    expires_ms: int


class SkippedPublic(BaseModel):
    account_id: str
    reason: str


class RenewedPublic(BaseModel):
    reissued: list[int] = Field(description="serials of the certificates issued now")
    renewals: list[RenewalPublic]
    skipped: list[SkippedPublic] = Field(description="due, but not renewed")


def _certificate_public(record: CertificateRecord, status: str, current: bool) -> CertificatePublic:
    return CertificatePublic(**certificate_summary(record), status=status, current=current)


def _request_public(r: Any) -> RequestPublic:
    return RequestPublic(
        id=r.id,
        account_id=r.account_id,
        phone=r.phone,
        display_name=r.display_name,
        verification=r.verification,
        state=r.state,
        note=r.note,
        reason=r.reason,
        requested_ms=r.requested_ms,
        decided_ms=r.decided_ms,
        decided_by=r.decided_by,
    )


def _audit_public(e: Any) -> AuditPublic:
    return AuditPublic(
        at_ms=e.at_ms,
        operator=e.operator,
        action=e.action,
        account_id=e.account_id,
        details=e.details,
    )


# --- public ----------------------------------------------------------------------------------


@public.get("/operator/keys", response_model=OperatorKeysPublic)
async def operator_keys(ctx: Ctx) -> OperatorKeysPublic:
    """The operator's public keys, oldest first, with the endorsements clients follow."""
    published = await ctx.operator.published_keys()
    return OperatorKeysPublic(
        current_key_id=published.current_key_id,
        fingerprint=published.fingerprint,
        revocations_max_age_s=ctx.settings.revocations_max_age_s,
        keys=[PublishedKeyPublic(**k.to_json()) for k in published.keys],
    )


@public.get("/certificates/revoked", response_model=SignedPublic)
async def revoked_certificates(ctx: Ctx) -> SignedPublic:
    """The signed list of revoked certificates that have not expired, issued now."""
    signed = await ctx.operator.revocation_list()
    return SignedPublic(**signed.to_json())


@public.get("/certificates/{account_id}", response_model=SignedPublic, responses=errors(404))
async def business_certificate(account_id: AccountPath, ctx: Ctx) -> SignedPublic:
    """The verified business's current certificate."""
    record = await ctx.operator.current_certificate(AccountId(account_id))
    if record is None:
        raise TresenError(
            ErrorCode.NO_CURRENT_CERTIFICATE,
            "this account has no current business certificate",
            account_id=account_id,
        )
    return SignedPublic(**record.signed.to_json())


# --- admin -----------------------------------------------------------------------------------


@admin.get("/accounts", response_model=AccountPublic, responses=errors(404))
async def account_by_phone(
    _: OperatorAuthed,
    ctx: Ctx,
    phone: Annotated[SafeStr, Query(max_length=64, examples=["+4915112345678"])],
) -> AccountPublic:
    found = await ctx.operator.lookup_phone(phone)
    return AccountPublic(
        account_id=found.account_id, phone=found.phone, kind=found.kind, business=found.business
    )


@admin.get("/verification-requests", response_model=RequestsPublic)
async def verification_requests(
    _: OperatorAuthed,
    ctx: Ctx,
    state: Literal["pending", "approved", "rejected", "withdrawn", "all"] = "pending",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> RequestsPublic:
    """Verification requests in one state (``all`` for every state), oldest first."""
    wanted = None if state == "all" else RequestState(state)
    rows = await ctx.operator.verification_requests(wanted, limit)
    return RequestsPublic(requests=[_request_public(r) for r in rows])


@admin.get("/businesses/{account_id}", response_model=BusinessPublic, responses=errors(404))
async def business_summary(account_id: AccountPath, _: OperatorAuthed, ctx: Ctx) -> BusinessPublic:
    summary = await ctx.operator.business_summary(AccountId(account_id))
    b = summary.business
    return BusinessPublic(
        account_id=b.account_id,
        phone=b.phone,
        kind=b.kind,
        display_name=b.display_name,
        verification=b.verification,
        suspended_ms=b.suspended_ms,
        suspend_reason=b.suspend_reason,
        created_ms=b.created_ms,
        updated_ms=b.updated_ms,
        devices=[DeviceKeyPublic(device_id=d, ed25519=k) for d, k in summary.devices],
        current_serial=summary.current_serial,
        requests=[_request_public(r) for r in summary.requests],
        certificates=[
            _certificate_public(record, status, record.serial == summary.current_serial)
            for record, status in summary.certificates
        ],
        audit=[_audit_public(e) for e in summary.audit],
    )


@admin.post(
    "/businesses/{account_id}/verify", response_model=VerifiedPublic, responses=errors(404, 409)
)
async def verify_business(
    account_id: AccountPath, operator: OperatorAuthed, ctx: Ctx
) -> VerifiedPublic:
    """Certify the business as it is now and approve its pending request, if any."""
    record, request_id = await ctx.operator.verify(operator, AccountId(account_id))
    return VerifiedPublic(
        account_id=account_id,
        verification=Verification.VERIFIED,
        request_id=request_id,
        certificate=_certificate_public(record, "valid", True),
        signed=SignedPublic(**record.signed.to_json()),
    )


@admin.post(
    "/businesses/{account_id}/reject", response_model=RejectedPublic, responses=errors(404, 409)
)
async def reject_business(
    account_id: AccountPath, body: ReasonCreate, operator: OperatorAuthed, ctx: Ctx
) -> RejectedPublic:
    request_id, revoked = await ctx.operator.reject(operator, AccountId(account_id), body.reason)
    return RejectedPublic(
        account_id=account_id,
        verification=Verification.REJECTED,
        request_id=request_id,
        revoked=revoked,
    )


@admin.post(
    "/businesses/{account_id}/revoke", response_model=RevokedPublic, responses=errors(404, 409)
)
async def revoke_business(
    account_id: AccountPath, body: ReasonCreate, operator: OperatorAuthed, ctx: Ctx
) -> RevokedPublic:
    revoked = await ctx.operator.revoke(operator, AccountId(account_id), body.reason)
    return RevokedPublic(account_id=account_id, verification=Verification.REVOKED, revoked=revoked)


@admin.post(
    "/businesses/{account_id}/suspend", response_model=SuspensionPublic, responses=errors(404, 409)
)
async def suspend_business(
    account_id: AccountPath, body: ReasonCreate, operator: OperatorAuthed, ctx: Ctx
) -> SuspensionPublic:
    at = await ctx.operator.suspend(operator, AccountId(account_id), body.reason)
    return SuspensionPublic(account_id=account_id, suspended_ms=at, suspend_reason=body.reason)


@admin.post(
    "/businesses/{account_id}/reinstate",
    response_model=SuspensionPublic,
    responses=errors(404, 409),
)
async def reinstate_business(
    account_id: AccountPath, operator: OperatorAuthed, ctx: Ctx
) -> SuspensionPublic:
    await ctx.operator.reinstate(operator, AccountId(account_id))
    return SuspensionPublic(account_id=account_id, suspended_ms=None, suspend_reason=None)


@admin.post("/operator-keys/rotate", response_model=RotatedPublic)
async def rotate_operator_key(
    body: RotateCreate, operator: OperatorAuthed, ctx: Ctx
) -> RotatedPublic:
    """Hand signing over to a new key, endorsed by the current one."""
    rotation = await ctx.operator.rotate(operator, body.overlap_days)
    return RotatedPublic(
        key_id=rotation.key_id,
        fingerprint=rotation.fingerprint,
        previous_key_id=rotation.previous_key_id,
        previous_retires_ms=rotation.previous_retires_ms,
        reissued=rotation.reissued,
    )


@admin.post("/certificates/renew", response_model=RenewedPublic)
async def renew_certificates(operator: OperatorAuthed, ctx: Ctx) -> RenewedPublic:
    """Renew now what the relay would renew at its next periodic run: the certificates of
    verified, unsuspended businesses that expire within ``certificate_renew_before_days``."""
    run = await ctx.operator.renew_due_certificates(operator)
    return RenewedPublic(
        reissued=[r.serial for r in run.renewed],
        renewals=[
            RenewalPublic(
                account_id=r.account_id,
                serial=r.serial,
                replaces=r.replaces,
                key_id=r.key_id,
                expires_ms=r.expires_ms,
            )
            for r in run.renewed
        ],
        skipped=[SkippedPublic(account_id=a, reason=why) for a, why in run.skipped.items()],
    )


@admin.get("/audit", response_model=AuditListPublic)
async def audit_log(
    _: OperatorAuthed,
    ctx: Ctx,
    account_id: Annotated[SafeStr | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditListPublic:
    """Administrative actions, newest first."""
    entries = await ctx.operator.audit(None if account_id is None else AccountId(account_id), limit)
    return AuditListPublic(entries=[_audit_public(e) for e in entries])


router = APIRouter()
router.include_router(public)
router.include_router(admin)

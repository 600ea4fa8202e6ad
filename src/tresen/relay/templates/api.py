"""Routes of message templates.

- a business's own templates (device token), in the Cloud API's shapes:
  ``/v1/business/message_templates`` (submit, list, get, delete by name);
- the operator-signed form of an approved template, for any authenticated client:
  ``GET /v1/templates/{id}``;
- the operator's review (operator tokens): ``/v1/admin/templates`` (list, approve, reject,
  evaluate quality now).

Template ids are decimal strings, as in the Cloud API.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tresen.core.errors import ErrorCode, TresenError
from tresen.core.fields import TEXT_PATTERN, SafeJson, SafeStr
from tresen.core.ids import AccountId
from tresen.relay.http import Authed, Ctx, OperatorAuthed, errors
from tresen.relay.templates.service import QualityChange, TemplateView
from tresen.wire.templates import TemplateStatus, decode_signed_body

__all__ = ["router"]

business = APIRouter(prefix="/v1/business", tags=["templates"])
public = APIRouter(prefix="/v1", tags=["templates"])
admin = APIRouter(prefix="/v1/admin", tags=["admin"])

TemplateIdPath = Annotated[str, Path(pattern=r"^[0-9]{1,19}$", description="decimal id")]
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=512, pattern=TEXT_PATTERN),
]
PAGE_MAX = 500

_SUBMISSION_EXAMPLE = {
    "name": "order_shipped",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "HEADER",
            "format": "TEXT",
            "text": "Order {{1}}",
            "example": {"header_text": ["#4711"]},
        },
        {
            "type": "BODY",
            "text": "Hi {{1}}, your order ships on {{2}}.",
            "example": {"body_text": [["Anna", "Monday"]]},
        },
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Track"}]},
    ],
}


# --- shapes ----------------------------------------------------------------------------------


class CreatedPublic(BaseModel):
    id: str
    status: str
    category: str


class QualityScore(BaseModel):
    score: str = Field(description="GREEN, YELLOW, RED or UNKNOWN")


class TemplatePublic(BaseModel):
    """A template in the Cloud API's shape (``quality_score``, ``rejected_reason`` "NONE")."""

    id: str
    name: str
    language: str
    status: str
    category: str
    parameter_format: str
    components: list[dict[str, Any]]
    quality_score: QualityScore
    rejected_reason: str = Field(description='the operator\'s reason, else "NONE"')
    paused_until_ms: int | None = Field(default=None, description="while PAUSED")


class Cursors(BaseModel):
    before: str | None
    after: str | None


class Paging(BaseModel):
    cursors: Cursors
    next: str | None = Field(default=None, description="the next page, when there is one")


class TemplateListPublic(BaseModel):
    data: list[TemplatePublic]
    paging: Paging


class SuccessPublic(BaseModel):
    success: bool
    deleted: list[str] = Field(description="ids of the templates deleted")


class SignedTemplatePublic(BaseModel):
    id: str
    body: str = Field(description="msgpack of the canonical template, standard base64")
    signature: str = Field(
        description='Ed25519 signature over b"tresen-template-v1\\x00" + body, unpadded base64'
    )


class AdminTemplatePublic(TemplatePublic):
    account_id: str
    pauses: int
    created_ms: int
    updated_ms: int


class AdminTemplatesPublic(BaseModel):
    templates: list[AdminTemplatePublic]


class ApprovedPublic(BaseModel):
    template: AdminTemplatePublic
    key_id: str
    signed: SignedTemplatePublic


class ReasonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class QualityChangePublic(BaseModel):
    id: str
    account_id: str
    name: str
    language: str
    previous_status: str
    status: str
    previous_quality: str
    quality: str
    paused_until_ms: int | None


class QualityRunPublic(BaseModel):
    changes: list[QualityChangePublic]


def _public(view: TemplateView) -> dict[str, Any]:
    row = view.row
    return {
        "id": str(row.id),
        "name": row.name,
        "language": row.language,
        "status": view.status.value,
        "category": row.category.value,
        "parameter_format": row.parameter_format.value,
        "components": msgspec.to_builtins(view.record.components),
        "quality_score": QualityScore(score=row.quality.value),
        "rejected_reason": row.rejected_reason or "NONE",
        "paused_until_ms": row.paused_until_ms if view.status is TemplateStatus.PAUSED else None,
    }


def _admin(view: TemplateView) -> AdminTemplatePublic:
    row = view.row
    return AdminTemplatePublic(
        **_public(view),
        account_id=row.business_account,
        pauses=row.pauses,
        created_ms=row.created_ms,
        updated_ms=row.updated_ms,
    )


def _template_id(text: str) -> int:
    value = int(text)
    if value > 2**63 - 1:
        raise TresenError(ErrorCode.TEMPLATE_NOT_FOUND, "no such template", template_id=text)
    return value


def _paging(views: list[TemplateView], more: bool, base: str) -> Paging:
    first = str(views[0].row.id) if views else None
    last = str(views[-1].row.id) if views else None
    return Paging(
        cursors=Cursors(before=first, after=last),
        next=f"{base}?after={last}" if more and last else None,
    )


# --- the business's own templates ------------------------------------------------------------


@business.post("/message_templates", response_model=CreatedPublic, responses=errors(404, 409))
async def submit_template(
    principal: Authed,
    ctx: Ctx,
    body: Annotated[SafeJson, Body(examples=[_SUBMISSION_EXAMPLE])],
) -> CreatedPublic:
    """Submit a template (Cloud API shape). Every invalid field is named in
    ``details.problems``; the answer is ``{"id", "status", "category"}``."""
    view = await ctx.templates.submit(principal.account_id, body)
    return CreatedPublic(
        id=str(view.row.id), status=view.status.value, category=view.row.category.value
    )


@business.get("/message_templates", response_model=TemplateListPublic)
async def list_templates(
    principal: Authed,
    ctx: Ctx,
    status: TemplateStatus | None = None,
    name: Annotated[SafeStr | None, Query(max_length=512, description="part of the name")] = None,
    after: Annotated[str | None, Query(pattern=r"^[0-9]{1,19}$")] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
) -> TemplateListPublic:
    """The caller's templates by id; deleted ones only with ``status=DELETED``."""
    views = await ctx.templates.own_templates(
        principal.account_id,
        status=status,
        name=name,
        after_id=0 if after is None else _template_id(after),
        limit=limit + 1,
    )
    page = views[:limit]
    return TemplateListPublic(
        data=[TemplatePublic(**_public(v)) for v in page],
        paging=_paging(page, len(views) > limit, "/v1/business/message_templates"),
    )


@business.get(
    "/message_templates/{template_id}", response_model=TemplatePublic, responses=errors(404)
)
async def get_template(template_id: TemplateIdPath, principal: Authed, ctx: Ctx) -> TemplatePublic:
    view = await ctx.templates.own_template(principal.account_id, _template_id(template_id))
    return TemplatePublic(**_public(view))


@business.delete("/message_templates", response_model=SuccessPublic, responses=errors(404))
async def delete_templates(
    principal: Authed,
    ctx: Ctx,
    name: Annotated[SafeStr, Query(min_length=1, max_length=512)],
    hsm_id: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,19}$", description="only this language's template")
    ] = None,
) -> SuccessPublic:
    """Delete the caller's templates of that name (every language, or the one ``hsm_id``)."""
    ids = await ctx.templates.delete_own(
        principal.account_id, name, None if hsm_id is None else _template_id(hsm_id)
    )
    return SuccessPublic(success=True, deleted=[str(i) for i in ids])


# --- the signed form -------------------------------------------------------------------------


@public.get("/templates/{template_id}", response_model=SignedTemplatePublic, responses=errors(404))
async def signed_template(template_id: TemplateIdPath, _: Authed, ctx: Ctx) -> SignedTemplatePublic:
    """The operator-signed form of an approved template, to check and render a template
    message with (132001 for a template that was never approved)."""
    signed = await ctx.templates.signed(_template_id(template_id))
    return SignedTemplatePublic(**signed.to_json())


# --- the operator ----------------------------------------------------------------------------


@admin.get("/templates", response_model=AdminTemplatesPublic)
async def admin_templates(
    _: OperatorAuthed,
    ctx: Ctx,
    status: TemplateStatus | Literal["all"] = TemplateStatus.PENDING,
    account_id: Annotated[SafeStr | None, Query(max_length=64)] = None,
    after: Annotated[str | None, Query(pattern=r"^[0-9]{1,19}$")] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
) -> AdminTemplatesPublic:
    """Templates in one status (PENDING: the review queue), oldest first."""
    views = await ctx.templates.for_operator(
        status=None if status == "all" else TemplateStatus(status),
        business_account=None if account_id is None else AccountId(account_id),
        after_id=0 if after is None else _template_id(after),
        limit=limit,
    )
    return AdminTemplatesPublic(templates=[_admin(v) for v in views])


@admin.get("/templates/{template_id}", response_model=AdminTemplatePublic, responses=errors(404))
async def admin_template(
    template_id: TemplateIdPath, _: OperatorAuthed, ctx: Ctx
) -> AdminTemplatePublic:
    return _admin(await ctx.templates.template(_template_id(template_id)))


@admin.post(
    "/templates/{template_id}/approve", response_model=ApprovedPublic, responses=errors(404, 409)
)
async def approve_template(
    template_id: TemplateIdPath, operator: OperatorAuthed, ctx: Ctx
) -> ApprovedPublic:
    """Approve a PENDING template: the relay signs it with the operator key."""
    numeric = _template_id(template_id)
    view = await ctx.templates.approve(operator, numeric)
    signed = await ctx.templates.signed(numeric)
    return ApprovedPublic(
        template=_admin(view),
        key_id=decode_signed_body(signed.body).key_id,
        signed=SignedTemplatePublic(**signed.to_json()),
    )


@admin.post(
    "/templates/{template_id}/reject",
    response_model=AdminTemplatePublic,
    responses=errors(404, 409),
)
async def reject_template(
    template_id: TemplateIdPath, body: ReasonCreate, operator: OperatorAuthed, ctx: Ctx
) -> AdminTemplatePublic:
    """Reject a PENDING template with a reason the business reads."""
    return _admin(await ctx.templates.reject(operator, _template_id(template_id), body.reason))


@admin.post("/templates/quality", response_model=QualityRunPublic)
async def evaluate_quality(_: OperatorAuthed, ctx: Ctx) -> QualityRunPublic:
    """Rate every approved or paused template now (the relay also does so periodically);
    pauses and disables those customers report too often."""
    changes = await ctx.templates.evaluate_quality()
    return QualityRunPublic(changes=[_change(c) for c in changes])


def _change(c: QualityChange) -> QualityChangePublic:
    return QualityChangePublic(
        id=str(c.template_id),
        account_id=c.business_account,
        name=c.name,
        language=c.language,
        previous_status=c.previous_status.value,
        status=c.status.value,
        previous_quality=c.previous_quality.value,
        quality=c.quality.value,
        paused_until_ms=c.paused_until_ms,
    )


router = APIRouter()
router.include_router(business)
router.include_router(public)
router.include_router(admin)

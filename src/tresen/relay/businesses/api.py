"""Routes: a business's own profile, picture and verification request; the directory.

Every route needs a device token. The write routes act on the caller's own account only;
none takes another account's id.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from tresen.core.fields import SafeStr, SafeText
from tresen.core.ids import AccountId
from tresen.relay.businesses.repo import ProfileRow, RequestRow
from tresen.relay.businesses.service import (
    DIRECTORY_MAX,
    NOTE_MAX,
    PICTURE_MAX_BYTES,
    PICTURE_TYPES,
    OwnProfile,
)
from tresen.relay.http import Authed, Ctx, errors
from tresen.wire.business import BusinessCategory, ProfileEdit, Verification

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["businesses"])

AccountPath = Annotated[SafeStr, Path(min_length=1, max_length=64)]
Schedule = dict[str, list[list[str]]]

# Listed for the OpenAPI description; the service checks it (naming the field "category").
CategoryText = Annotated[
    SafeStr, Field(max_length=64, json_schema_extra={"enum": [c.value for c in BusinessCategory]})
]

# The parser's bounds only stop absurd bodies early; the profile rules (and their messages
# naming each field, control characters included) are in wire/business.py, applied by the
# service.
_TEXT = 4096


class ProfileUpdate(BaseModel):
    """Fields to set; a field left out (or null) keeps its value. ``display_name`` is
    required when the profile is created."""

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(
        default=None, max_length=_TEXT, description="1 to 100 characters", examples=["Lufthansa"]
    )
    about: str | None = Field(default=None, max_length=_TEXT, description="at most 139 characters")
    description: str | None = Field(
        default=None, max_length=_TEXT, description="at most 512 characters"
    )
    address: str | None = Field(
        default=None, max_length=_TEXT, description="at most 256 characters"
    )
    email: str | None = Field(default=None, max_length=_TEXT, examples=["service@example.de"])
    websites: list[Annotated[str, Field(max_length=_TEXT)]] | None = Field(
        default=None, max_length=16, description="at most 2 absolute http(s) URLs"
    )
    category: CategoryText | None = None
    timezone: str | None = Field(default=None, max_length=64, examples=["Europe/Berlin"])
    hours: Schedule | None = Field(
        default=None,
        description='weekly opening hours, e.g. {"mon": [["09:00", "17:30"]]}; a missing day '
        "is closed; up to 3 intervals a day",
    )
    closed_dates: list[Annotated[str, Field(max_length=32)]] | None = Field(
        default=None, max_length=1000, description="at most 100 ISO dates, e.g. 2026-12-25"
    )

    def to_edit(self) -> ProfileEdit:
        return ProfileEdit(**self.model_dump())


class VerificationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: SafeText = Field(default="", max_length=NOTE_MAX, description="for the operator")


class RequestPublic(BaseModel):
    request_id: int
    state: str = Field(description="pending, approved, rejected or withdrawn")
    note: str
    reason: str | None = Field(description="the operator's reason for a decision")
    requested_ms: int
    decided_ms: int | None


class _ProfileFields(BaseModel):
    account_id: str
    display_name: str
    about: str
    description: str
    address: str
    email: str
    websites: list[str]
    category: BusinessCategory
    timezone: str
    hours: Schedule
    closed_dates: list[str]
    has_picture: bool
    verification: Verification


class OwnProfilePublic(_ProfileFields):
    suspended: bool
    suspended_ms: int | None
    suspend_reason: str | None
    pending_request: RequestPublic | None
    last_decision: RequestPublic | None = Field(description="the latest decided request")
    created_ms: int
    updated_ms: int


class BusinessPublic(_ProfileFields):
    open_now: bool | None = Field(description="null when the business publishes no hours")
    next_change_ms: int | None = Field(
        description="when the business next opens or closes, if within 8 days"
    )
    certificate: dict[str, Any] | None = Field(
        description="the operator-signed certificate of a verified business"
    )


class BusinessSummary(BaseModel):
    account_id: str
    display_name: str
    about: str
    category: BusinessCategory
    verification: Verification
    has_picture: bool


class DirectoryPublic(BaseModel):
    businesses: list[BusinessSummary]


def _fields(p: ProfileRow) -> dict[str, Any]:
    return {
        "account_id": p.account_id,
        "display_name": p.display_name,
        "about": p.about,
        "description": p.description,
        "address": p.address,
        "email": p.email,
        "websites": list(p.websites),
        "category": p.category,
        "timezone": p.timezone,
        "hours": p.hours.to_json(),
        "closed_dates": [d.isoformat() for d in p.closed_dates],
        "has_picture": p.has_picture,
        "verification": p.verification,
    }


def _request(r: RequestRow | None) -> RequestPublic | None:
    if r is None:
        return None
    return RequestPublic(
        request_id=r.id,
        state=r.state,
        note=r.note,
        reason=r.reason,
        requested_ms=r.requested_ms,
        decided_ms=r.decided_ms,
    )


def _own(own: OwnProfile) -> OwnProfilePublic:
    p = own.profile
    return OwnProfilePublic(
        **_fields(p),
        suspended=p.suspended_ms is not None,
        suspended_ms=p.suspended_ms,
        suspend_reason=p.suspend_reason,
        pending_request=_request(own.pending_request),
        last_decision=_request(own.last_decision),
        created_ms=p.created_ms,
        updated_ms=p.updated_ms,
    )


@router.put(
    "/business/profile",
    response_model=OwnProfilePublic,
    responses={
        201: {"model": OwnProfilePublic, "description": "profile created"},
        **errors(403, 409),
    },
)
async def save_profile(
    body: ProfileUpdate, principal: Authed, ctx: Ctx, response: Response
) -> OwnProfilePublic:
    """Create (201) or update (200) the caller's business profile."""
    own, created = await ctx.businesses.save_profile(principal.account_id, body.to_edit())
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _own(own)


@router.get("/business/profile", response_model=OwnProfilePublic, responses=errors(404))
async def own_profile(principal: Authed, ctx: Ctx) -> OwnProfilePublic:
    return _own(await ctx.businesses.own_profile(principal.account_id))


_PICTURE_BODY = {
    "requestBody": {
        "required": True,
        "description": f"the image itself, at most {PICTURE_MAX_BYTES} bytes",
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in PICTURE_TYPES},
    }
}


@router.put(
    "/business/profile/picture",
    status_code=status.HTTP_204_NO_CONTENT,
    openapi_extra=_PICTURE_BODY,
    responses=errors(403, 404),
)
async def upload_picture(request: Request, principal: Authed, ctx: Ctx) -> None:
    """Set the profile picture: a JPEG or PNG as the raw body, typed by Content-Type."""
    data = await request.body()
    await ctx.businesses.set_picture(
        principal.account_id, data, request.headers.get("content-type")
    )


@router.delete(
    "/business/profile/picture", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404)
)
async def remove_picture(principal: Authed, ctx: Ctx) -> None:
    await ctx.businesses.remove_picture(principal.account_id)


@router.post(
    "/business/verification",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RequestPublic,
    responses=errors(403, 404, 409),
)
async def request_verification(
    principal: Authed, ctx: Ctx, body: VerificationCreate | None = None
) -> RequestPublic:
    """Ask the operator to verify the caller's business."""
    note = "" if body is None else body.note
    request = await ctx.businesses.request_verification(principal.account_id, note)
    public = _request(request)
    assert public is not None
    return public


@router.get("/businesses", response_model=DirectoryPublic)
async def directory(
    _: Authed,
    ctx: Ctx,
    q: Annotated[SafeStr, Query(max_length=100, description="part of the name")] = "",
    category: BusinessCategory | None = None,
    limit: Annotated[int, Query(ge=1, le=DIRECTORY_MAX)] = 20,
) -> DirectoryPublic:
    """Find businesses by name: verified ones first, then the others, each by name."""
    found = await ctx.businesses.search(q, category, limit)
    return DirectoryPublic(
        businesses=[
            BusinessSummary(
                account_id=p.account_id,
                display_name=p.display_name,
                about=p.about,
                category=p.category,
                verification=p.verification,
                has_picture=p.has_picture,
            )
            for p in found
        ]
    )


@router.get("/businesses/{account_id}", response_model=BusinessPublic, responses=errors(404))
async def business_profile(account_id: AccountPath, _: Authed, ctx: Ctx) -> BusinessPublic:
    """The public profile of a business, with whether it is open now."""
    public = await ctx.businesses.public_profile(AccountId(account_id))
    return BusinessPublic(
        **_fields(public.profile),
        open_now=public.open_now,
        next_change_ms=public.next_change_ms,
        certificate=public.certificate,
    )


@router.get(
    "/businesses/{account_id}/picture",
    response_class=Response,
    responses={
        200: {"content": {t: {} for t in PICTURE_TYPES}, "description": "the image"},
        **errors(404),
    },
)
async def business_picture(account_id: AccountPath, _: Authed, ctx: Ctx) -> Response:
    data, mime = await ctx.businesses.picture(AccountId(account_id))
    return Response(
        content=data,
        media_type=mime,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300"},
    )

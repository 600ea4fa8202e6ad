"""Routes: blocks and reports (customers), quality and limits (a business about itself), and
the operator's throughput setting."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field

from tresen.core.fields import SafeStr, SafeText
from tresen.core.ids import AccountId
from tresen.relay.http import Authed, Ctx, OperatorAuthed, errors
from tresen.relay.policy.service import REPORT_REASONS

__all__ = ["router"]

public = APIRouter(prefix="/v1", tags=["rules"])
admin = APIRouter(prefix="/v1/admin", tags=["admin"])

AccountPath = Annotated[SafeStr, Path(min_length=1, max_length=32)]
ReportReason = Literal["spam", "offensive", "scam", "unwanted", "template_mismatch", "other"]
assert set(ReportReason.__args__) == set(REPORT_REASONS)  # type: ignore[attr-defined]


class BlockCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: SafeStr = Field(min_length=1, max_length=32)


class BlockPublic(BaseModel):
    account_id: str
    blocked_ms: int


class BlocksPublic(BaseModel):
    blocked: list[BlockPublic]


class BlockedPublic(BaseModel):
    account_id: str
    new: bool = Field(description="false when it was blocked already")


class ReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: SafeStr = Field(min_length=1, max_length=32)
    reason: ReportReason
    message_id: SafeStr | None = Field(
        default=None, max_length=32, description="a message of that account the reporter got"
    )
    detail: SafeText = Field(default="", max_length=512)
    block: bool = Field(default=False, description="block the account as well")


class ReportedPublic(BaseModel):
    account_id: str
    reason: str
    blocked: bool


class StandingPublic(BaseModel):
    quality: Literal["GREEN", "YELLOW", "RED"]
    blocks: int = Field(description="blocks over the quality period (7 days by default)")
    reports: int
    uncounted: int = Field(
        default=0,
        description="blocks and reports kept but not rated: from customers who received no "
        "message from the business recently, or repeated within the quality period",
    )
    delivered: int
    tier: int = Field(description="step on the ladder, 0 first")
    tier_limit: int | None = Field(description="unique customers per 24 h; null = unlimited")
    reached_24h: int = Field(description="customers reached outside a window, last 24 h")
    throughput_mps: int


class ThroughputUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages_per_second: int | None = Field(
        ge=1, le=2**31 - 1, description="null returns to the operator's default"
    )


@public.post(
    "/blocks",
    status_code=status.HTTP_201_CREATED,
    response_model=BlockedPublic,
    responses=errors(404),
)
async def block(body: BlockCreate, principal: Authed, ctx: Ctx) -> BlockedPublic:
    """Block an account: its messages no longer reach you, and yours no longer reach it."""
    new = await ctx.policy.block(principal.account_id, AccountId(body.account_id))
    return BlockedPublic(account_id=body.account_id, new=new)


@public.delete("/blocks/{account_id}", status_code=status.HTTP_204_NO_CONTENT)
async def unblock(account_id: AccountPath, principal: Authed, ctx: Ctx) -> None:
    await ctx.policy.unblock(principal.account_id, AccountId(account_id))


@public.get("/blocks", response_model=BlocksPublic)
async def blocks(principal: Authed, ctx: Ctx) -> BlocksPublic:
    return BlocksPublic(
        blocked=[
            BlockPublic(account_id=a, blocked_ms=at)
            for a, at in await ctx.policy.blocked(principal.account_id)
        ]
    )


@public.post(
    "/reports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReportedPublic,
    responses=errors(404, 429),
)
async def report(body: ReportCreate, principal: Authed, ctx: Ctx) -> ReportedPublic:
    """Report an account (and a message of it) to the operator; lowers a business's quality."""
    await ctx.policy.report(
        principal.account_id,
        AccountId(body.account_id),
        body.reason,
        message_id=body.message_id,
        detail=body.detail,
        block=body.block,
    )
    return ReportedPublic(account_id=body.account_id, reason=body.reason, blocked=body.block)


def _standing(s: object) -> StandingPublic:
    return StandingPublic.model_validate(s, from_attributes=True)


@public.get("/business/quality", response_model=StandingPublic, responses=errors(404))
async def own_standing(principal: Authed, ctx: Ctx) -> StandingPublic:
    """The calling business's quality rating, messaging tier and usage."""
    return _standing(await ctx.policy.standing(principal.account_id))


@admin.get("/businesses/{account_id}/quality", response_model=StandingPublic, responses=errors(404))
async def business_standing(account_id: AccountPath, _: OperatorAuthed, ctx: Ctx) -> StandingPublic:
    return _standing(await ctx.policy.standing(AccountId(account_id)))


@admin.put(
    "/businesses/{account_id}/throughput", response_model=StandingPublic, responses=errors(404)
)
async def set_throughput(
    account_id: AccountPath, body: ThroughputUpdate, operator: OperatorAuthed, ctx: Ctx
) -> StandingPublic:
    """Raise a business's throughput (up to the operator's maximum, 1,000/s by default)."""
    await ctx.policy.set_throughput(
        AccountId(account_id), body.messages_per_second, by=operator.name
    )
    return _standing(await ctx.policy.standing(AccountId(account_id)))


router = APIRouter()
router.include_router(public)
router.include_router(admin)

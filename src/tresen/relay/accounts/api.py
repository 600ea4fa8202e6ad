"""Routes: registration by phone number and the caller's own devices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from tresen.core.fields import Id63, SafeStr
from tresen.core.ids import AccountId, DeviceId
from tresen.relay.accounts.export_schema import ExportPublic
from tresen.relay.accounts.personal_data import EXPORT_FORMAT
from tresen.relay.accounts.source import Source
from tresen.relay.http import Authed, Ctx, errors

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["accounts"])


class CodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: SafeStr = Field(max_length=64, examples=["+4915112345678"])


class CodeRequested(BaseModel):
    expires_in_s: int


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: SafeStr = Field(max_length=64)
    code: SafeStr = Field(min_length=1, max_length=12)
    device_name: SafeStr = Field(default="", max_length=64)


class RegistrationPublic(BaseModel):
    account_id: str
    device_id: int
    token: str
    new_account: bool


class DevicePublic(BaseModel):
    device_id: int
    name: str
    registration_id: int
    identity_curve25519: str | None
    identity_ed25519: str | None
    created_ms: int
    last_seen_ms: int


class MePublic(BaseModel):
    account_id: str
    device_id: int
    phone: str


@router.post(
    "/registration/code",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CodeRequested,
    responses=errors(429),
)
async def request_code(body: CodeRequest, source: Source, ctx: Ctx) -> CodeRequested:
    return CodeRequested(expires_in_s=await ctx.accounts.request_code(body.phone, source))


@router.post(
    "/registration/verify", response_model=RegistrationPublic, responses=errors(403, 409, 410, 429)
)
async def verify_code(body: VerifyRequest, source: Source, ctx: Ctx) -> RegistrationPublic:
    reg = await ctx.accounts.verify_code(body.phone, body.code, body.device_name, source)
    return RegistrationPublic(
        account_id=reg.account_id,
        device_id=reg.device_id,
        token=reg.token,
        new_account=reg.new_account,
    )


@router.get("/me", response_model=MePublic)
async def me(principal: Authed, ctx: Ctx) -> MePublic:
    phone = await ctx.accounts.phone_of(principal.account_id)
    return MePublic(
        account_id=principal.account_id, device_id=principal.device_id, phone=phone or ""
    )


@router.get("/me/export", response_model=ExportPublic, responses=errors(429))
async def export_me(principal: Authed, ctx: Ctx) -> ExportPublic:
    """A copy of everything the relay holds about the caller's account (machine-readable).

    What a business's gateway holds is asked of each business end to end (the SDK's
    ``Client.export_data``). At most ``limits.exports_per_hour`` per account (429, code 4)."""
    export = await ctx.personal_data.export(principal)
    return ExportPublic.model_validate(
        {
            "format": EXPORT_FORMAT,
            "generated_ms": export.generated_ms,
            "row_limit": export.row_limit,
            "truncated": export.truncated,
            **export.sections,
        }
    )


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, responses=errors(409))
async def delete_me(principal: Authed, ctx: Ctx) -> None:
    """Delete the caller's account: every device and token, its keys, the messages queued to
    and from it, its consents (withdrawn in their history), its uploads. Its number can
    register again, as a new account; the blocks it made then apply again. A business
    account is closed by the operator (409, code 150025). docs/privacy.md lists what stays."""
    deleted = await ctx.personal_data.delete_account(principal)
    for device_pk in deleted.devices:
        await ctx.hub.disconnect(device_pk, "account deleted")


class AccountLookup(BaseModel):
    account_id: str
    phone: str
    kind: str = Field(
        description="`customer` or `business`: business chats are always labelled as such",
        examples=["business"],
    )


@router.get("/accounts", response_model=AccountLookup, responses=errors(404, 429))
async def lookup_account(
    principal: Authed,
    ctx: Ctx,
    phone: Annotated[SafeStr, Query(max_length=64, examples=["+4915112345678"])],
) -> AccountLookup:
    """Find the account registered for a phone number."""
    found = await ctx.accounts.lookup(principal, phone)
    return AccountLookup(account_id=found.account_id, phone=found.phone, kind=found.kind)


@router.get("/accounts/{account_id}", response_model=AccountLookup, responses=errors(404, 429))
async def get_account(
    account_id: Annotated[SafeStr, Path(max_length=32)], principal: Authed, ctx: Ctx
) -> AccountLookup:
    """The phone number behind an account id, e.g. of an incoming message's sender."""
    found = await ctx.accounts.account(principal, AccountId(account_id))
    return AccountLookup(account_id=found.account_id, phone=found.phone, kind=found.kind)


@router.get("/devices", response_model=list[DevicePublic])
async def own_devices(principal: Authed, ctx: Ctx) -> list[DevicePublic]:
    return [
        DevicePublic(
            device_id=d.device_id,
            name=d.name,
            registration_id=d.registration_id,
            identity_curve25519=d.identity_curve25519,
            identity_ed25519=d.identity_ed25519,
            created_ms=d.created_ms,
            last_seen_ms=d.last_seen_ms,
        )
        for d in await ctx.accounts.list_devices(principal.account_id)
    ]


@router.delete(
    "/devices/{device_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404)
)
async def remove_device(device_id: Annotated[Id63, Path()], principal: Authed, ctx: Ctx) -> None:
    removed = await ctx.accounts.remove_device(principal, DeviceId(device_id))
    await ctx.hub.disconnect(removed, "device removed")

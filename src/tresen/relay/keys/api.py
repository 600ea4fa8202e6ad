"""Routes of the key directory: upload, count, device list and one-time-key claims."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from tresen.core.fields import Id63, SafeStr
from tresen.core.ids import AccountId, DeviceId
from tresen.relay.context import RelayContext
from tresen.relay.http import Authed, Ctx, errors
from tresen.relay.keys.service import (
    ClaimedDevice,
    DeviceKeys,
    IdentityKeys,
    KeyUpload,
    SignedKey,
)
from tresen.relay.transparency.models import LookupPublic, lookup_public

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["keys"])

# Canonical unpadded base64 of a 32-byte key is 43 characters, of a signature 86; the bounds
# leave room but match the columns. The service checks that the text really is a key.
KeyText = Annotated[SafeStr, Field(min_length=1, max_length=64)]
SignatureText = Annotated[SafeStr, Field(min_length=1, max_length=128)]
# Key ids go into signed messages between zero bytes, so they are plain printable tokens.
KeyIdText = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9+/=_.:-]+$")]
AccountPath = Annotated[SafeStr, Path(min_length=1, max_length=64)]

# The parser's bound only stops absurd bodies early; the real cap (50 stored keys per device,
# error TOO_MANY_ONE_TIME_KEYS) is the service's rule.
MAX_KEYS_PER_UPLOAD = 100
MAX_CLAIM_DEVICES = 64
MAX_CLAIM_ACCOUNTS = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentityKeysCreate(_Strict):
    curve25519: KeyText
    ed25519: KeyText


class SignedKeyCreate(_Strict):
    key_id: KeyIdText
    public_key: KeyText
    signature: SignatureText

    def to_key(self) -> SignedKey:
        return SignedKey(self.key_id, self.public_key, self.signature)


class KeyUploadCreate(_Strict):
    identity_keys: IdentityKeysCreate | None = None
    one_time_keys: list[SignedKeyCreate] = Field(default=[], max_length=MAX_KEYS_PER_UPLOAD)
    fallback_key: SignedKeyCreate | None = None


class KeyUploadPublic(BaseModel):
    one_time_keys: int = Field(description="one-time keys the relay now holds for this device")
    max_one_time_keys: int
    registration_id: int


class KeyCountPublic(BaseModel):
    one_time_keys: int
    max_one_time_keys: int
    low: bool = Field(description="true when the device should upload more one-time keys")


class IdentityKeysPublic(BaseModel):
    curve25519: str
    ed25519: str


class DeviceKeysPublic(BaseModel):
    device_id: int
    registration_id: int
    identity_keys: IdentityKeysPublic


_TRANSPARENCY = (
    "the device set as the latest key-transparency epoch logs it, with its proofs (null when "
    'the relay keeps no log); docs/protocol.md, "Key transparency"'
)
ProofQuery = Annotated[bool, Query(description="add the key-transparency proofs of the device set")]
SinceQuery = Annotated[
    int | None,
    Query(ge=0, le=2**62, description="a log size seen before: add a consistency proof from it"),
]


class DeviceDirectoryPublic(BaseModel):
    account_id: str
    devices: list[DeviceKeysPublic]
    transparency: LookupPublic | None = Field(default=None, description=_TRANSPARENCY)


class ClaimCreate(_Strict):
    device_ids: list[Id63] | None = Field(default=None, max_length=MAX_CLAIM_DEVICES)


class ClaimManyCreate(_Strict):
    accounts: list[Annotated[SafeStr, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=MAX_CLAIM_ACCOUNTS
    )
    transparency: bool = Field(
        default=False, description="add each account's key-transparency proofs"
    )
    transparency_since: int | None = Field(
        default=None,
        ge=0,
        le=2**62,
        description="a log size seen before: each account's proofs come with a consistency "
        "proof from it",
    )


class ClaimedKeyPublic(BaseModel):
    key_id: str
    public_key: str
    signature: str
    fallback: bool


class ClaimedDevicePublic(DeviceKeysPublic):
    one_time_key: ClaimedKeyPublic | None


class ClaimPublic(BaseModel):
    account_id: str
    devices: list[ClaimedDevicePublic]
    transparency: LookupPublic | None = Field(default=None, description=_TRANSPARENCY)


class ClaimManyPublic(BaseModel):
    accounts: list[ClaimPublic] = Field(description="each existing account's devices, claimed")
    unknown: list[str] = Field(description="accounts that do not exist")


def _identity_public(device: DeviceKeys) -> IdentityKeysPublic:
    return IdentityKeysPublic(
        curve25519=device.identity.curve25519, ed25519=device.identity.ed25519
    )


def _claimed_public(claimed: ClaimedDevice) -> ClaimedDevicePublic:
    key = claimed.one_time_key
    return ClaimedDevicePublic(
        device_id=claimed.device.device_id,
        registration_id=claimed.device.registration_id,
        identity_keys=_identity_public(claimed.device),
        one_time_key=None
        if key is None
        else ClaimedKeyPublic(
            key_id=key.key.key_id,
            public_key=key.key.public_key,
            signature=key.key.signature,
            fallback=key.fallback,
        ),
    )


@router.put("/keys", response_model=KeyUploadPublic, responses=errors(409))
async def upload_keys(body: KeyUploadCreate, principal: Authed, ctx: Ctx) -> KeyUploadPublic:
    identity = body.identity_keys
    result = await ctx.keys.upload_keys(
        principal,
        KeyUpload(
            identity_keys=None if identity is None else IdentityKeys(**identity.model_dump()),
            one_time_keys=[k.to_key() for k in body.one_time_keys],
            fallback_key=None if body.fallback_key is None else body.fallback_key.to_key(),
        ),
    )
    return KeyUploadPublic(
        one_time_keys=result.one_time_keys,
        max_one_time_keys=ctx.keys.limits.max_one_time_keys,
        registration_id=result.registration_id,
    )


@router.get("/keys/count", response_model=KeyCountPublic)
async def count_keys(principal: Authed, ctx: Ctx) -> KeyCountPublic:
    count = await ctx.keys.one_time_key_count(principal.device_pk)
    limits = ctx.keys.limits
    return KeyCountPublic(
        one_time_keys=count,
        max_one_time_keys=limits.max_one_time_keys,
        low=count < limits.one_time_keys_low,
    )


def _logged(devices: list[DeviceKeys]) -> list[tuple[int, str, str]]:
    return [(d.device_id, d.identity.curve25519, d.identity.ed25519) for d in devices]


async def _with_proof(
    ctx: RelayContext, account_id: str, *, proof: bool, since: int | None
) -> tuple[list[DeviceKeys], LookupPublic | None]:
    """The account's devices and, when the relay keeps a log, the proofs of the same set.

    The directory and the latest epoch are read one after the other; a device that changed
    in between is published and both are read again."""
    devices = await ctx.keys.device_directory(AccountId(account_id))
    if not (proof and ctx.transparency.enabled):
        return devices, None
    for _ in range(3):
        found = await ctx.transparency.lookup(account_id, since)
        logged = [(d.device_id, d.curve25519, d.ed25519) for d in found.devices]
        if logged == _logged(devices):
            break
        devices = await ctx.keys.device_directory(AccountId(account_id))
    return devices, lookup_public(found)


# Proofs only when asked for: the field is left out otherwise (``exclude_unset``).
@router.get(
    "/keys/{account_id}",
    response_model=DeviceDirectoryPublic,
    response_model_exclude_unset=True,
    responses=errors(404),
)
async def device_keys(
    account_id: AccountPath,
    _: Authed,
    ctx: Ctx,
    transparency: ProofQuery = False,
    transparency_since: SinceQuery = None,
) -> DeviceDirectoryPublic:
    devices, proof = await _with_proof(
        ctx, account_id, proof=transparency, since=transparency_since
    )
    return DeviceDirectoryPublic(
        account_id=account_id,
        devices=[
            DeviceKeysPublic(
                device_id=d.device_id,
                registration_id=d.registration_id,
                identity_keys=_identity_public(d),
            )
            for d in devices
        ],
        **({} if proof is None else {"transparency": proof}),
    )


@router.post("/keys/{account_id}/claim", response_model=ClaimPublic, responses=errors(404))
async def claim_keys(
    account_id: AccountPath, principal: Authed, ctx: Ctx, body: ClaimCreate | None = None
) -> ClaimPublic:
    device_ids = None
    if body is not None and body.device_ids is not None:
        device_ids = [DeviceId(d) for d in body.device_ids]
    claimed = await ctx.keys.claim_keys(principal, AccountId(account_id), device_ids)
    return ClaimPublic(account_id=account_id, devices=[_claimed_public(c) for c in claimed])


@router.post("/keys/claim", response_model=ClaimManyPublic, response_model_exclude_unset=True)
async def claim_many_keys(body: ClaimManyCreate, principal: Authed, ctx: Ctx) -> ClaimManyPublic:
    """One key per device of each of up to 64 accounts, in one request (as a business starts
    sessions with many new customers); every device of every named account."""
    found = await ctx.keys.claim_many(principal, [AccountId(a) for a in body.accounts])
    accounts = []
    for a, claimed in found.items():
        if claimed is None:
            continue
        public = ClaimPublic(account_id=a, devices=[_claimed_public(c) for c in claimed])
        if body.transparency and ctx.transparency.enabled:
            lookup = await ctx.transparency.lookup(a, body.transparency_since)
            public.transparency = lookup_public(lookup)
        accounts.append(public)
    return ClaimManyPublic(
        accounts=accounts, unknown=[a for a, claimed in found.items() if claimed is None]
    )

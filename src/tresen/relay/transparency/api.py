"""Routes of key transparency: signed epochs, consistency proofs, look-ups with proofs.

Epochs and consistency proofs reveal no account and are public, so that anyone can audit
the log (``tresen audit``); a look-up names an account and needs a device token, like the
key directory.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from tresen.core.errors import ErrorCode, TresenError
from tresen.core.fields import SafeStr
from tresen.crypto.encoding import b64
from tresen.relay.http import Authed, Ctx, errors
from tresen.relay.transparency.models import (
    CertificateProofPublic,
    ConsistencyPublic,
    EpochPublic,
    LookupPublic,
    epoch_public,
    lookup_public,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/transparency", tags=["transparency"])

TreeSize = Annotated[int, Query(ge=0, le=2**62)]
EpochNumber = Annotated[int, Path(ge=0, le=2**62)]
AccountPath = Annotated[SafeStr, Path(min_length=1, max_length=64)]


class EpochListPublic(BaseModel):
    epochs: list[EpochPublic] = Field(description="oldest first")


def _enabled(ctx: Ctx) -> None:
    if not ctx.transparency.enabled:
        raise TresenError(ErrorCode.NO_EPOCH, "this relay keeps no key transparency log")


@router.get("/epochs/latest", response_model=EpochPublic, responses=errors(404))
async def latest_epoch(ctx: Ctx) -> EpochPublic:
    _enabled(ctx)
    return epoch_public(await ctx.transparency.latest())


@router.get("/epochs/{epoch}", response_model=EpochPublic, responses=errors(404))
async def one_epoch(epoch: EpochNumber, ctx: Ctx) -> EpochPublic:
    _enabled(ctx)
    return epoch_public(await ctx.transparency.epoch(epoch))


@router.get("/epochs", response_model=EpochListPublic)
async def epochs(
    ctx: Ctx,
    after: Annotated[int, Query(ge=-1, le=2**62, description="epochs after this one")] = -1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> EpochListPublic:
    """Signed epoch heads in order, for auditors (at most ``max_epochs_per_page``)."""
    _enabled(ctx)
    found = await ctx.transparency.epochs(after, limit)
    return EpochListPublic(epochs=[epoch_public(e) for e in found])


@router.get("/consistency", response_model=ConsistencyPublic, responses=errors(400))
async def consistency(first: TreeSize, second: TreeSize, ctx: Ctx) -> ConsistencyPublic:
    """RFC 9162 consistency proof: the log of ``first`` leaves is a prefix of the log of
    ``second`` leaves."""
    _enabled(ctx)
    proof = await ctx.transparency.consistency(first, second)
    return ConsistencyPublic(first=first, second=second, proof=[b64(h) for h in proof])


@router.get("/lookup/{account_id}", response_model=LookupPublic, responses=errors(404))
async def lookup(
    account_id: AccountPath,
    _: Authed,
    ctx: Ctx,
    since: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="a tree size seen before: add a consistency proof"),
    ] = None,
) -> LookupPublic:
    """The account's device set as the latest epoch logs it, with the map and inclusion
    proofs; an account without devices (or unknown) gets a proof that it has none."""
    _enabled(ctx)
    return lookup_public(await ctx.transparency.lookup(account_id, since))


@router.get("/certificates/{serial}", response_model=CertificateProofPublic, responses=errors(404))
async def certificate(
    serial: Annotated[int, Path(ge=1, le=2**62)], _: Authed, ctx: Ctx
) -> CertificateProofPublic:
    """Where the business certificate ``serial`` is in the log, with its inclusion proof:
    a certificate shown to one client only would be missing here."""
    _enabled(ctx)
    epoch, leaf_index, leaf, inclusion = await ctx.transparency.certificate(serial)
    return CertificateProofPublic(
        serial=leaf.serial,
        account_id=leaf.account_id,
        digest=b64(leaf.digest),
        leaf_index=leaf_index,
        leaf_epoch=leaf.epoch,
        epoch=epoch_public(epoch),
        inclusion=[b64(h) for h in inclusion],
    )

"""Business accounts: profiles, pictures, verification requests and the directory.

An account registers by phone like any customer and becomes a business by saving a profile.
Rules:

- Display names are lookalike-proof: no business may take a name whose skeleton
  (``names.py``) is that of a verified business other than itself. A verified business that
  changes its display name drops back to ``pending`` with a new verification request, since
  the operator's certificate binds the old name; the operator side re-issues or revokes.
- One pending verification request per business at a time; a suspended business cannot file
  one. A suspended business stays out of the directory and its public profile is not found,
  but it still reads and edits its own profile.
- The directory lists verified businesses first, then the others, each by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.ids import AccountId
from tresen.core.logging import get_logger
from tresen.relay.businesses import repo
from tresen.relay.businesses.names import MAX_SKELETON_CHARS, name_skeleton
from tresen.relay.businesses.repo import ProfileRow, RequestRow
from tresen.wire.business import (
    BusinessCategory,
    CleanProfileEdit,
    InvalidProfile,
    Problem,
    ProfileEdit,
    Verification,
    is_open,
    next_change,
    normalize_display_name,
)

__all__ = [
    "DIRECTORY_MAX",
    "NOTE_MAX",
    "PICTURE_MAX_BYTES",
    "PICTURE_TYPES",
    "RENAME_NOTE",
    "BusinessService",
    "CertificateLookup",
    "OwnProfile",
    "PublicProfile",
    "refuse_confusable",
]

log = get_logger("tresen.relay.businesses")

PICTURE_MAX_BYTES = 512 * 1024
# MIME type → the magic bytes its files begin with.
PICTURE_TYPES: dict[str, bytes] = {
    "image/jpeg": b"\xff\xd8\xff",
    "image/png": b"\x89PNG\r\n\x1a\n",
}
DIRECTORY_MAX = 50
NOTE_MAX = 512
RENAME_NOTE = "display name changed"


class CertificateLookup(Protocol):
    """The current certificate of a verified business (None if it has none)."""

    def __call__(self, account_id: AccountId, /) -> Awaitable[dict[str, Any] | None]: ...


class BecameBusiness(Protocol):
    """Told that ``account_id`` became a business (caches of account kinds drop it)."""

    def __call__(self, account_id: AccountId, /) -> None: ...


class BackToPending(Protocol):
    """Called inside the transaction that sends a verified business back to pending."""

    def __call__(
        self, conn: AsyncConnection, account_id: AccountId, reason: str, /
    ) -> Awaitable[object]: ...


@dataclass(frozen=True, slots=True)
class OwnProfile:
    """A business's view of its own profile and where its verification stands."""

    profile: ProfileRow
    pending_request: RequestRow | None
    last_decision: RequestRow | None


@dataclass(frozen=True, slots=True)
class PublicProfile:
    """What anyone sees of a listed business. ``open_now`` is ``None`` without hours."""

    profile: ProfileRow
    open_now: bool | None
    next_change_ms: int | None
    certificate: dict[str, Any] | None


def _invalid(problems: list[Problem]) -> TresenError:
    return TresenError(
        ErrorCode.INVALID_PARAMETER,
        "invalid business profile",
        problems=[p.to_dict() for p in problems],
    )


def _not_found(account_id: AccountId) -> TresenError:
    return TresenError(ErrorCode.UNDELIVERABLE, "no such business", account_id=account_id)


def _not_a_business() -> TresenError:
    return TresenError(
        ErrorCode.NOT_A_BUSINESS,
        "this account has no business profile; save one with PUT /v1/business/profile",
    )


class BusinessService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        certificate_for: CertificateLookup,
        on_became_business: BecameBusiness,
        on_back_to_pending: BackToPending,
    ) -> None:
        self.db = db
        self.clock = clock
        # The operator side's current certificate of a verified business, shown with its
        # public profile so clients can check the tick offline.
        self.certificate_for = certificate_for
        self.on_became_business = on_became_business
        # Revoking the certificate in the same transaction as the change keeps them atomic.
        self.on_back_to_pending = on_back_to_pending

    # --- the caller's own profile -----------------------------------------------------------

    async def save_profile(
        self, account_id: AccountId, edit: ProfileEdit
    ) -> tuple[OwnProfile, bool]:
        """Create or update the caller's profile; returns it and whether it was created."""
        clean, skeleton = _clean(edit)
        fields = _changed_fields(clean)
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            await repo.lock_account(conn, account_id)
            current = await repo.get_profile(conn, account_id, lock=True)
            if current is None:
                if clean.display_name is None or skeleton is None:
                    raise _invalid([Problem("display_name", "is required for a new profile")])
                await refuse_confusable(conn, account_id, skeleton)
                await repo.insert_profile(
                    conn, account_id, {**fields, "name_skeleton": skeleton}, now
                )
                await repo.mark_business(conn, account_id)
            else:
                renamed = clean.display_name not in (None, current.display_name)
                if renamed and skeleton is not None:
                    await refuse_confusable(conn, account_id, skeleton)
                    fields["name_skeleton"] = skeleton
                await repo.update_profile(conn, account_id, fields, now)
                if renamed and current.verification is Verification.VERIFIED:
                    await self._back_to_pending(conn, account_id, RENAME_NOTE, now)
            own = await self._own(conn, account_id)
        assert own is not None
        if current is None:
            self.on_became_business(account_id)
        log.info("business profile saved", account_id=account_id, created=current is None)
        return own, current is None

    async def own_profile(self, account_id: AccountId) -> OwnProfile:
        async with self.db.read() as conn:
            own = await self._own(conn, account_id)
        if own is None:
            raise _not_a_business()
        return own

    async def set_picture(
        self, account_id: AccountId, data: bytes, content_type: str | None
    ) -> None:
        """Store a JPEG or PNG of at most 512 KiB whose bytes match its declared type."""
        if len(data) > PICTURE_MAX_BYTES:
            raise TresenError(
                ErrorCode.FRAME_TOO_LARGE,
                "the picture is too large",
                max_bytes=PICTURE_MAX_BYTES,
            )
        mime = (content_type or "").split(";")[0].strip().lower()
        magic = PICTURE_TYPES.get(mime)
        if magic is None:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "the picture must be sent as image/jpeg or image/png",
                field="Content-Type",
                allowed=sorted(PICTURE_TYPES),
            )
        # The type is checked against the bytes, so no client is served a file under a type
        # it is not (and no HTML or script travels as an "image").
        if not data.startswith(magic):
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                f"the body is not a {mime.split('/')[1].upper()} image",
                field="picture",
            )
        async with self.db.write() as conn:
            stored = await repo.set_picture(conn, account_id, data, mime, self.clock.now_ms())
        if not stored:
            raise _not_a_business()

    async def remove_picture(self, account_id: AccountId) -> None:
        async with self.db.write() as conn:
            stored = await repo.set_picture(conn, account_id, None, None, self.clock.now_ms())
        if not stored:
            raise _not_a_business()

    # --- verification -----------------------------------------------------------------------

    async def request_verification(self, account_id: AccountId, note: str) -> RequestRow:
        """Ask the operator to verify the caller's business; one pending request at a time."""
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            await repo.lock_account(conn, account_id)
            profile = await repo.get_profile(conn, account_id, lock=True)
            if profile is None:
                raise _not_a_business()
            if profile.suspended_ms is not None:
                raise TresenError(
                    ErrorCode.BUSINESS_SUSPENDED,
                    "this business is suspended and cannot ask for verification",
                )
            pending = await repo.pending_request(conn, account_id)
            if pending is not None:
                raise TresenError(
                    ErrorCode.VERIFICATION_PENDING,
                    "a verification request is already pending",
                    request_id=pending.id,
                    requested_ms=pending.requested_ms,
                )
            if profile.verification is Verification.VERIFIED:
                raise TresenError(ErrorCode.ALREADY_VERIFIED, "this business is verified")
            request = await repo.insert_request(conn, account_id, note.strip()[:NOTE_MAX], now)
            await repo.set_verification(conn, account_id, Verification.PENDING, now)
        log.info("verification requested", account_id=account_id, request_id=request.id)
        return request

    async def on_verified_identity_changed(self, account_id: AccountId, reason: str) -> bool:
        """What the certificate of a verified business binds has changed (its display name,
        its devices' keys): back to ``pending`` with a new request carrying ``reason``.

        Returns whether the business was verified. Revoking certificates is the operator
        side's business, not this method's.
        """
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            await repo.lock_account(conn, account_id)
            profile = await repo.get_profile(conn, account_id, lock=True)
            if profile is None or profile.verification is not Verification.VERIFIED:
                return False
            await self._back_to_pending(conn, account_id, reason, now)
        return True

    async def _back_to_pending(
        self, conn: AsyncConnection, account_id: AccountId, reason: str, now: int
    ) -> None:
        await repo.set_verification(conn, account_id, Verification.PENDING, now)
        await self.on_back_to_pending(conn, account_id, reason)
        if await repo.pending_request(conn, account_id) is None:
            await repo.insert_request(conn, account_id, reason.strip()[:NOTE_MAX], now)
        log.info("verified business back to pending", account_id=account_id)

    # --- what everyone sees -----------------------------------------------------------------

    async def public_profile(self, account_id: AccountId) -> PublicProfile:
        """The profile of a listed business; unknown, customer and suspended accounts are
        all "no such business"."""
        async with self.db.read() as conn:
            profile = await repo.get_profile(conn, account_id)
        if profile is None or profile.suspended_ms is not None:
            raise _not_found(account_id)
        open_now: bool | None = None
        change: int | None = None
        if not profile.hours.is_empty:
            now = self.clock.now_ms()
            open_now = is_open(profile.hours, profile.closed_dates, profile.timezone, now)
            change = next_change(profile.hours, profile.closed_dates, profile.timezone, now)
        certificate = await self.certificate_for(account_id)
        return PublicProfile(profile, open_now, change, certificate)

    async def picture(self, account_id: AccountId) -> tuple[bytes, str]:
        async with self.db.read() as conn:
            found = await repo.get_picture(conn, account_id)
        if found is None or found[2] is not None:
            raise TresenError(
                ErrorCode.UNDELIVERABLE, "this business has no picture", account_id=account_id
            )
        return found[0], found[1]

    async def search(
        self, query: str, category: BusinessCategory | None, limit: int
    ) -> list[ProfileRow]:
        """Listed businesses whose name contains ``query``, ignoring case, accents, spacing
        and lookalike characters; verified ones first."""
        query = " ".join(query.split())
        async with self.db.read() as conn:
            return await repo.search(
                conn,
                skeleton=name_skeleton(query) if query else "",
                text=query.lower(),
                category=category,
                limit=max(1, min(limit, DIRECTORY_MAX)),
            )

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    async def _own(conn: AsyncConnection, account_id: AccountId) -> OwnProfile | None:
        profile = await repo.get_profile(conn, account_id)
        if profile is None:
            return None
        return OwnProfile(
            profile,
            pending_request=await repo.pending_request(conn, account_id),
            last_decision=await repo.last_decided_request(conn, account_id),
        )


async def refuse_confusable(conn: AsyncConnection, account_id: AccountId, skeleton: str) -> None:
    """Raise NAME_CONFUSABLE if a verified business other than ``account_id`` has a name with
    this skeleton. Both a business taking a name and the operator verifying one ask this.

    The name stays locked until the transaction ends (PostgreSQL), so a rename and a
    verification of the same skeleton cannot both pass the check at once.
    """
    await repo.lock_name(conn, skeleton)
    clash = await repo.verified_with_skeleton(conn, skeleton, account_id)
    if clash is not None:
        other_id, other_name = clash
        raise TresenError(
            ErrorCode.NAME_CONFUSABLE,
            f'the name can be mistaken for the verified business "{other_name}"',
            conflicts_with={"account_id": other_id, "display_name": other_name},
        )


def _clean(edit: ProfileEdit) -> tuple[CleanProfileEdit, str | None]:
    """The validated edit and the skeleton of its display name; every problem at once."""
    problems: list[Problem] = []
    try:
        clean = edit.clean()
    except InvalidProfile as e:
        problems.extend(e.problems)
        clean = CleanProfileEdit()
    skeleton = None
    name_ok = not any(p.field == "display_name" for p in problems)
    if edit.display_name is not None and name_ok:
        skeleton = name_skeleton(normalize_display_name(edit.display_name))
        if not skeleton:
            problems.append(Problem("display_name", "must contain letters or digits"))
        elif len(skeleton) > MAX_SKELETON_CHARS:
            problems.append(Problem("display_name", "is too long once normalized"))
    if problems:
        raise _invalid(problems)
    return clean, skeleton


def _changed_fields(clean: CleanProfileEdit) -> dict[str, Any]:
    """The fields an edit sets (``None`` leaves a field as it is)."""
    return {
        f.name: getattr(clean, f.name)
        for f in dataclasses.fields(clean)
        if getattr(clean, f.name) is not None
    }

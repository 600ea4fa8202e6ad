"""The rules of the blob store for encrypted attachments.

A device creates an upload with the kind (``media``, ``document``) and ciphertext size, appends
the bytes in one or more requests at the offset the relay recorded, and the blob is complete
when every byte has reached the disk. Anyone authenticated may download a complete blob by its
id (the id is the capability, the bytes are ciphertext); only the uploader appends to or
deletes it.

Limits: a size per kind; per device, the bytes it holds (complete blobs plus the declared size
of unfinished uploads), its unfinished uploads and its creations per minute, with a business's
devices allowed far more than a customer's. Lifetime: an unfinished upload expires
``attachments.upload_ttl_s`` after creation, a complete blob ``attachments.ttl_s`` after
completion; the sweeper deletes expired files and rows, at start-up and periodically.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.logging import get_logger
from tresen.core.ratelimit import TokenBuckets
from tresen.core.settings import AttachmentLimits
from tresen.relay.accounts.service import Principal
from tresen.relay.attachments import repo
from tresen.relay.attachments.repo import AttachmentRow
from tresen.relay.attachments.storage import BlobReader, BlobStorage, BlobWriter

__all__ = [
    "AppendResult",
    "AttachmentKind",
    "AttachmentService",
    "BodyBroken",
    "Download",
    "UploadState",
    "log_id",
    "new_attachment_id",
]

log = get_logger("tresen.relay.attachments")

# While one body streams in, its bytes are made durable and recorded this often, so a relay
# that dies mid-upload loses at most this much of it.
CHECKPOINT_BYTES = 8 * 1024 * 1024
SWEEP_BATCH = 500


class AttachmentKind(StrEnum):
    MEDIA = "media"
    DOCUMENT = "document"


class BodyBroken(Exception):
    """The request body stopped arriving (the connection broke or went quiet): what reached
    the disk is kept."""


@dataclass(frozen=True, slots=True)
class UploadState:
    id: str
    size: int
    offset: int
    complete: bool
    upload_expires_ms: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    offset: int
    complete: bool


@dataclass(frozen=True, slots=True)
class Download:
    """A complete blob's bytes ``start`` up to (excluding) ``end``; ``size`` is the whole."""

    size: int
    start: int
    end: int
    chunks: BlobReader


def new_attachment_id() -> str:
    """43 characters of base64url: 32 random bytes, so the id says nothing about the blob."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def log_id(attachment_id: str) -> str:
    """What logs name an attachment by: enough to follow one upload, not the id itself, which
    is the capability to download the blob."""
    return attachment_id[:8]


def _not_found(attachment_id: str) -> TresenError:
    return TresenError(ErrorCode.ATTACHMENT_NOT_FOUND, "no such attachment", id=attachment_id)


def _state(row: AttachmentRow) -> UploadState:
    return UploadState(
        id=row.id,
        size=row.size,
        offset=row.received,
        complete=row.complete,
        upload_expires_ms=row.expires_ms,
    )


class AttachmentService:
    def __init__(
        self, db: Database, clock: Clock, limits: AttachmentLimits, storage: BlobStorage
    ) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        self.storage = storage
        self._customer_rate = TokenBuckets(
            clock, limits.creations_per_minute / 60, limits.creations_per_minute
        )
        self._business_rate = TokenBuckets(
            clock, limits.business_creations_per_minute / 60, limits.business_creations_per_minute
        )
        # One body at a time per upload: a client resuming after a broken connection waits
        # until the relay has recorded what the broken one delivered.
        self._appending: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._sweeper: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the blob storage (which raises when it cannot be used), then sweep now and
        every ``attachments.sweep_interval_s`` until :meth:`close`."""
        if self._sweeper is None:
            await self.storage.start()
            self._sweeper = asyncio.create_task(self._sweep_periodically())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.storage.close()

    async def _sweep_periodically(self) -> None:
        while True:
            try:
                await self.sweep_expired()
            except Exception:
                log.exception("sweeping expired attachments failed")
            await asyncio.sleep(self.limits.sweep_interval_s)

    # --- uploading ---------------------------------------------------------------------------

    async def create(self, principal: Principal, kind: AttachmentKind, size: int) -> UploadState:
        """A new, empty upload of ``size`` ciphertext bytes.

        Raises ATTACHMENT_TOO_LARGE over the kind's limit, REQUEST_RATE_LIMITED when the
        device creates too fast, ATTACHMENT_QUOTA_EXCEEDED when it would hold too much or
        has too many unfinished uploads.
        """
        limit = (
            self.limits.max_media_bytes
            if kind is AttachmentKind.MEDIA
            else self.limits.max_document_bytes
        )
        if size > limit:
            raise TresenError(
                ErrorCode.ATTACHMENT_TOO_LARGE,
                f"a {kind.value} attachment may have at most {limit} bytes",
                max_bytes=limit,
            )
        now = self.clock.now_ms()
        attachment_id = new_attachment_id()
        expires = now + self.limits.upload_ttl_s * 1000
        async with self.db.write() as conn:
            business = await repo.account_kind(conn, principal.account_id) == "business"
            rate = self._business_rate if business else self._customer_rate
            wait_ms = rate.take(principal.device_pk)
            if wait_ms:
                raise TresenError(
                    ErrorCode.REQUEST_RATE_LIMITED,
                    "this device creates attachments too fast",
                    retry_after_ms=wait_ms,
                )
            await repo.lock_device(conn, principal.device_pk)
            held = await repo.holdings(conn, principal.device_pk, now)
            quota = self.limits.business_quota_bytes if business else self.limits.quota_bytes
            unfinished = (
                self.limits.business_max_unfinished if business else self.limits.max_unfinished
            )
            if held.bytes + size > quota:
                raise TresenError(
                    ErrorCode.ATTACHMENT_QUOTA_EXCEEDED,
                    "this device holds too many attachment bytes; delete some or wait until "
                    "they expire",
                    quota_bytes=quota,
                    held_bytes=held.bytes,
                )
            if held.unfinished >= unfinished:
                raise TresenError(
                    ErrorCode.ATTACHMENT_QUOTA_EXCEEDED,
                    "this device has too many unfinished uploads; finish or delete some",
                    max_unfinished=unfinished,
                )
            await repo.insert_attachment(
                conn,
                attachment_id=attachment_id,
                device_pk=principal.device_pk,
                account_id=principal.account_id,
                kind=kind.value,
                size=size,
                now_ms=now,
                expires_ms=expires,
            )
        # Debug: a business sends thousands a minute.
        log.debug(
            "attachment created",
            attachment=log_id(attachment_id),
            account_id=principal.account_id,
            device_id=principal.device_id,
            kind=kind.value,
            size=size,
        )
        return UploadState(
            id=attachment_id, size=size, offset=0, complete=False, upload_expires_ms=expires
        )

    async def _own(self, principal: Principal, attachment_id: str) -> AttachmentRow:
        """The caller's own attachment that has not expired; else ATTACHMENT_NOT_FOUND (an
        attachment of another device is not found either: its id says nothing)."""
        async with self.db.read() as conn:
            row = await repo.by_id(conn, attachment_id)
        if (
            row is None
            or row.device_pk != principal.device_pk
            or row.expires_ms <= self.clock.now_ms()
        ):
            raise _not_found(attachment_id)
        return row

    async def upload_state(self, principal: Principal, attachment_id: str) -> UploadState:
        """Where the caller's upload stands, to resume it after a lost connection."""
        return _state(await self._own(principal, attachment_id))

    async def append(
        self,
        principal: Principal,
        attachment_id: str,
        offset: int,
        body: AsyncIterator[bytes],
        *,
        declared_length: int | None = None,
    ) -> AppendResult:
        """Append ``body`` at ``offset`` (which must be the recorded offset) to the caller's
        unfinished upload, streaming it to storage. Bytes are durable and recorded when this
        returns, also when ``body`` raises :class:`BodyBroken`; a body longer than what is
        left is cut at the declared size and refused (ATTACHMENT_TOO_LARGE)."""
        lock = self._appending.get(attachment_id)
        if lock is None:
            lock = self._appending[attachment_id] = asyncio.Lock()
        async with lock:
            row = await self._own(principal, attachment_id)
            if row.complete:
                raise TresenError(
                    ErrorCode.ATTACHMENT_COMPLETE,
                    "this attachment is complete",
                    id=attachment_id,
                    offset=row.received,
                )
            if offset != row.received:
                raise TresenError(
                    ErrorCode.ATTACHMENT_OFFSET_MISMATCH,
                    f"the upload is at offset {row.received}; continue from there",
                    offset=row.received,
                )
            room = row.size - row.received
            if declared_length is not None and declared_length > room:
                raise TresenError(
                    ErrorCode.ATTACHMENT_TOO_LARGE,
                    f"{room} bytes are left of this upload",
                    offset=row.received,
                    left_bytes=room,
                )
            try:
                writer = await self.storage.open_append(attachment_id, row.received)
            except FileNotFoundError:
                raise _not_found(attachment_id) from None
            try:
                recorded, too_long = await self._stream(row, writer, body)
            finally:
                await writer.close()
            complete = recorded == row.size
            if complete:
                await self._complete(row)
            if too_long:
                raise TresenError(
                    ErrorCode.ATTACHMENT_TOO_LARGE,
                    f"the body is longer than the {room} bytes left; the upload took them",
                    offset=recorded,
                    complete=complete,
                )
            return AppendResult(offset=recorded, complete=complete)

    async def _stream(
        self, row: AttachmentRow, writer: BlobWriter, body: AsyncIterator[bytes]
    ) -> tuple[int, bool]:
        """Write ``body`` up to the upload's size; returns the durable offset and whether the
        body went on beyond the size. The offset is recorded unless it is the size: then the
        blob is finalised in storage and :meth:`_complete` records it, in one write."""
        recorded = row.received
        too_long = False
        try:
            async for chunk in body:
                room = row.size - writer.offset
                if len(chunk) > room:
                    await writer.write(chunk[:room])
                    too_long = True
                    break
                await writer.write(chunk)
                if writer.offset - recorded >= CHECKPOINT_BYTES:
                    recorded = await self._record(row, writer, recorded)
        except BodyBroken:
            log.info("attachment body broke off", attachment=log_id(row.id), offset=writer.offset)
        if writer.offset == row.size:
            # One step from written to complete: a blob that fits one part of an S3 bucket
            # takes one request.
            await writer.finalise()
            return row.size, too_long
        return await self._record(row, writer, recorded), too_long

    async def _record(self, row: AttachmentRow, writer: BlobWriter, previous: int) -> int:
        durable = await writer.flush()
        if durable == previous:
            return previous
        async with self.db.write() as conn:
            recorded = await repo.set_received(
                conn, row.id, previous=previous, received=durable, now_ms=self.clock.now_ms()
            )
        if not recorded:
            # Deleted or expired meanwhile: the sweeper or the uploader removes the file.
            raise _not_found(row.id)
        return durable

    async def _complete(self, row: AttachmentRow) -> None:
        """Record the upload, finalised in storage, as a complete blob (a relay that died
        between the two reopens the stored blob when the client resumes), in one write."""
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            done = await repo.set_complete(
                conn,
                row.id,
                size=row.size,
                now_ms=now,
                expires_ms=now + self.limits.ttl_s * 1000,
            )
        if not done:
            raise _not_found(row.id)
        log.debug("attachment complete", attachment=log_id(row.id), size=row.size)

    # --- downloading and deleting ------------------------------------------------------------

    async def download(
        self, blob: AttachmentRow, start: int = 0, end: int | None = None
    ) -> Download:
        """The bytes of a blob found by :meth:`blob`, for any authenticated device; ``end``
        is clipped to the size. Raises ATTACHMENT_NOT_FOUND when it was deleted meanwhile."""
        stop = blob.size if end is None else min(end, blob.size)
        try:
            chunks = await self.storage.open_read(blob.id, start, stop)
        except FileNotFoundError:
            raise _not_found(blob.id) from None
        return Download(size=blob.size, start=start, end=stop, chunks=chunks)

    async def blob(self, attachment_id: str) -> AttachmentRow:
        """A complete blob that has not expired, else ATTACHMENT_NOT_FOUND."""
        async with self.db.read() as conn:
            row = await repo.by_id(conn, attachment_id)
        if row is None or not row.complete or row.expires_ms <= self.clock.now_ms():
            raise _not_found(attachment_id)
        return row

    async def delete(self, principal: Principal, attachment_id: str) -> None:
        """Delete the caller's attachment, complete or not; its bytes no longer count."""
        await self._own(principal, attachment_id)
        await self.storage.delete(attachment_id)
        async with self.db.write() as conn:
            await repo.delete_rows(conn, [attachment_id])
        log.info("attachment deleted", attachment=log_id(attachment_id))

    # --- sweeping ----------------------------------------------------------------------------

    async def sweep_expired(self) -> int:
        """Delete every expired blob (file, then row) on the relay's clock; returns how many."""
        swept = 0
        while True:
            now = self.clock.now_ms()
            async with self.db.read() as conn:
                ids = await repo.expired(conn, now, SWEEP_BATCH)
            for attachment_id in ids:
                await self.storage.delete(attachment_id)
            async with self.db.write() as conn:
                await repo.delete_rows(conn, ids, expired_at_ms=now)
            swept += len(ids)
            if len(ids) < SWEEP_BATCH:
                if swept:
                    log.info("attachments swept", count=swept)
                return swept

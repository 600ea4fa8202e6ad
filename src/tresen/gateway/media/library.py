"""The business's media: files uploaded through the Cloud API or received from customers,
kept in plaintext under the gateway's data folder (the business's own trust domain) with a
row each, until they expire (30 days) or the business deletes them.

Sending one encrypts it afresh for every message (a new key, a new relay blob) through the
client SDK; the blobs made from a media are remembered, so deleting the media frees them at
the relay at once. A customer's attachment is downloaded from the relay, verified, decrypted
and kept as a media id the integration downloads through a short-lived signed URL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import mimetypes
import os
import secrets
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from tresen.client.api import RelayApi, RelayError
from tresen.client.attachments import Attachments, AttachmentUnavailable
from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.crypto.attachments import AttachmentError
from tresen.gateway.media.kinds import (
    KIND_TYPES,
    KindLimits,
    is_animated_webp,
    kind_of_mime,
    plain_mime,
)
from tresen.gateway.media.links import LinkFetcher, LinkRefused
from tresen.gateway.media.store import MediaRecord, MediaStore
from tresen.gateway.settings import MediaSettings
from tresen.wire.e2e import Media, MediaKind

__all__ = [
    "MediaLibrary",
    "MediaRefused",
    "OutgoingMedia",
    "Prepared",
    "new_media_id",
]

log = get_logger("tresen.gateway.media")

MEDIA_ID_DIGITS = 16
"""Longer than any phone_number_id (15 digits at most) or waba_id (15), so ``GET /{id}``
never confuses them."""
MIN_TTL_MINUTES = 1
RECORDS_KEPT = 10_000
"""Media records the library keeps in memory (a few hundred bytes each)."""
_COPY_BYTES = 1 << 20
_SIGNATURE_CHARS = 32


class MediaRefused(Exception):
    """A media operation refused, with the Cloud API ``code`` an integration sees."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(f"({code}) {details}")
        self.code = code
        self.details = details


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingMedia:
    """A media message's file: an uploaded ``media_id`` or a ``link`` to fetch."""

    kind: MediaKind
    media_id: str | None = None
    link: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool | None = None
    """``None``: a voice note when the file is audio/ogg (Opus), as WhatsApp's are."""
    param: str = ""
    """How the request named this file (``image``, a template's header), for errors."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A file encrypted and uploaded for one message: its ``media`` payload, and the media
    id it was made from (``None`` for a link)."""

    payload: Media
    media_id: str | None


def new_media_id() -> str:
    return str(10 ** (MEDIA_ID_DIGITS - 1) + secrets.randbelow(9 * 10 ** (MEDIA_ID_DIGITS - 1)))


def _copy_hashing(source: BinaryIO, target: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    source.seek(0)
    with target.open("wb") as out:
        while block := source.read(_COPY_BYTES):
            digest.update(block)
            out.write(block)
            size += len(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as reader:
        while block := reader.read(_COPY_BYTES):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class MediaLibrary:
    """Upload, describe, download, delete, send and receive the business's media."""

    def __init__(
        self,
        store: MediaStore,
        clock: Clock,
        settings: MediaSettings,
        folder: Path,
        *,
        attachments: Attachments,
        relay: RelayApi,
        fetcher: LinkFetcher,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.folder = folder
        self.attachments = attachments
        self.relay = relay
        self.fetcher = fetcher
        self.limits = KindLimits(attachments.limits)
        self._secret = secrets.token_bytes(32)
        self._sweeper: asyncio.Task[None] | None = None
        # Records never change once made: the ones last used are kept, so that a campaign
        # sending thousands of files does not read each record from the database again.
        self._records: OrderedDict[str, MediaRecord] = OrderedDict()

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("media not swept", error=type(exc).__name__)
            await asyncio.sleep(self.settings.sweep_s)

    async def sweep(self) -> int:
        """Delete every media whose lifetime ended (its file, its row, its relay blobs)."""
        count = 0
        while expired := await self.store.expired(self.clock.now_ms()):
            for media_id in expired:
                await self._remove(media_id)
                count += 1
        if count:
            log.info("media expired", count=count)
        return count

    # --- the store ---------------------------------------------------------------------------

    @property
    def max_upload_bytes(self) -> int:
        """The largest file any media type takes (a request body may add its envelope)."""
        return self.limits.largest()

    def path(self, media_id: str) -> Path:
        return self.folder / media_id[:3] / media_id

    def _incoming(self) -> Path:
        incoming = self.folder / ".incoming"
        incoming.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=incoming)
        os.close(fd)
        return Path(name)

    def _lifetime_ms(self, ttl_minutes: int | None) -> int:
        most = self.settings.lifetime_s * 1000
        if ttl_minutes is None:
            return most
        if not MIN_TTL_MINUTES <= ttl_minutes <= most // 60_000:
            raise MediaRefused(
                100,
                f"Param ttl_minutes must be {MIN_TTL_MINUTES} to {most // 60_000} "
                "(media are kept at most that long)",
            )
        return ttl_minutes * 60_000

    def check_file(self, kind: MediaKind, mime_type: str, size: int, head: bytes) -> None:
        """Refuse (131053) a file that a ``kind`` message cannot carry: type or size."""
        if not self.limits.accepts(kind, mime_type):
            accepted = ", ".join(sorted(KIND_TYPES[kind]))
            raise MediaRefused(
                131053,
                f"Media upload error: a {kind} must be one of {accepted}; "
                f"this file is {plain_mime(mime_type)[:80]}",
            )
        limit = self.limits.limit(kind, animated=is_animated_webp(head))
        if size > limit:
            raise MediaRefused(
                131053, f"Media upload error: a {kind} may be {limit} bytes; this file is {size}"
            )
        if size == 0:
            raise MediaRefused(131053, "Media upload error: the file is empty")

    async def save_upload(
        self, file: BinaryIO, mime_type: str, filename: str | None, ttl_minutes: int | None
    ) -> MediaRecord:
        """Keep an uploaded file (read from ``file``, any position) as a new media id."""
        kind = kind_of_mime(mime_type)
        if kind is None:
            raise MediaRefused(
                131053,
                f"Media upload error: {plain_mime(mime_type)[:80]} is not a type the Cloud API "
                "accepts (images: image/jpeg, image/png; stickers: image/webp; audio, video "
                "and documents as Meta lists them)",
            )
        lifetime_ms = self._lifetime_ms(ttl_minutes)
        size = file.seek(0, os.SEEK_END)
        file.seek(0)
        head = file.read(32)
        self.check_file(kind, mime_type, size, head)
        media_id = new_media_id()
        target = self.path(media_id)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        sha256, copied = await asyncio.to_thread(_copy_hashing, file, target)
        now = self.clock.now_ms()
        record = MediaRecord(
            id=media_id,
            origin="upload",
            mime_type=plain_mime(mime_type),
            sha256=sha256,
            file_size=copied,
            filename=filename[:255] if filename else None,
            created_ms=now,
            expires_ms=now + lifetime_ms,
        )
        try:
            await self.store.add(record)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        self._remember(record)
        return record

    async def save_received(
        self, path: Path, *, mime_type: str, filename: str | None
    ) -> MediaRecord:
        """Move a customer's decrypted file into the store as a new media id."""
        media_id = new_media_id()
        target = self.path(media_id)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.move, path, target)
        sha256, size = await asyncio.to_thread(_hash_file, target)
        now = self.clock.now_ms()
        record = MediaRecord(
            id=media_id,
            origin="inbound",
            mime_type=mime_type[:255],
            sha256=sha256,
            file_size=size,
            filename=filename,
            created_ms=now,
            expires_ms=now + self.settings.lifetime_s * 1000,
        )
        try:
            await self.store.add(record)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        self._remember(record)
        return record

    async def get(self, media_id: str) -> MediaRecord | None:
        """The media ``media_id`` while it lives (``None``: unknown, deleted or expired)."""
        record = self._records.get(media_id)
        if record is None:
            record = await self.store.get(media_id)
            if record is not None:
                self._remember(record)
        else:
            self._records.move_to_end(media_id)
        if record is None or record.expires_ms <= self.clock.now_ms():
            return None
        return record

    def _remember(self, record: MediaRecord) -> None:
        self._records[record.id] = record
        if len(self._records) > RECORDS_KEPT:
            self._records.popitem(last=False)

    async def delete(self, media_id: str) -> bool:
        """Delete a living media (``False``: there is none), with the relay blobs made from it."""
        if await self.get(media_id) is None:
            return False
        await self._remove(media_id)
        return True

    async def _remove(self, media_id: str) -> None:
        self._records.pop(media_id, None)
        blob_ids = await self.store.remove(media_id)
        self.path(media_id).unlink(missing_ok=True)
        for blob_id in blob_ids:
            await self.release_blob(blob_id)

    async def release_blob(self, blob_id: str) -> None:
        """Delete a relay blob of this gateway (gone already, or the relay away: it expires)."""
        try:
            await self.relay.delete_attachment(blob_id)
        except (RelayError, httpx.HTTPError) as exc:
            log.info("relay blob not deleted", blob=blob_id[:8], error=type(exc).__name__)

    # --- download URLs -----------------------------------------------------------------------

    def _signature(self, media_id: str, expires_ms: int) -> str:
        mac = hmac.new(self._secret, f"{media_id}.{expires_ms}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode()[:_SIGNATURE_CHARS]

    def download_token(self, media_id: str) -> str:
        """A token that names ``media_id`` for ``download_url_s`` (the URL's last segment)."""
        expires_ms = self.clock.now_ms() + self.settings.download_url_s * 1000
        return f"{media_id}.{expires_ms}.{self._signature(media_id, expires_ms)}"

    async def by_token(self, token: str) -> MediaRecord | None:
        """The media a current, untampered token names (``None`` otherwise)."""
        media_id, _, rest = token.partition(".")
        expires, _, signature = rest.partition(".")
        if not media_id.isdigit() or not expires.isdigit() or len(expires) > 15:
            return None
        if not hmac.compare_digest(signature, self._signature(media_id, int(expires))):
            return None
        if int(expires) <= self.clock.now_ms():
            return None
        return await self.get(media_id)

    # --- sending -----------------------------------------------------------------------------

    async def prepare(self, outgoing: OutgoingMedia, *, reply_to: str | None = None) -> Prepared:
        """Encrypt and upload the file of ``outgoing`` for one message (a fresh key and blob).

        Raises :class:`MediaRefused` for an unknown media id, a link that cannot or may not be
        fetched, or a file the message type cannot carry; ``RelayError`` for the relay's
        refusals."""
        if outgoing.media_id is not None:
            record = await self.get(outgoing.media_id)
            if record is None:
                raise MediaRefused(
                    131009,
                    f"Param {outgoing.param}['id']: no media {outgoing.media_id[:40]} on this "
                    "number (unknown, deleted or expired)",
                )
            path = self.path(record.id)
            small = record.file_size <= self.attachments.inline_bytes
            try:
                with path.open("rb") as reader:
                    # A small file is read once, whole: it travels inside the message.
                    data = reader.read() if small else None
                    head = data[:32] if data is not None else reader.read(32)
            except FileNotFoundError:
                self._records.pop(record.id, None)
                raise MediaRefused(
                    131009, f"Param {outgoing.param}['id']: media {record.id} was deleted"
                ) from None
            self.check_file(outgoing.kind, record.mime_type, record.file_size, head)
            payload = await self._seal(
                outgoing,
                path if data is None else data,
                record.mime_type,
                record.filename,
                reply_to=reply_to,
            )
            return Prepared(payload, record.id)
        assert outgoing.link is not None
        temporary = self._incoming()
        try:
            limit = self.limits.limit(outgoing.kind)
            with temporary.open("wb") as sink:
                try:
                    fetched = await self.fetcher.fetch(outgoing.link, sink, limit=limit)
                except LinkRefused as exc:
                    raise MediaRefused(131053, f"Param {outgoing.param}['link']: {exc}") from None
            mime_type = fetched.mime_type
            if mime_type is None or kind_of_mime(mime_type) is None:
                guessed = mimetypes.guess_type(fetched.filename or "", strict=False)[0]
                mime_type = guessed or mime_type or "application/octet-stream"
            with temporary.open("rb") as reader:
                head = reader.read(32)
            self.check_file(outgoing.kind, mime_type, fetched.size, head)
            payload = await self._seal(
                outgoing, temporary, plain_mime(mime_type), fetched.filename, reply_to=reply_to
            )
            return Prepared(payload, None)
        finally:
            temporary.unlink(missing_ok=True)

    async def _seal(
        self,
        outgoing: OutgoingMedia,
        source: Path | bytes,
        mime_type: str,
        known_name: str | None,
        *,
        reply_to: str | None,
    ) -> Media:
        kind = outgoing.kind
        voice = outgoing.voice
        if voice is None:
            voice = kind is MediaKind.AUDIO and plain_mime(mime_type) == "audio/ogg"
        extension = mimetypes.guess_extension(plain_mime(mime_type)) or ".bin"
        filename = outgoing.filename or known_name or f"{kind}{extension}"
        return await self.attachments.prepare(
            source,
            filename=filename,
            mime_type=mime_type,
            kind=kind,
            caption=outgoing.caption,
            reply_to=reply_to,
            voice=voice and kind is MediaKind.AUDIO,
        )

    async def sent(self, prepared: Prepared) -> None:
        """Remember the blob of a sent message, to free it with its media."""
        blob_id = prepared.payload.blob_id
        if prepared.media_id is not None and blob_id is not None:
            await self.store.add_blob(prepared.media_id, blob_id, self.clock.now_ms())

    # --- receiving ---------------------------------------------------------------------------

    async def receive(self, message_id: str, payload: Media) -> MediaRecord:
        """Download, verify and decrypt a customer's attachment and keep it as a media id.

        Raises :class:`MediaRefused` (131052) with the reason when it cannot be had."""
        try:
            path = await self.attachments.download(message_id, payload)
        except AttachmentError as exc:
            raise MediaRefused(
                131052,
                f"The attachment was not the file the customer sent and was refused "
                f"({exc.code}): {exc}",
            ) from None
        except AttachmentUnavailable:
            raise MediaRefused(
                131052, "The attachment is no longer on the relay (attachment_not_found)"
            ) from None
        except httpx.TransportError:
            raise  # the relay is away: the message comes again once it is back
        except (RelayError, httpx.HTTPError, OSError) as exc:
            raise MediaRefused(
                131052, f"The attachment could not be downloaded from the relay: {exc}"
            ) from None
        return await self.save_received(
            path, mime_type=payload.mime_type, filename=payload.filename
        )

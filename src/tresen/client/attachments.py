"""Attachments: encrypt a file, upload the blob with resume (or, when small, carry it inside
the message), describe it in a ``media`` payload; download, verify, decrypt and keep a
received one.

The relay only ever sees the encrypted blob (``crypto/attachments.py``). The file's name,
type, caption and thumbnail travel inside the end-to-end message. Files live in the
``attachments/`` folder beside the client's store, under names made safe from the sender's.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from tresen.client.api import RelayApi, RelayError
from tresen.client.store import LocalStore
from tresen.client.thumbnails import ImageFacts, image_facts
from tresen.core.errors import ErrorCode
from tresen.core.logging import get_logger
from tresen.crypto.attachments import (
    AttachmentTooLarge,
    EncryptedAttachment,
    blob_size,
    decrypt_bytes,
    decrypt_file,
    encrypt_bytes,
    encrypt_file,
)
from tresen.wire.e2e import (
    MAX_INLINE_BLOB_BYTES,
    Media,
    MediaKind,
    ReplyContext,
    encode_payload,
)

__all__ = [
    "DEFAULT_PIECE_BYTES",
    "AttachmentLimits",
    "AttachmentUnavailable",
    "Attachments",
    "kind_for",
    "safe_filename",
]

log = get_logger("tresen.client")

DEFAULT_PIECE_BYTES = 4 * 1024 * 1024
"""How much of a blob one upload request carries: small enough to resend after a lost
connection, large enough that requests do not dominate."""

_MAX_STALLED_TRIES = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentLimits:
    """Largest blobs the relay takes, by its kind (defaults as the relay's, like WhatsApp's)."""

    media_bytes: int = 16 * 1024 * 1024
    document_bytes: int = 100 * 1024 * 1024

    def blob_limit(self, kind: MediaKind) -> int:
        return self.document_bytes if kind is MediaKind.DOCUMENT else self.media_bytes


class AttachmentUnavailable(Exception):
    """The relay no longer has the blob (expired, deleted) or could not hand it over."""

    code = "attachment_not_found"


def kind_for(mime_type: str) -> MediaKind:
    """The kind a file of ``mime_type`` is sent as, unless the caller says otherwise."""
    major = mime_type.split("/", 1)[0].lower()
    return {
        "image": MediaKind.IMAGE,
        "audio": MediaKind.AUDIO,
        "video": MediaKind.VIDEO,
    }.get(major, MediaKind.DOCUMENT)


_UNSAFE = re.compile(r"[^\w.\- ()+,@=]+")


def safe_filename(name: str | None, fallback: str) -> str:
    """``name`` as a plain file name in one folder: no path, no separators, no leading dot,
    no control characters, at most 120 characters (the extension kept); else ``fallback``."""
    text = unicodedata.normalize("NFC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = _UNSAFE.sub("_", text).strip(" ._")
    if not text:
        return fallback
    stem, dot, extension = text.rpartition(".")
    if dot and 0 < len(extension) <= 10 and stem:
        return f"{stem[: 120 - len(extension) - 1]}.{extension}"
    return text[:120]


@dataclass(frozen=True, slots=True)
class _Described:
    kind: MediaKind
    mime_type: str
    filename: str | None
    image: ImageFacts | None


class Attachments:
    """Uploads and downloads of one client's attachments."""

    def __init__(
        self,
        api: RelayApi,
        store: LocalStore,
        folder: Path,
        *,
        limits: AttachmentLimits | None = None,
        piece_bytes: int = DEFAULT_PIECE_BYTES,
        inline_bytes: int = MAX_INLINE_BLOB_BYTES,
    ) -> None:
        self.api = api
        self.store = store
        self.folder = folder
        self.limits = limits or AttachmentLimits()
        self.piece_bytes = piece_bytes
        self.inline_bytes = min(inline_bytes, MAX_INLINE_BLOB_BYTES)

    # --- sending ---------------------------------------------------------------------------

    async def prepare(
        self,
        source: Path | bytes,
        *,
        filename: str | None = None,
        mime_type: str | None = None,
        kind: MediaKind | None = None,
        caption: str | None = None,
        reply_to: str | None = None,
        voice: bool = False,
        duration_ms: int | None = None,
    ) -> Media:
        """Encrypt ``source`` (a file or its bytes) with a fresh key, upload the blob and
        return the ``media`` payload that describes it. A blob that, with the thumbnail,
        fits ``inline_bytes`` is not uploaded: it travels inside the payload.

        Raises :class:`AttachmentTooLarge` before uploading when the blob would exceed the
        kind's limit, ``InvalidPayload`` for fields that do not fit the kind (checked before
        uploading too), ``RelayError`` for the relay's refusals.
        """
        plain_size = len(source) if isinstance(source, bytes) else os.stat(source).st_size
        if plain_size <= self.inline_bytes:  # a few kilobytes: no need to leave the event loop
            described = _describe(source, filename, mime_type, kind, voice)
        else:
            described = await asyncio.to_thread(_describe, source, filename, mime_type, kind, voice)
        limit = self.limits.blob_limit(described.kind)
        if blob_size(plain_size) > limit:
            raise AttachmentTooLarge(
                f"a {described.kind} may be {limit} bytes once encrypted; this file would be "
                f"{blob_size(plain_size)}"
            )
        image = described.image
        visual = described.kind in (MediaKind.IMAGE, MediaKind.STICKER)
        draft = Media(
            kind=described.kind,
            blob_id="pending",
            key=bytes(32),
            sha256=bytes(32),
            size=1,
            plain_size=plain_size,
            mime_type=described.mime_type,
            filename=described.filename,
            caption=caption or None,
            width=image.width if image and visual else None,
            height=image.height if image and visual else None,
            thumbnail=image.thumbnail if image and visual else None,
            duration_ms=duration_ms,
            voice=voice,
            context=None if reply_to is None else ReplyContext(message_id=reply_to),
        )
        # Checked as a recipient will check it, so a field that does not fit (a caption too
        # long, dimensions on a document) fails before anything is uploaded.
        encode_payload(draft)
        thumbnail = len(draft.thumbnail or b"")
        if blob_size(plain_size) + thumbnail <= self.inline_bytes:
            data = source if isinstance(source, bytes) else _small_file(source)
            inline, sealed = encrypt_bytes(data)
            if sealed.size + thumbnail <= self.inline_bytes:  # the file did not grow meanwhile
                return _filled(draft, sealed, blob=inline)
        blob = _outgoing_blob(self.folder)
        try:
            # Sealing a large file takes a while: off the event loop, so the chat stays live.
            sealed = await asyncio.to_thread(_seal, source, blob, plain_size)
            blob_id = await self.upload(blob, sealed, described.kind)
        finally:
            os.unlink(blob)
        return _filled(draft, sealed, blob_id=blob_id)

    async def upload(self, blob: Path, sealed: EncryptedAttachment, kind: MediaKind) -> str:
        """Upload ``blob`` in pieces; after a lost connection, ask the relay how much arrived
        and continue from there. Returns the relay's id of the blob."""
        relay_kind = "document" if kind is MediaKind.DOCUMENT else "media"
        created = await self.api.create_attachment(relay_kind, sealed.size)
        blob_id = str(created["id"])
        offset = int(created.get("offset", 0))
        stalled = 0
        with blob.open("rb") as reader:
            while offset < sealed.size:
                reader.seek(offset)
                piece = reader.read(self.piece_bytes)
                try:
                    answer = await self.api.append_attachment(blob_id, offset, piece)
                except (httpx.TransportError, RelayError) as exc:
                    stalled += 1
                    if stalled > _MAX_STALLED_TRIES or not _resumable(exc):
                        raise
                    log.info("attachment_upload_resumed", reason=type(exc).__name__)
                    offset = await self._offset(blob_id, exc)
                    continue
                stalled = 0
                offset = int(answer["offset"])
        return blob_id

    async def _offset(self, blob_id: str, exc: Exception) -> int:
        if isinstance(exc, RelayError) and exc.code == ErrorCode.ATTACHMENT_COMPLETE:
            state = await self.api.attachment_upload(blob_id)
            return int(state["size"])
        if isinstance(exc, RelayError) and "offset" in exc.details:
            return int(exc.details["offset"])
        state = await self.api.attachment_upload(blob_id)
        return int(state["size"]) if state.get("complete") else int(state["offset"])

    # --- receiving -------------------------------------------------------------------------

    def saved(self, message_id: str) -> Path | None:
        """Where the file of ``message_id`` was kept, if it was downloaded and is still there."""
        path = self.store.attachment_path(message_id)
        return path if path is not None and path.is_file() else None

    async def download(self, message_id: str, media: Media) -> Path:
        """Fetch the blob of ``media`` (resuming where a broken download stopped), check its
        digest, decrypt it into the attachments folder and remember where it is.

        Raises ``AttachmentDigestMismatch`` or ``AttachmentCorrupt`` when the blob is not the
        one the sender described (nothing is kept), :class:`AttachmentUnavailable` when the
        relay no longer has it.
        """
        known = self.saved(message_id)
        if known is not None:
            return known
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        if media.blob is not None:
            target = _target(self.folder, message_id, media)
            await asyncio.to_thread(_open_inline, media, media.blob, target)
            self.store.put_attachment_path(message_id, target)
            return target
        assert media.blob_id is not None  # a payload names its file by one of the two
        # Named after the message too: two messages may name the same blob.
        partial = self.folder / f".{_plain(message_id)}-{media.blob_id}.part"
        try:
            await self._fetch(media, partial)
            target = _target(self.folder, message_id, media)
            await asyncio.to_thread(
                decrypt_file, partial, target, key=media.key, sha256=media.sha256
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
        self.store.put_attachment_path(message_id, target)
        return target

    async def _fetch(self, media: Media, partial: Path) -> None:
        assert media.blob_id is not None
        blob_id = media.blob_id
        stalled = 0
        with partial.open("ab") as writer:
            while True:
                start = writer.tell()
                if start >= media.size:
                    return  # a longer blob than described fails the digest check anyway

                def sink(block: bytes, limit: int = media.size) -> None:
                    room = limit - writer.tell()
                    if room > 0:
                        writer.write(block[:room])

                try:
                    await self.api.download_attachment(blob_id, start, sink)
                except httpx.TransportError:
                    writer.flush()
                    if writer.tell() == start:
                        stalled += 1
                        if stalled > _MAX_STALLED_TRIES:
                            raise
                    continue
                except RelayError as exc:
                    if exc.code == ErrorCode.ATTACHMENT_NOT_FOUND:
                        raise AttachmentUnavailable("the relay no longer has this file") from exc
                    raise
                writer.flush()
                return


def _target(folder: Path, message_id: str, media: Media) -> Path:
    extension = mimetypes.guess_extension(media.mime_type) or ".bin"
    fallback = f"{media.kind}{extension}"
    name = safe_filename(media.filename, fallback)
    # The message id keeps two files of the same name apart; it is the relay's hex id or
    # our own local id, so it is a plain name too.
    prefix = _plain(message_id)
    target = folder / f"{prefix}-{name}"
    with contextlib.suppress(FileNotFoundError):
        target.unlink()  # an earlier copy the store no longer knows
    return target


def _small_file(path: Path) -> bytes:
    """The bytes of a file of at most ``MAX_INLINE_BLOB_BYTES`` (read on the event loop: a
    thread hop would cost more than the read)."""
    with path.open("rb") as reader:
        return reader.read(MAX_INLINE_BLOB_BYTES + 1)


def _open_inline(media: Media, blob: bytes, target: Path) -> None:
    """Check and decrypt an inline blob into ``target``, which appears only when complete."""
    plain = decrypt_bytes(blob, key=media.key, sha256=media.sha256)
    partial = target.with_name(f".{target.name}.part")
    try:
        with partial.open("wb") as writer:
            writer.write(plain)
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _plain(message_id: str) -> str:
    return re.sub(r"[^0-9A-Za-z-]", "", message_id)[:32] or "message"


def _outgoing_blob(folder: Path) -> Path:
    outgoing = folder / ".outgoing"
    outgoing.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=outgoing, suffix=".blob")
    os.close(fd)
    return Path(name)


def _seal(source: Path | bytes, blob: Path, plain_size: int) -> EncryptedAttachment:
    if isinstance(source, bytes):
        data, sealed = encrypt_bytes(source)
        blob.write_bytes(data)
        return sealed
    return encrypt_file(source, blob, max_plain_size=plain_size)


def _resumable(exc: Exception) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, RelayError) and exc.code in (
        ErrorCode.ATTACHMENT_OFFSET_MISMATCH,
        ErrorCode.ATTACHMENT_COMPLETE,
    )


def _describe(
    source: Path | bytes,
    filename: str | None,
    mime_type: str | None,
    kind: MediaKind | None,
    voice: bool,
) -> _Described:
    if filename is None and isinstance(source, Path):
        filename = source.name
    if filename is not None:
        filename = _shortened(filename) or None
    if mime_type is None and filename:
        mime_type = mimetypes.guess_type(filename, strict=False)[0]
    looks_visual = kind in (None, MediaKind.IMAGE, MediaKind.STICKER)
    maybe_image = mime_type is None or mime_type.lower().startswith("image/")
    image = image_facts(source) if looks_visual and maybe_image else None
    if mime_type is None and image is not None:
        mime_type = image.mime_type
    mime_type = mime_type or "application/octet-stream"
    chosen = kind or (MediaKind.AUDIO if voice else kind_for(mime_type))
    return _Described(kind=chosen, mime_type=mime_type, filename=filename, image=image)


def _shortened(filename: str) -> str:
    """At most 255 characters (the payload's limit), the extension kept."""
    if len(filename) <= 255:
        return filename
    stem, dot, extension = filename.rpartition(".")
    if dot and stem and len(extension) <= 10:
        return f"{stem[: 254 - len(extension)]}.{extension}"
    return filename[:255]


def _filled(
    draft: Media,
    sealed: EncryptedAttachment,
    *,
    blob_id: str | None = None,
    blob: bytes | None = None,
) -> Media:
    return msgspec.structs.replace(
        draft,
        blob_id=blob_id,
        blob=blob,
        key=sealed.key,
        sha256=sealed.sha256,
        size=sealed.size,
        plain_size=sealed.plain_size,
    )

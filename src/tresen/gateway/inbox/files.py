"""Files in the thread: pictures, documents, voice notes and videos shown where they were sent,
their bytes served to the team, and files an agent attaches in the composer.

Bytes are served only to a signed-in agent, only for a media message of the conversation the
URL names, and only while the media lives (30 days by default). What may render in the page
(pictures, audio, video of the Cloud API's types) is served inline under its own type; every
other file is an attachment, ``application/octet-stream`` unless it is one of the document
types, so no file a customer sends (SVG, HTML) ever runs as the inbox's page. The pages'
Content-Security-Policy keeps loading images and media from the inbox itself only.
"""

from __future__ import annotations

import asyncio
import io
import mimetypes
import warnings
from collections import OrderedDict
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, PlainTextResponse, Response
from PIL import Image, ImageOps
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from tresen.gateway.inbox import web
from tresen.gateway.inbox.attaching import MAX_CAPTION, FileRefused, human_size, mime_type_of
from tresen.gateway.inbox.conversations import Activity, ThreadMessage
from tresen.gateway.inbox.i18n import N_, Refused
from tresen.gateway.inbox.render import MEDIA_KINDS, Attached
from tresen.gateway.media.kinds import DOCUMENT_TYPES, KIND_TYPES, MB, plain_mime
from tresen.gateway.media.library import MediaLibrary
from tresen.gateway.media.store import MediaRecord
from tresen.wire.e2e import MediaKind

__all__ = ["ENVELOPE_BYTES", "Presented", "Previews", "files_for", "present", "router"]

router = APIRouter()

Wamid = Annotated[str, PathParam(pattern=r"^wamid\.[A-Za-z0-9_-]{22}$")]
ENVELOPE_BYTES = 64 * 1024
"""What the composer's form may hold beyond its file: boundaries, headers, the other fields."""
MAX_FIELD_BYTES = 8 * 1024
MAX_FIELDS = 8

PICTURE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
"""Pictures a browser shows and never runs (no SVG: it may hold script)."""
SHOWN_INLINE: dict[str, frozenset[str]] = {
    "image": PICTURE_TYPES,
    "sticker": PICTURE_TYPES,
    "audio": KIND_TYPES[MediaKind.AUDIO],
    "video": KIND_TYPES[MediaKind.VIDEO],
}
"""For each kind of message, the types the thread shows in place (others: a file card)."""
MEDIA_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Opened on its own, a file is a sandboxed document that may load nothing at all.
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
}


def library_of(request: Request) -> MediaLibrary:
    library: MediaLibrary = web.actions_of(request).gateway.media
    return library


def previews_of(request: Request) -> Previews:
    found: Previews = request.app.state.inbox_previews
    return found


# --- how a file shows in the thread ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Presented:
    """A media message's file as the thread shows it."""

    shows: str
    """``image``, ``sticker``, ``audio``, ``video``, ``file`` (a card with a download link),
    ``gone`` (no longer kept), ``link`` (sent by link: not kept here) or ``elsewhere`` (sent
    by another device of the business, which keeps it)."""
    url: str = ""
    preview_url: str = ""
    download_url: str = ""
    filename: str = ""
    size: str = ""
    label: str = ""
    """What kind of file, in a word (``PDF``, ``DOCX``, ``MP3``)."""
    link: str = ""


def _label(mime_type: str) -> str:
    extension = mimetypes.guess_extension(mime_type, strict=False)
    if extension:
        return extension.lstrip(".").upper()
    return mime_type.rsplit("/", 1)[-1][:12].upper() or "?"


def _filename(attached: Attached, record: MediaRecord) -> str:
    name = record.filename or attached.filename
    if name:
        return name
    extension = mimetypes.guess_extension(plain_mime(record.mime_type), strict=False) or ".bin"
    return f"{attached.kind}{extension}"


def present(contact: str, wamid: str, attached: Attached, record: MediaRecord | None) -> Presented:
    """How the file of message ``wamid`` of ``contact`` shows (``record``: its media, while
    kept here)."""
    if attached.media_id is None:
        if attached.link:
            return Presented("link", filename=attached.filename or "", link=attached.link)
        return Presented("elsewhere", filename=attached.filename or "")
    if record is None:
        return Presented("gone", filename=attached.filename or "")
    url = f"/inbox/c/{contact}/file/{wamid}"
    mime_type = plain_mime(record.mime_type)
    shows = attached.kind if mime_type in SHOWN_INLINE.get(attached.kind, ()) else "file"
    return Presented(
        shows,
        url=url,
        preview_url=f"{url}/preview" if shows in {"image", "sticker"} else "",
        download_url=f"{url}?download=1",
        filename=_filename(attached, record),
        size=human_size(record.file_size),
        label=_label(mime_type),
    )


async def files_for(
    request: Request, contact: str, items: Iterable[ThreadMessage | Activity]
) -> dict[str, Presented]:
    """The files of the media messages among ``items`` (a thread's), by wamid."""
    library = library_of(request)
    found: dict[str, Presented] = {}
    for m in items:
        if not isinstance(m, ThreadMessage) or m.view is None or m.view.attached is None:
            continue
        attached = m.view.attached
        record = None if attached.media_id is None else await library.get(attached.media_id)
        found[m.wamid] = present(contact, m.wamid, attached, record)
    return found


# --- the bytes -------------------------------------------------------------------------------


def _plain(text: str, status_code: int) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status_code, headers=web.SECURITY_HEADERS)


def content_disposition(disposition: str, filename: str) -> str:
    """``inline`` or ``attachment`` with ``filename``: an ASCII fallback and the name itself
    (RFC 6266 / 5987), with nothing in it that could end the header or name a folder."""
    name = "".join(ch for ch in filename if ch.isprintable() and ch not in '\\/"')
    name = name.strip(" .")[:255] or "file"
    fallback = "".join(ch if " " <= ch <= "~" and ch not in "%;" else "_" for ch in name)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def _served(
    request: Request, contact: str, wamid: str
) -> tuple[Presented, MediaRecord, Path] | Response:
    """The file of message ``wamid`` of ``contact`` for the signed-in agent, or the answer to
    give instead (403 signed out, 404 for anything not a kept file of this conversation)."""
    who = await web.signed_in(request)
    _ = web.gettext_for(request, who)
    if who is None:
        return _plain(_("Sign in to the inbox first."), 403)
    nothing = _plain(_("There is no such file in this conversation."), 404)
    message = await web.actions_of(request).gateway.store.message(wamid)
    if message is None or message.contact != contact or message.type not in MEDIA_KINDS:
        return nothing
    media_id = message.content.get("id")
    if not isinstance(media_id, str) or not media_id.isdigit():
        return nothing
    library = library_of(request)
    record = await library.get(media_id)
    if record is None:
        return _plain(_("This file is no longer kept."), 404)
    named = message.content.get("filename")
    attached = Attached(message.type, media_id, None, named if isinstance(named, str) else None)
    return present(contact, wamid, attached, record), record, library.path(record.id)


def _file_response(path: Path, mime_type: str, disposition: str) -> Response:
    return FileResponse(
        path,
        media_type=mime_type,
        headers={**MEDIA_HEADERS, "Content-Disposition": disposition},
        content_disposition_type=disposition.split(";", 1)[0],
    )


@router.get("/c/{contact}/file/{wamid}")
async def serve_file(
    request: Request, contact: web.ContactId, wamid: Wamid, download: str = ""
) -> Response:
    """The file of a media message: pictures, audio and video inline (a page shows them),
    everything else as a download."""
    got = await _served(request, contact, wamid)
    if isinstance(got, Response):
        return got
    shown, record, path = got
    mime_type = plain_mime(record.mime_type)
    if shown.shows != "file" and not download:
        return _file_response(path, mime_type, content_disposition("inline", shown.filename))
    if mime_type not in DOCUMENT_TYPES and mime_type not in SHOWN_INLINE.get(shown.shows, ()):
        mime_type = "application/octet-stream"
    return _file_response(path, mime_type, content_disposition("attachment", shown.filename))


@router.get("/c/{contact}/file/{wamid}/preview")
async def serve_preview(request: Request, contact: web.ContactId, wamid: Wamid) -> Response:
    """A picture made small for the thread (the picture itself when it cannot be)."""
    got = await _served(request, contact, wamid)
    if isinstance(got, Response):
        return got
    shown, record, path = got
    if shown.shows not in {"image", "sticker"}:
        return _plain(
            web.gettext_for(request, None)("There is no such file in this conversation."), 404
        )
    made = await previews_of(request).of(record.id, path)
    inline = content_disposition("inline", shown.filename)
    if made is None:
        return _file_response(path, plain_mime(record.mime_type), inline)
    data, mime_type = made
    return Response(
        data, media_type=mime_type, headers={**MEDIA_HEADERS, "Content-Disposition": inline}
    )


def _shrink(path: Path, largest: int, max_pixels: int) -> tuple[bytes, str] | None:
    """``path``'s picture at most ``largest`` pixels wide and high (``None``: not a picture
    Pillow reads, or too many pixels to open safely)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                if opened.width * opened.height > max_pixels:
                    return None
                opened.draft("RGB", (largest, largest))  # a JPEG decodes at a smaller scale
                image = ImageOps.exif_transpose(opened)
                image.thumbnail((largest, largest))
                out = io.BytesIO()
                if image.mode in {"RGBA", "LA", "PA"} or "transparency" in image.info:
                    image.convert("RGBA").save(out, format="PNG", optimize=True)
                    return out.getvalue(), "image/png"
                image.convert("RGB").save(out, format="JPEG", quality=82)
                return out.getvalue(), "image/jpeg"
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None


class Previews:
    """Small versions of the thread's pictures, made on first view and kept in memory up to
    ``budget_bytes`` (the least recently shown go first); two are made at a time."""

    def __init__(
        self,
        *,
        largest_px: int = 480,
        budget_bytes: int = 16 * MB,
        max_pixels: int = 40_000_000,
    ) -> None:
        self.largest_px = largest_px
        self.budget_bytes = budget_bytes
        self.max_pixels = max_pixels
        self._kept: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._bytes = 0
        self._making = asyncio.Semaphore(2)

    async def of(self, media_id: str, path: Path) -> tuple[bytes, str] | None:
        kept = self._kept.get(media_id)
        if kept is not None:
            self._kept.move_to_end(media_id)
            return kept
        async with self._making:
            made = await asyncio.to_thread(_shrink, path, self.largest_px, self.max_pixels)
        if made is None or len(made[0]) > self.budget_bytes or media_id in self._kept:
            return made
        self._kept[media_id] = made
        self._bytes += len(made[0])
        while self._bytes > self.budget_bytes:
            _id, (data, _type) = self._kept.popitem(last=False)
            self._bytes -= len(data)
        return made


# --- attaching -------------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


async def _bounded(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _TooLarge
        yield chunk


def _too_large(largest: int) -> FileRefused:
    return FileRefused(
        N_("the file is larger than any message takes (at most {limit})"),
        code="file_too_large",
        limit=human_size(largest),
    )


def _upload_name(upload: UploadFile) -> str | None:
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or None


@router.post("/c/{contact}/attach")
async def attach(request: Request, contact: web.ContactId) -> Response:
    """Send a file chosen (or dropped) in the composer, with an optional caption: a
    multipart form with the session's CSRF token; back to the thread with what happened."""
    who = await web.signed_in(request)
    if who is None:
        return web.redirect("/inbox/login")
    _ = web.gettext_for(request, who)
    back = f"/inbox/c/{contact}"
    largest = library_of(request).max_upload_bytes
    limit = largest + ENVELOPE_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return web.redirect(back, _too_large(largest).sentence(_))
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return web.redirect(
            back, FileRefused(N_("choose a file to send"), code="file_missing").sentence(_)
        )
    parser = MultiPartParser(
        request.headers,
        _bounded(request, limit),
        max_files=1,
        max_fields=MAX_FIELDS,
        max_part_size=MAX_FIELD_BYTES,
    )
    form: FormData | None = None
    try:
        form = await parser.parse()
        if not web.csrf_ok(form.get("csrf"), who.csrf):
            return web.refused(request, who)
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or (upload.size == 0 and not upload.filename):
            raise FileRefused(N_("choose a file to send"), code="file_missing")
        name = _upload_name(upload)
        await web.actions_of(request).attach(
            who.agent,
            contact,
            upload.file,
            mime_type=mime_type_of(upload.content_type, name),
            filename=name,
            caption=web.field(form, "caption", MAX_CAPTION + 1),
            context=web.field(form, "context", 80) or None,
        )
    except _TooLarge:
        return web.redirect(back, _too_large(largest).sentence(_))
    except MultiPartException:
        return web.redirect(
            back, FileRefused(N_("choose a file to send"), code="file_missing").sentence(_)
        )
    except ClientDisconnect:
        return Response(status_code=400, headers=web.SECURITY_HEADERS)
    except Refused as exc:
        return web.redirect(back, exc.sentence(_))
    finally:
        if form is not None:
            await form.close()
    return web.redirect(back, _("Sent {name}.").format(name=name or _("the file")))

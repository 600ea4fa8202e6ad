"""Routes of the blob store for encrypted attachments (``/v1/attachments``), device tokens.

Uploads are resumable in the manner of tus: ``POST`` creates one with its ciphertext size,
``PATCH`` appends the next bytes at ``Upload-Offset`` (streamed to storage, whatever their
length), ``GET .../upload`` says where an upload stands after a lost connection. ``GET``
downloads a complete blob (``Range`` resumes a download), ``DELETE`` removes one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from tresen.core.errors import ErrorCode, TresenError
from tresen.relay.attachments.service import AttachmentKind, BodyBroken, UploadState
from tresen.relay.http import Authed, Ctx, error_response, errors

__all__ = ["ATTACHMENT_PATH", "router", "streams_body"]

router = APIRouter(prefix="/v1/attachments", tags=["attachments"])

ATTACHMENT_PATH = "/v1/attachments/"
MAX_OFFSET = 2**62
AttachmentIdPath = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_-]{43}$",
        description="43 characters of base64url, from `POST /v1/attachments`",
    ),
]
_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})")
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_RANGE_HEADERS = {
    "Content-Range": {
        "description": "bytes first-last/size, on 206",
        "schema": {"type": "string"},
        "required": False,
    },
}


def streams_body(method: str, path: str) -> bool:
    """True for the requests whose body the route streams itself (appending to an upload),
    so the relay's general body limit must not read it into memory first."""
    return method == "PATCH" and path.startswith(ATTACHMENT_PATH)


class AttachmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: AttachmentKind = Field(description="media (images, audio, video) or document")
    size: int = Field(ge=1, le=MAX_OFFSET, description="ciphertext bytes to upload")


class AttachmentCreatedPublic(BaseModel):
    id: str = Field(description="43 characters of base64url (32 random bytes)")
    size: int
    offset: int
    upload_expires_ms: int = Field(description="when the unfinished upload is deleted")


class AppendedPublic(BaseModel):
    offset: int = Field(description="bytes recorded (flushed to disk) so far")
    complete: bool


class UploadStatePublic(BaseModel):
    offset: int
    size: int
    complete: bool
    upload_expires_ms: int = Field(
        description="when the upload (or, once complete, the blob) expires"
    )


def _state(state: UploadState) -> UploadStatePublic:
    return UploadStatePublic(
        offset=state.offset,
        size=state.size,
        complete=state.complete,
        upload_expires_ms=state.upload_expires_ms,
    )


@router.post(
    "",
    status_code=201,
    response_model=AttachmentCreatedPublic,
    responses=errors(413, 429),
)
async def create_attachment(
    body: AttachmentCreate, principal: Authed, ctx: Ctx
) -> AttachmentCreatedPublic:
    """Reserve an upload of ``size`` ciphertext bytes (150070 over the kind's limit, 150071
    over the device's quota or unfinished uploads, 4 when creating too fast)."""
    state = await ctx.attachments.create(principal, body.kind, body.size)
    return AttachmentCreatedPublic(
        id=state.id, size=state.size, offset=state.offset, upload_expires_ms=state.upload_expires_ms
    )


@router.patch(
    "/{attachment_id}",
    response_model=AppendedPublic,
    responses=errors(404, 409, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/offset+octet-stream": _BINARY},
        }
    },
)
async def append_to_attachment(
    attachment_id: AttachmentIdPath,
    upload_offset: Annotated[
        int,
        Header(
            alias="Upload-Offset", ge=0, le=MAX_OFFSET, description="the upload's current offset"
        ),
    ],
    request: Request,
    principal: Authed,
    ctx: Ctx,
) -> AppendedPublic:
    """Append the body at ``Upload-Offset`` (the uploader only). What reaches the disk before
    a connection breaks is kept; ``GET .../upload`` tells where to go on. 150073 when the
    offset is not the upload's (``details.offset`` is), 150074 when it is complete."""
    declared = request.headers.get("content-length")
    result = await ctx.attachments.append(
        principal,
        attachment_id,
        upload_offset,
        _body(request, ctx.settings.limits.body_read_timeout_s),
        declared_length=int(declared) if declared and declared.isdigit() else None,
    )
    return AppendedPublic(offset=result.offset, complete=result.complete)


async def _body(request: Request, idle_timeout_s: float) -> AsyncIterator[bytes]:
    """The request body as it arrives; a broken or silent connection ends it with
    :class:`BodyBroken` so that what arrived is kept."""
    stream = request.stream()
    try:
        while True:
            try:
                async with asyncio.timeout(idle_timeout_s):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except (ClientDisconnect, TimeoutError):
                raise BodyBroken from None
            if chunk:
                yield chunk
    finally:
        await stream.aclose()


@router.get("/{attachment_id}/upload", response_model=UploadStatePublic, responses=errors(404))
async def upload_state(
    attachment_id: AttachmentIdPath, principal: Authed, ctx: Ctx
) -> UploadStatePublic:
    """Where the caller's upload stands, to resume it."""
    return _state(await ctx.attachments.upload_state(principal, attachment_id))


@router.get(
    "/{attachment_id}",
    response_class=Response,
    responses={
        200: {"description": "the whole blob", "content": {"application/octet-stream": _BINARY}},
        206: {
            "description": "the requested range",
            "content": {"application/octet-stream": _BINARY},
            "headers": _RANGE_HEADERS,
        },
        **errors(404, 416),
    },
)
async def download_attachment(
    attachment_id: AttachmentIdPath,
    _: Authed,
    ctx: Ctx,
    range_: Annotated[
        str | None,
        Header(
            alias="Range",
            max_length=64,
            description="bytes=first- or bytes=first-last (unparsable ranges are ignored)",
        ),
    ] = None,
) -> Response:
    """A complete blob's ciphertext, for any authenticated device (the id is the
    capability)."""
    blob = await ctx.attachments.blob(attachment_id)
    wanted = _parse_range(range_, blob.size)
    if isinstance(wanted, str):
        response = error_response(
            TresenError(
                ErrorCode.ATTACHMENT_RANGE_NOT_SATISFIABLE,
                f"the range starts beyond the blob's {blob.size} bytes",
                size=blob.size,
            )
        )
        response.headers["Content-Range"] = f"bytes */{blob.size}"
        return response
    start, end = (0, blob.size) if wanted is None else wanted
    download = await ctx.attachments.download(blob, start, end)
    headers = {"Content-Length": str(download.end - download.start), "Accept-Ranges": "bytes"}
    if wanted is not None:
        headers["Content-Range"] = f"bytes {download.start}-{download.end - 1}/{download.size}"
    return StreamingResponse(
        download.chunks,
        status_code=206 if wanted is not None else 200,
        media_type="application/octet-stream",
        headers=headers,
        # Runs after the answer, also when the client left early: the file is closed.
        background=BackgroundTask(download.chunks.close),
    )


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(start, end) of a single byte range, None to send everything (no header, or one
    this relay does not parse, which HTTP allows to ignore), or "unsatisfiable"."""
    if header is None:
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None or found.group(0) == "bytes=-":
        return None
    first, last = found.groups()
    if not first:  # the last n bytes
        count = int(last)
        return "unsatisfiable" if count == 0 else (max(0, size - count), size)
    start = int(first)
    end = size if not last else int(last) + 1
    if start >= size:
        return "unsatisfiable"
    if end <= start:
        return None  # last before first: not a valid range, so ignored
    return start, min(end, size)


@router.delete("/{attachment_id}", status_code=204, responses=errors(404))
async def delete_attachment(attachment_id: AttachmentIdPath, principal: Authed, ctx: Ctx) -> None:
    """Delete the caller's attachment (the uploader only); its bytes stop counting at once."""
    await ctx.attachments.delete(principal, attachment_id)

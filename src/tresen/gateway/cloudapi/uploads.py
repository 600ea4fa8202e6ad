"""Reading ``POST /{version}/{phone_number_id}/media``: a multipart form with ``file``,
``type`` (its MIME type), ``messaging_product`` and an optional ``ttl_minutes``.

The body is parsed as it streams in: the file goes to a spooled temporary file (memory up to
1 MiB, then disk) and the request is cut off once it exceeds the largest file any media type
takes, so memory stays bounded whatever a client sends.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import BinaryIO

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from tresen.gateway.cloudapi.errors import GraphError

__all__ = ["ENVELOPE_BYTES", "Upload", "read_upload"]

ENVELOPE_BYTES = 64 * 1024
"""What a multipart body may hold beyond its file: boundaries, headers, the other fields."""
MAX_FIELD_BYTES = 1024
MAX_FIELDS = 10


@dataclass(frozen=True, slots=True)
class Upload:
    file: BinaryIO
    mime_type: str
    filename: str | None
    ttl_minutes: int | None


async def _bounded(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise GraphError(
                131053,
                f"Media upload error: the request exceeds {limit} bytes (the largest file "
                "any media type takes, with its form)",
                http_status=413,
            )
        yield chunk


def _field(value: str | UploadFile | None, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise GraphError(100, f"Param {name} must be a form field, not a file")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise GraphError(100, f"Param {name} holds a control character")
    return value


@asynccontextmanager
async def read_upload(request: Request, largest_file: int) -> AsyncIterator[Upload]:
    """The upload of ``request``; its temporary file is closed when the block ends."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise GraphError(
            100, "The request must be multipart/form-data with file, type and messaging_product"
        )
    limit = largest_file + ENVELOPE_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GraphError(
            131053,
            f"Media upload error: the request exceeds {limit} bytes (the largest file any "
            "media type takes, with its form)",
            http_status=413,
        )
    parser = MultiPartParser(
        request.headers,
        _bounded(request, limit),
        max_files=1,
        max_fields=MAX_FIELDS,
        max_part_size=MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise GraphError(100, f"The multipart form cannot be read: {exc.message}") from None
    except ClientDisconnect:
        raise GraphError(100, "The client went away before sending the whole body") from None
    try:
        if _field(form.get("messaging_product"), "messaging_product") != "whatsapp":
            raise GraphError(
                100, "The parameter messaging_product is required and must be 'whatsapp'."
            )
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise GraphError(100, "The parameter file is required (the file, as a form file).")
        mime_type = _field(form.get("type"), "type") or file.content_type
        if not mime_type:
            raise GraphError(100, "The parameter type is required (the file's MIME type).")
        ttl = _field(form.get("ttl_minutes"), "ttl_minutes")
        if ttl is not None and (not ttl.isdigit() or len(ttl) > 9):
            raise GraphError(100, "Param ttl_minutes must be a whole number of minutes")
        # Some clients send the whole local path (heyoo does): the name is its last part.
        filename = (file.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
        if filename is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in filename):
            raise GraphError(100, "Param file: its file name holds a control character")
        yield Upload(
            file=file.file,
            mime_type=mime_type[:255],
            filename=filename or None,
            ttl_minutes=None if ttl is None else int(ttl),
        )
    finally:
        await form.close()

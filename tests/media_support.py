"""Test support for media: small files of each kind, and a local HTTP server of files that
a gateway's links point at."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from support import serve_asgi


def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((width, height), 60).convert("RGB").save(out, format="PNG")
    return out.getvalue()


def pdf(marker: str) -> bytes:
    return b"%PDF-1.4\n" + f"BT (Boarding pass {marker}) Tj ET\n".encode() + b"%%EOF\n"


@asynccontextmanager
async def file_server(files: dict[str, tuple[bytes, str]]) -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 serving ``files`` (path: body, content type), plus
    ``/redirect?to=URL`` and a body that is larger than it says it is not."""

    async def serve(request: Request) -> Response:
        path = request.url.path
        if path == "/redirect":
            return RedirectResponse(request.query_params["to"], status_code=302)
        if path == "/loop":
            return RedirectResponse("/loop", status_code=302)
        if path not in files:
            return Response("not here", status_code=404)
        body, content_type = files[path]
        return Response(body, media_type=content_type)

    app = Starlette(routes=[Route("/{path:path}", serve)])
    async with serve_asgi(app) as url:
        yield url

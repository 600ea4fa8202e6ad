"""Routes: the customer web app at ``/app/``.

Files of the build by name, index.html for any other route of the app (deep links), and a
503 that says how to build the app when it is not built. None of it needs a token, and none
of it is in the OpenAPI document: it is the app, not the API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException

from tresen.core.errors import ErrorCode, TresenError
from tresen.relay.http import Ctx, error_response
from tresen.relay.webapp.files import Lookup, cache_control, content_type
from tresen.relay.webapp.service import accepts_gzip, compressible

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

NOT_BUILT = "the web app is not built: run make web"
NOT_BUILT_PAGE = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Tresen: web app not built</title></head>
<body>
<h1>The web app is not built</h1>
<p>This relay has no build of the customer web app. Run <code>make web</code> in the project
(it needs Node.js 20 and npm: <code>apt-get install -y nodejs npm</code>), then reload.</p>
<p>{NOT_BUILT}</p>
</body>
</html>
"""


@router.api_route("/app", methods=["GET", "HEAD"])
async def app_root(request: Request) -> Response:
    # The app lives under /app/: its manifest's scope and start_url end with the slash.
    target = "/app/" + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(target, status_code=status.HTTP_308_PERMANENT_REDIRECT)


@router.api_route("/app/{requested:path}", methods=["GET", "HEAD"])
async def app_file(requested: str, request: Request, ctx: Ctx) -> Response:
    webapp = ctx.webapp
    if not webapp.is_built():
        return _not_built(request)
    found = webapp.find(requested)
    if found.lookup is Lookup.MISSING or found.path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    stat = found.path.stat()
    gzipped = None
    if accepts_gzip(request.headers.get("accept-encoding", "")):
        gzipped = await webapp.gzipped(found.path, found.name, stat)
    # Each encoding is its own representation, with its own validator.
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}{"-gz" if gzipped is not None else ""}"'
    headers = {"Cache-Control": cache_control(found.name), "ETag": etag}
    if compressible(found.name):
        headers["Vary"] = "Accept-Encoding"
    if etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    media_type = content_type(found.name)
    if gzipped is not None:
        headers["Content-Encoding"] = "gzip"
        return Response(gzipped, media_type=media_type, headers=headers)
    return FileResponse(found.path, headers=headers, media_type=media_type, stat_result=stat)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _not_built(request: Request) -> Response:
    # A browser asks for a page and gets one; anything else gets the relay's error envelope.
    headers = {"Cache-Control": "no-store"}
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(
            NOT_BUILT_PAGE, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers
        )
    response: JSONResponse = error_response(TresenError(ErrorCode.INTERNAL, NOT_BUILT))
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    response.headers.update(headers)
    return response

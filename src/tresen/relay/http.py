"""HTTP plumbing shared by the relay's routes: error envelopes and authentication."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tresen.core.errors import ErrorCode, TresenError, http_status_for
from tresen.core.logging import get_logger
from tresen.relay.accounts.service import Principal
from tresen.relay.context import RelayContext

__all__ = ["Authed", "BodyLimit", "Ctx", "bearer_token", "install_error_handlers"]

log = get_logger("tresen.relay.http")


def get_context(request: Request) -> RelayContext:
    ctx: RelayContext = request.app.state.relay
    return ctx


Ctx = Annotated[RelayContext, Depends(get_context)]


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


async def current_principal(request: Request, ctx: Ctx) -> Principal:
    return await ctx.accounts.authenticate(bearer_token(request.headers.get("authorization")))


Authed = Annotated[Principal, Depends(current_principal)]


def error_response(error: TresenError) -> JSONResponse:
    headers = {}
    if "retry_after_s" in error.details:
        headers["Retry-After"] = str(error.details["retry_after_s"])
    elif "retry_after_ms" in error.details:
        headers["Retry-After"] = str(max(1, -(-int(error.details["retry_after_ms"]) // 1000)))
    return JSONResponse(
        {"error": error.to_dict()}, status_code=http_status_for(error.code), headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_tresen_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TresenError)
        return error_response(exc)

    async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems: list[dict[str, Any]] = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        return error_response(
            TresenError(ErrorCode.INVALID_PARAMETER, "invalid request", problems=problems)
        )

    async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
        # Unknown paths and methods answer in the same envelope as every other error.
        assert isinstance(exc, StarletteHTTPException)
        response = error_response(
            TresenError(ErrorCode.INVALID_PARAMETER, str(exc.detail), http_status=exc.status_code)
        )
        response.status_code = exc.status_code
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", error=repr(exc))
        return error_response(TresenError(ErrorCode.INTERNAL, "internal error; try again"))

    app.add_exception_handler(TresenError, on_tresen_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)


class BodyLimit:
    """Rejects HTTP request bodies larger than ``max_bytes`` with 413 / FRAME_TOO_LARGE, and
    bodies that take longer than ``read_timeout_s`` to arrive with 408.

    The body is read up to the limit first and then handed to the application from memory, so
    that a client sending slowly holds a socket but never a handler. A declared Content-Length
    over the limit is refused before anything is read. Without ``read_timeout_s`` the relay's
    ``limits.body_read_timeout_s`` applies.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout_s: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self._read_timeout(scope)):
                body = await self._read_body(receive)
        except TimeoutError:
            response = error_response(
                TresenError(ErrorCode.INVALID_PARAMETER, "request body not received in time")
            )
            response.status_code = 408
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        if body is None:
            return  # the client went away
        if len(body) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        replayed = False

        async def buffered_receive() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, buffered_receive, send)

    def _read_timeout(self, scope: Scope) -> float:
        if self.read_timeout_s is not None:
            return self.read_timeout_s
        relay = getattr(getattr(scope.get("app"), "state", None), "relay", None)
        return float(relay.settings.limits.body_read_timeout_s) if relay is not None else 30.0

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or as much as shows it is over the limit; None if the client left."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > self.max_bytes or not message.get("more_body", False):
                return b"".join(chunks)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            TresenError(
                ErrorCode.FRAME_TOO_LARGE, "request body too large", max_bytes=self.max_bytes
            )
        )
        await response(scope, receive, send)

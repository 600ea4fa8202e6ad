"""HTTP plumbing shared by the relay's routes: error envelopes and authentication."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tresen.core.errors import ErrorCode, TresenError, http_status_for
from tresen.core.http import bearer_token
from tresen.core.logging import get_logger
from tresen.relay.accounts.service import Principal
from tresen.relay.context import RelayContext
from tresen.relay.operator.service import OperatorPrincipal

__all__ = [
    "Authed",
    "BodyLimit",
    "Ctx",
    "ErrorPublic",
    "OperatorAuthed",
    "error_response",
    "errors",
    "install_error_handlers",
]

log = get_logger("tresen.relay.http")


def get_context(request: Request) -> RelayContext:
    ctx: RelayContext = request.app.state.relay
    return ctx


Ctx = Annotated[RelayContext, Depends(get_context)]


# Declared for the OpenAPI document (security scheme "device"); the token itself is read
# by ``bearer_token`` so that a missing or malformed header answers 401 in our envelope.
device_bearer = HTTPBearer(
    scheme_name="device",
    description="a device token, from `POST /v1/registration/verify`",
    auto_error=False,
)


async def current_principal(
    request: Request,
    ctx: Ctx,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(device_bearer)],
) -> Principal:
    return await ctx.accounts.authenticate(bearer_token(request.headers.get("authorization")))


Authed = Annotated[Principal, Depends(current_principal)]


# Declared for the OpenAPI document (security scheme "operator"), read like the device's.
operator_bearer = HTTPBearer(
    scheme_name="operator",
    description="an operator token, from `tresen admin token create`",
    auto_error=False,
)


async def current_operator(
    request: Request,
    ctx: Ctx,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(operator_bearer)],
) -> OperatorPrincipal:
    return await ctx.operator.authenticate(bearer_token(request.headers.get("authorization")))


OperatorAuthed = Annotated[OperatorPrincipal, Depends(current_operator)]


class ErrorBody(BaseModel):
    code: int = Field(description="stable; see docs/protocol.md §2", examples=[100])
    message: str = Field(description="for people; may change")
    details: dict[str, Any] = Field(
        description="what the client acts on, e.g. problems: [{field, problem}] for code 100"
    )


class ErrorPublic(BaseModel):
    """Every error the relay answers over HTTP."""

    error: ErrorBody


_STATUS_TEXT = {
    400: "invalid input (code 100 names the field in details.problems) or a rule refused it",
    401: "missing, unknown or revoked bearer token (code 190)",
    403: "not allowed for this caller",
    404: "not found",
    409: "conflicts with the current state",
    410: "gone",
    413: "request body larger than max_frame_bytes (code 150001)",
    429: "rate limited; Retry-After says when to try again",
    503: "not ready (code 150080; details.checks says what)",
    507: "the recipient's queue is full (code 150002)",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait, when the relay knows",
        "schema": {"type": "integer"},
        "required": False,
    }
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the error statuses it answers, each with the envelope.

    400, 401 and 413 need not be named: the OpenAPI document adds them to every route with
    parameters, with a bearer token and with a body (see ``relay/app.py``).
    """
    return {status: error_doc(status) for status in statuses}


def error_doc(status: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"model": ErrorPublic, "description": _STATUS_TEXT.get(status, "error")}
    if status == 429:
        doc["headers"] = _RETRY_AFTER
    return doc


class _EnvelopeResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        # Details may echo a JSON body's text; a lone surrogate in it must not turn the
        # answer into a 500, so such text is escaped rather than encoded.
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, separators=(",", ":")).encode()


def error_response(error: TresenError) -> JSONResponse:
    headers = {}
    if "retry_after_s" in error.details:
        headers["Retry-After"] = str(error.details["retry_after_s"])
    elif "retry_after_ms" in error.details:
        headers["Retry-After"] = str(max(1, -(-int(error.details["retry_after_ms"]) // 1000)))
    return _EnvelopeResponse(
        {"error": error.to_dict()}, status_code=http_status_for(error.code), headers=headers
    )


def _input_data_error(exc: BaseException) -> bool:
    """True when the database (or its driver) refused a value as data: text it cannot store,
    an integer beyond 64 bits. Such values are input the route should have bounded."""
    import asyncpg  # type: ignore[import-untyped]

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # asyncpg: the server's DataError (NUL in text: CharacterNotInRepertoireError,
        # UntranslatableCharacterError, numeric out of range) and the client's own (an int
        # beyond int64 while encoding a parameter).
        if isinstance(
            current,
            OverflowError
            | UnicodeEncodeError
            | asyncpg.exceptions.DataError
            | asyncpg.exceptions._base.DataError,
        ):
            return True
        if type(current).__name__ == "DataError":  # sqlalchemy's and the DB-API adapters'
            return True
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )
    return False


def _printable(text: str) -> str:
    # A field name may be a key of the JSON body, with any character in it.
    return text.encode("utf-8", "backslashreplace").decode()[:200]


def _count_refusal(request: Request, error: TresenError) -> None:
    # An app without the relay's context (a test's) has no metrics to count in.
    ctx: RelayContext | None = getattr(request.app.state, "relay", None)
    if ctx is not None:
        ctx.metrics.refused(error, "http")


def install_error_handlers(app: FastAPI) -> None:
    async def on_tresen_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TresenError)
        _count_refusal(request, exc)
        return error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems: list[dict[str, Any]] = [
            {
                "field": _printable(".".join(str(p) for p in e.get("loc", ()))),
                "problem": e.get("msg", ""),
            }
            for e in exc.errors()
        ]
        error = TresenError(ErrorCode.INVALID_PARAMETER, "invalid request", problems=problems)
        _count_refusal(request, error)
        return error_response(error)

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

    async def on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", error=repr(exc))
        error = TresenError(ErrorCode.INTERNAL, "internal error; try again")
        _count_refusal(request, error)
        return error_response(error)

    async def on_data_error(request: Request, exc: Exception) -> JSONResponse:
        # A safety net: input is bounded where it is decoded, so this is a missing bound.
        if not _input_data_error(exc):
            return await on_unexpected_error(request, exc)
        log.warning("input refused by the database", error=repr(exc), path=request.url.path)
        error = TresenError(
            ErrorCode.INVALID_PARAMETER,
            "invalid request: a value cannot be stored",
            problems=[{"field": "", "problem": "a value is out of range or not storable"}],
        )
        _count_refusal(request, error)
        return error_response(error)

    app.add_exception_handler(TresenError, on_tresen_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    for data_error in (DBAPIError, OverflowError, UnicodeEncodeError):
        app.add_exception_handler(data_error, on_data_error)
    app.add_exception_handler(Exception, on_unexpected_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)


class BodyLimit:
    """Rejects HTTP request bodies larger than ``max_bytes`` with 413 / FRAME_TOO_LARGE, and
    bodies that take longer than ``read_timeout_s`` to arrive with 408.

    The body is read up to the limit first and then handed to the application from memory, so
    that a client sending slowly holds a socket but never a handler. A declared Content-Length
    over the limit is refused before anything is read.

    Requests for which ``streamed(method, path)`` is true pass untouched: their route streams
    the body to storage and enforces its own limit and timeout (attachment uploads).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        read_timeout_s: float,
        streamed: Callable[[str, str], bool] = lambda _method, _path: False,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.streamed(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.read_timeout_s):
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

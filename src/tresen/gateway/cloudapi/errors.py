"""Errors in the Graph API's envelope, as Cloud API clients expect them.

``{"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException",
"code": 131047, "error_data": {"messaging_product": "whatsapp", "details": "..."},
"fbtrace_id": "..."}}``. Clients branch on ``code``; the relay's codes pass through unchanged.
The same error objects, in the webhook form (``code``, ``title``, ``message``,
``error_data.details``), go into ``failed`` statuses.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tresen.core.errors import ErrorCode

__all__ = ["GraphError", "install_error_handlers", "title_of", "webhook_error"]

ERROR_DOCS = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"

_TITLES: dict[int, str] = {
    0: "AuthException",
    4: "Application request limit reached",
    10: "Permission denied",
    100: "Invalid parameter",
    104: "An access token is required",
    190: "Access token has expired or is invalid",
    2200: "Callback verification failed",
    130429: "Rate limit hit",
    131000: "Something went wrong",
    131005: "Access denied",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131016: "Service unavailable",
    131021: "Recipient cannot be sender",
    131026: "Message undeliverable",
    131031: "Account has been locked",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131050: "Unable to deliver the message",
    131051: "Unsupported message type",
    131052: "Media download error",
    131053: "Media upload error",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132015: "Template is paused",
    132016: "Template is disabled",
    133016: "Account register deregister rate limit exceeded",
}

_HTTP: dict[int, int] = {
    4: 429,
    10: 403,
    190: 401,
    130429: 429,
    131000: 500,
    131016: 503,
    131056: 429,
}


def title_of(code: int) -> str:
    if code in _TITLES:
        return _TITLES[code]
    try:
        return ErrorCode(code).name.replace("_", " ").capitalize()
    except ValueError:
        return "Error"


class GraphError(Exception):
    """An error for a Cloud API client: ``code`` and ``details`` (shown as
    ``error_data.details``), optionally with extra fields under ``error_data``."""

    def __init__(
        self,
        code: int,
        details: str,
        *,
        http_status: int | None = None,
        subcode: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"({code}) {details}")
        self.code = int(code)
        self.details = details
        self.http_status = http_status or _HTTP.get(self.code, 400)
        self.subcode = subcode
        self.extra = extra or {}

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": f"(#{self.code}) {title_of(self.code)}",
            "type": "OAuthException",
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details, **self.extra},
            "fbtrace_id": "T" + secrets.token_urlsafe(15),
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        return {"error": error}

    def response(self) -> JSONResponse:
        return JSONResponse(self.envelope(), status_code=self.http_status)


def webhook_error(code: int, details: str) -> dict[str, Any]:
    """The error object of a ``failed`` status webhook."""
    return {
        "code": code,
        "title": title_of(code),
        "message": title_of(code),
        "error_data": {"details": details},
        "href": ERROR_DOCS,
    }


def count_error(state: Any, error: GraphError) -> None:
    """Count ``error`` in the app's metrics (``state.metrics``, when it has them)."""
    metrics = getattr(state, "metrics", None)
    if metrics is not None:
        metrics.cloudapi_error(error.code)


def install_error_handlers(app: FastAPI) -> None:
    async def on_graph_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GraphError)
        count_error(request.app.state, exc)
        return exc.response()

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        error = GraphError(100, f"Invalid parameter: {problems}")
        count_error(request.app.state, error)
        return error.response()

    async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            error = GraphError(
                100,
                "Unsupported request: the object does not exist or this gateway does not "
                "offer this operation",
                http_status=404,
            )
        else:
            error = GraphError(100, str(exc.detail), http_status=exc.status_code)
        return error.response()

    app.add_exception_handler(GraphError, on_graph_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)

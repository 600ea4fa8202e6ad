"""The hot path of every integration, answered in front of the web framework.

``POST /{version}/{phone_number_id}/messages`` is most of a gateway's traffic. Routing it
through FastAPI's middleware, router and dependency injection cost about as much CPU as the
send itself; this ASGI front reads the body, authorizes and answers it directly, with the
same code as the documented FastAPI route (``cloudapi/messages.py``). Everything else goes on
to the FastAPI app.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

import msgspec
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tresen.core.logging import get_logger
from tresen.core.metrics import ROUTE_KEY
from tresen.gateway.cloudapi.errors import GraphError, count_error
from tresen.gateway.cloudapi.messages import (
    authorize,
    decode_json,
    request_token,
    send_messages,
)

__all__ = ["MessagesFastPath"]

log = get_logger("tresen.gateway.api")

MESSAGES_ROUTE = "/{version}/{node}/messages"  # the documented route's template
MESSAGES_PATH = re.compile(r"^/v[0-9]{1,3}\.[0-9]{1,2}/([0-9]{1,20})/messages/?$")
_json = msgspec.json.Encoder()


class MessagesFastPath:
    """ASGI middleware; ``state`` is the FastAPI app's (the gateway, limits, rate buckets)."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = MESSAGES_PATH.match(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        scope[ROUTE_KEY] = MESSAGES_ROUTE
        try:
            body = await self._answer(scope, receive, match.group(1))
            status = 200
        except GraphError as exc:
            count_error(self.state, exc)
            body, status = exc.envelope(), exc.http_status
        except Exception:
            log.exception("messages request failed")
            error = GraphError(131000, "Something went wrong; try again")
            count_error(self.state, error)
            body, status = error.envelope(), error.http_status
        payload = _json.encode(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, scope: Scope, receive: Receive, node: str) -> dict[str, Any]:
        state = self.state
        authorization: str | None = None
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                declared = int(value)
        access_token = None
        if authorization is None and scope.get("query_string"):
            query = parse_qs(scope["query_string"].decode("latin-1"))
            access_token = next(iter(query.get("access_token", ())), None)
        token = request_token(authorization, access_token)
        gateway = await authorize(state.gateway, state.api_buckets, token)
        limit: int = state.max_request_bytes
        if declared is not None and declared > limit:
            raise GraphError(100, f"The request body exceeds {limit} bytes", http_status=413)
        raw = bytearray()
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                raise GraphError(100, "The client went away before sending the whole body")
            raw += message.get("body", b"")
            if len(raw) > limit:
                raise GraphError(100, f"The request body exceeds {limit} bytes", http_status=413)
            if not message.get("more_body", False):
                break
        return await send_messages(gateway, node, decode_json(bytes(raw)))

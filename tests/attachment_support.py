"""A blob store that follows the relay's attachments contract (``/v1/attachments``), in
memory, and loses connections on request: for client tests that need no relay."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx


class BreakingBody(httpx.AsyncByteStream):
    """A body that breaks off after ``keep`` bytes, as a dropped connection does."""

    def __init__(self, data: bytes, keep: int) -> None:
        self.data, self.keep = data, keep

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data[: self.keep]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


class BlobStore(httpx.AsyncBaseTransport):
    """The relay's blob store as the contract describes it, in memory.

    ``lose_patch_responses``: that many PATCH requests are stored but their answer is lost;
    ``break_downloads``: that many downloads break off halfway.
    """

    def __init__(self) -> None:
        self.blobs: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lose_patch_responses = 0
        self.break_downloads = 0

    def complete(self, blob_id: str) -> bytes:
        blob = self.blobs[blob_id]
        assert len(blob["data"]) == blob["size"]
        return bytes(blob["data"])

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        path = request.url.path
        self.requests.append((request.method, path, dict(request.headers)))
        parts = path.strip("/").split("/")
        if request.method == "POST" and path == "/v1/attachments":
            body = httpx.Response(200, content=request.content).json()
            blob_id = secrets.token_urlsafe(32)
            self.blobs[blob_id] = {"size": body["size"], "data": bytearray()}
            return httpx.Response(201, json={"id": blob_id, "size": body["size"], "offset": 0})
        blob = self.blobs.get(parts[2]) if len(parts) >= 3 else None
        if blob is None:
            return _error(404, 150072, "attachment not found")
        if request.method == "PATCH":
            offset = int(request.headers["Upload-Offset"])
            if offset != len(blob["data"]):
                return _error(409, 150073, "offset mismatch", offset=len(blob["data"]))
            blob["data"] += request.content
            if self.lose_patch_responses:
                self.lose_patch_responses -= 1
                raise httpx.ReadError("connection lost before the answer")
            done = len(blob["data"]) == blob["size"]
            return httpx.Response(200, json={"offset": len(blob["data"]), "complete": done})
        if request.method == "GET" and parts[-1] == "upload":
            done = len(blob["data"]) == blob["size"]
            return httpx.Response(
                200, json={"offset": len(blob["data"]), "size": blob["size"], "complete": done}
            )
        if request.method == "GET":
            data = bytes(blob["data"])
            start = int(request.headers.get("Range", "bytes=0-")[6:].rstrip("-"))
            status = 206 if "Range" in request.headers else 200
            if self.break_downloads:
                self.break_downloads -= 1
                keep = (len(data) - start) // 2
                return httpx.Response(status, stream=BreakingBody(data[start:], keep))
            return httpx.Response(status, content=data[start:])
        return _error(405, 100, "no such method")


def _error(status: int, code: int, message: str, **details: Any) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message, "details": details}}
    )

"""Handing a script's send to the process that owns a data folder.

Only one process may use a client's data folder (``client/lock.py``). So that a script can
still send while the app is open, the owning process listens on a Unix socket in the folder
(``data_dir/app.sock``, mode 0600) and sends on the script's behalf, with its own sessions:
one JSON request per connection, one JSON answer.

Request: ``{"send": {"to": "+49…", "text": "…", "reply_to": null}}``, or with ``"file":
"/absolute/path"`` a file to send as an attachment (``text`` is then its caption, and may be
left out). Answer:
``{"sent": {"message_id", "client_msg_id", "chat", "server_ms", "pending"}}`` or
``{"error": {"code": int | null, "message": str}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import httpx

from tresen.client.api import RelayError
from tresen.client.device import NotRegistered
from tresen.client.directory import IdentityNotTrusted
from tresen.client.sdk import Client
from tresen.core.fields import LINE_PATTERN, TEXT_PATTERN
from tresen.core.logging import get_logger
from tresen.crypto.attachments import AttachmentError
from tresen.wire.e2e import InvalidPayload

__all__ = ["MAX_REQUEST_BYTES", "SOCKET_NAME", "HandOff", "HandOffError", "hand_off_send"]

log = get_logger("tresen.client")

SOCKET_NAME = "app.sock"
MAX_REQUEST_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4096
ANSWER_TIMEOUT_S = 60.0


class HandOffError(RuntimeError):
    """The owning process could not be reached, or refused the request."""

    def __init__(self, message: str, code: int | None = None, *, listening: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.listening = listening
        """False: no process listens (the refusal is the owner's otherwise)."""


class HandOff:
    """The owner's side: serves send requests on ``data_dir/app.sock`` while it runs."""

    def __init__(self, client: Client, data_dir: Path) -> None:
        self.client = client
        self.path = data_dir / SOCKET_NAME
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        # A socket left by a process that died is stale: this process holds the folder lock.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old_umask)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(10):
                    raw = await reader.readline()
                answer = await self._answer(raw)
            except (ValueError, asyncio.LimitOverrunError):
                limit = f"a request is one JSON line of at most {MAX_REQUEST_BYTES} bytes"
                answer = _error(None, limit)
            except TimeoutError:
                answer = _error(None, "no request came")
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("hand-off connection lost", error=type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _answer(self, raw: bytes) -> dict[str, Any]:
        request = json.loads(raw)
        send = request.get("send") if isinstance(request, dict) else None
        if not isinstance(send, dict):
            return _error(None, "unknown request; only send is handed over")
        to, text, reply_to = send.get("to"), send.get("text"), send.get("reply_to")
        file = send.get("file")
        if file is not None and (
            not isinstance(file, str) or not _line_of(file, 4096) or not Path(file).is_absolute()
        ):
            return _error(None, "file must be an absolute path")
        text_ok = isinstance(text, str) and _text(text)
        if not isinstance(to, str) or not _line(to) or not (text_ok or (file and text is None)):
            return _error(None, "send needs to (a number or account id) and text or a file")
        if reply_to is not None and (not isinstance(reply_to, str) or not _line(reply_to)):
            return _error(None, "reply_to must be a message id")
        try:
            if file is not None:
                caption = text if isinstance(text, str) else None
                sent = await self.client.send_file(
                    to, Path(file), caption=caption, reply_to=reply_to
                )
            else:
                assert isinstance(text, str)
                sent = await self.client.send_text(to, text, reply_to=reply_to)
        except RelayError as exc:
            return _error(int(exc.code), exc.message)
        except AttachmentError as exc:
            return _error(None, f"{exc} ({exc.code})")
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            return _error(None, f"the file cannot be read: {exc.strerror}")
        except (IdentityNotTrusted, NotRegistered, InvalidPayload, ValueError) as exc:
            return _error(None, str(exc))
        except (httpx.HTTPError, OSError) as exc:
            return _error(None, f"the relay cannot be reached: {type(exc).__name__}")
        return {
            "sent": {
                "message_id": sent.message_id,
                "client_msg_id": sent.client_msg_id,
                "chat": sent.chat,
                "server_ms": sent.server_ms,
                "pending": sent.pending,
            }
        }


_LINE = re.compile(LINE_PATTERN)
_TEXT = re.compile(TEXT_PATTERN)


def _line(value: str) -> bool:
    return _line_of(value, 64)


def _line_of(value: str, most: int) -> bool:
    return 0 < len(value) <= most and _LINE.fullmatch(value) is not None


def _text(value: str) -> bool:
    return 0 < len(value) <= MAX_TEXT_CHARS and _TEXT.fullmatch(value) is not None


def _error(code: int | None, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def hand_off_send(
    data_dir: Path, to: str, text: str | None, reply_to: str | None = None, file: Path | None = None
) -> dict[str, Any]:
    """Ask the process that owns ``data_dir`` to send a text, or a file with ``text`` as its
    caption (``file`` an absolute path); what it sent.

    Raises ``HandOffError`` when no process listens there or it refuses the send.
    """
    if file is not None and not file.is_absolute():
        raise ValueError("the file to hand over is named by an absolute path")
    path = data_dir / SOCKET_NAME
    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_REQUEST_BYTES)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise HandOffError(f"no running app listens on {path}", listening=False) from exc
    try:
        send: dict[str, Any] = {"to": to, "text": text, "reply_to": reply_to}
        if file is not None:
            send["file"] = str(file)
        request = {"send": send}
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            raw = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    answer = json.loads(raw) if raw else {"error": {"code": None, "message": "no answer"}}
    if "error" in answer:
        error = answer["error"]
        code = error.get("code")
        raise HandOffError(str(error.get("message")), code if isinstance(code, int) else None)
    sent: dict[str, Any] = answer["sent"]
    return sent

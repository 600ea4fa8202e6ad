"""Senders of one-time registration codes.

The relay hands each code to an :class:`SmsSender`. The console sender logs it (development);
the file sender appends one JSON line per code to a file, which tests and scripts read.
An operator plugs in a real SMS gateway by implementing the same one-method protocol.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Protocol

from tresen.core.logging import get_logger

__all__ = ["ConsoleSmsSender", "FileSmsSender", "SmsSender", "read_last_code"]

log = get_logger("tresen.sms")


class SmsSender(Protocol):
    async def send_code(self, phone: str, code: str) -> None: ...


class ConsoleSmsSender:
    async def send_code(self, phone: str, code: str) -> None:
        log.info("registration code", phone=phone, code=code)


class FileSmsSender:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    async def send_code(self, phone: str, code: str) -> None:
        line = json.dumps({"phone": phone, "code": code}) + "\n"
        await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def read_last_code(path: Path, phone: str) -> str | None:
    """The newest code the file sender wrote for ``phone``."""
    if not path.exists():
        return None
    code = None
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry["phone"] == phone:
            code = entry["code"]
    return code

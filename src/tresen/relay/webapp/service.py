"""The built web app in its folder: which file answers a path, and gzip copies of its files.

A first visit downloads the whole app (its script, Olm's WebAssembly); gzip halves that, which
is what a customer on a slow mobile network waits for. The copies are made once per file and
kept in memory: a build is a handful of files that change only with the next build.
"""

from __future__ import annotations

import asyncio
import gzip
import os
from collections import OrderedDict
from pathlib import Path

from tresen.relay.webapp.files import AppFile, content_type, find, is_built

__all__ = ["WebApp", "accepts_gzip"]

MIB = 1_048_576
# Below this, compressing saves less than a request's headers weigh.
MIN_GZIP_BYTES = 1024
COMPRESSIBLE = {
    "application/wasm",
    "application/json",
    "application/manifest+json",
    "image/svg+xml",
}


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (``gzip;q=0`` refuses it)."""
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() not in ("gzip", "*"):
            continue
        quality = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
        try:
            return float(quality) > 0
        except ValueError:
            return False
    return False


def compressible(name: str) -> bool:
    media_type = content_type(name).split(";")[0]
    return media_type.startswith("text/") or media_type in COMPRESSIBLE


class WebApp:
    """The build in ``dist``; gzip copies of its files, up to ``max_gzip_bytes`` in all."""

    def __init__(self, dist: Path, *, max_gzip_bytes: int = 64 * MIB) -> None:
        self.dist = dist
        self.max_gzip_bytes = max_gzip_bytes
        self._gzipped: OrderedDict[tuple[Path, int, int], bytes] = OrderedDict()
        self._gzipped_bytes = 0

    @property
    def kept_bytes(self) -> int:
        """Bytes of gzip copies held in memory."""
        return self._gzipped_bytes

    def is_built(self) -> bool:
        # Looked at on every request: `make web` while the relay runs is served at once.
        return is_built(self.dist)

    def find(self, requested: str) -> AppFile:
        return find(self.dist, requested)

    async def gzipped(self, path: Path, name: str, stat: os.stat_result) -> bytes | None:
        """The gzip copy of the file at ``path`` as it is now (``stat``), or None when it is
        not worth compressing."""
        if stat.st_size < MIN_GZIP_BYTES or not compressible(name):
            return None
        key = (path, stat.st_mtime_ns, stat.st_size)
        kept = self._gzipped.get(key)
        if kept is not None:
            self._gzipped.move_to_end(key)
            return kept
        # Level 9 costs a few milliseconds once per file of a build; every visitor gains.
        packed = await asyncio.to_thread(_compress, path)
        if len(packed) >= stat.st_size:
            return None
        self._gzipped[key] = packed
        self._gzipped_bytes += len(packed)
        while self._gzipped_bytes > self.max_gzip_bytes and self._gzipped:
            _, dropped = self._gzipped.popitem(last=False)
            self._gzipped_bytes -= len(dropped)
        return packed


def _compress(path: Path) -> bytes:
    return gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)

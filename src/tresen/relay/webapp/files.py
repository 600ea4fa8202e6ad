"""Which file of the built web app answers a path under ``/app/``, and how it is cached."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath

__all__ = [
    "ASSETS",
    "BUNDLED_DIST",
    "INDEX",
    "AppFile",
    "Lookup",
    "cache_control",
    "content_type",
    "find",
    "is_built",
]

BUNDLED_DIST = Path(__file__).with_name("dist")
"""Where ``make web`` puts the build (``web/vite.config.ts``)."""

INDEX = "index.html"
ASSETS = "assets"

IMMUTABLE = "public, max-age=31536000, immutable"
# The page and the files whose names stay the same (manifest, icon) are checked on every
# load, so that a new build reaches browsers at once; its assets then come by new names.
REVALIDATE = "no-cache"

# Spelt out rather than taken from the `mimetypes` module, whose answers depend on the
# machine's /etc/mime.types: a browser refuses to compile WebAssembly that is not
# application/wasm, and to run a module script that is not JavaScript.
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",
    ".webmanifest": "application/manifest+json",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".txt": "text/plain; charset=utf-8",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
}
UNKNOWN_TYPE = "application/octet-stream"


class Lookup(Enum):
    FILE = "file"
    """A file of the build."""
    PAGE = "page"
    """A route of the app (a deep link): answered with index.html."""
    MISSING = "missing"
    """A file that is not there, or a path that could leave the build's folder."""


@dataclass(frozen=True)
class AppFile:
    lookup: Lookup
    path: Path | None = None
    """The file to send (``FILE`` and ``PAGE``)."""
    name: str = ""
    """Its path inside the build, with ``/`` between folders."""


def is_built(dist: Path) -> bool:
    return (dist / INDEX).is_file()


def find(dist: Path, requested: str) -> AppFile:
    """What answers ``/app/<requested>`` (``requested`` already percent-decoded).

    Only plain relative names are looked up: a segment that is empty, starts with a dot
    (``..``, hidden files), or holds a backslash or NUL is refused before the file system is
    touched, and what the name resolves to (symbolic links included) must lie inside
    ``dist``. A name whose last segment has no dot is a route of the app, answered with
    index.html so that deep links work; a missing file (``assets/…``, ``*.js``) is not found
    rather than answered with HTML a browser would then refuse as a script.
    """
    name = requested.removesuffix("/")
    if not name:
        return _page(dist)
    segments = name.split("/")
    if any(not s or s.startswith(".") or "\\" in s or "\x00" in s for s in segments):
        return AppFile(Lookup.MISSING)
    root = dist.resolve()
    candidate = (root / PurePosixPath(*segments)).resolve()
    if not candidate.is_relative_to(root) or candidate == root:
        return AppFile(Lookup.MISSING)
    if candidate.is_file():
        return AppFile(Lookup.FILE, candidate, candidate.relative_to(root).as_posix())
    if segments[0] == ASSETS or "." in segments[-1]:
        return AppFile(Lookup.MISSING)
    return _page(dist)


def _page(dist: Path) -> AppFile:
    return AppFile(Lookup.PAGE, dist.resolve() / INDEX, INDEX)


def content_type(name: str) -> str:
    return TYPES.get(PurePosixPath(name).suffix.lower(), UNKNOWN_TYPE)


def cache_control(name: str) -> str:
    """Content-hashed assets are kept for a year; everything else is revalidated."""
    return IMMUTABLE if name.startswith(ASSETS + "/") else REVALIDATE

"""Backup archives of a server's database and files, taken while the server runs.

An archive is a tar file (gzip-compressed when its name ends in ``.gz`` or ``.tgz``) that
holds ``manifest.json`` first, then the database and the files under ``database/`` and
``files/``. The manifest says what made the archive and lists every other member with its size
and SHA-256, which a restore checks before it touches the target.

The database is copied without stopping the server:

- SQLite through the online backup API (``sqlite3.Connection.backup``) in one step: it reads
  one consistent snapshot, and in WAL mode writers go on meanwhile.
- PostgreSQL table by table with ``COPY ... TO STDOUT (FORMAT binary)``, all inside one
  ``REPEATABLE READ READ ONLY`` transaction, so every table is read at the same instant. A
  restore creates the tables with the migrations of the archived revision, copies the rows
  back in foreign-key order and moves every sequence past its column's largest value.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import make_url

__all__ = [
    "FORMAT_VERSION",
    "BackupError",
    "Manifest",
    "Member",
    "copy_folder",
    "folder_has_files",
    "pg_dump_schema",
    "pg_load_schema",
    "pg_reset_schema",
    "pg_schema_tables",
    "read_archive",
    "sqlite_copy",
    "sqlite_has_tables",
    "sqlite_revision",
    "staging",
    "write_archive",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

Backend = Literal["sqlite", "postgresql"]

# What a live folder holds that is not data: SQLite's journal files (the online copy of the
# database has their content), a process's lock file and sockets.
_SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal")
_SKIPPED_NAMES = frozenset({"lock"})


class BackupError(Exception):
    """A backup or restore that cannot go on; ``code`` is stable, the message says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Member:
    """A file in the archive besides the manifest."""

    path: str
    bytes: int
    sha256: str


@dataclass(slots=True)
class Manifest:
    """What an archive holds and what made it."""

    component: str
    """``relay`` or ``gateway``: what the archive can be restored as."""
    backend: Backend
    revision: str | None
    """The database's Alembic revision when the backup was taken."""
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format: int = FORMAT_VERSION
    tresen_version: str = field(default_factory=lambda: _tresen_version())
    database_schema: str | None = None
    with_key: bool = False
    notes: list[str] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise TypeError("not an object")
            fmt = data.get("format")
            if fmt != FORMAT_VERSION:
                raise BackupError(
                    "backup_format",
                    f"the archive has format {fmt!r}; this Tresen reads format {FORMAT_VERSION}",
                )
            members = [Member(**m) for m in data.pop("members")]
            return cls(**data, members=members)
        except BackupError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise BackupError(
                "backup_manifest", f"the archive's manifest is unreadable: {exc}"
            ) from None


def _tresen_version() -> str:
    try:
        return metadata.version("tresen")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- staging and the archive -------------------------------------------------------------------


@contextlib.contextmanager
def staging(near: Path) -> Iterator[Path]:
    """A temporary folder beside ``near`` (on its file system), removed afterwards."""
    near.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{near.name}.", dir=near.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _compressed(path: Path) -> bool:
    return path.name.endswith((".gz", ".tgz"))


def write_archive(target: Path, staged: Path, manifest: Manifest) -> Manifest:
    """Write every file under ``staged`` and ``manifest`` (its members filled in) to
    ``target``, atomically: a reader never sees half an archive."""
    files = sorted(p for p in staged.rglob("*") if p.is_file())
    manifest.members = [
        Member(p.relative_to(staged).as_posix(), p.stat().st_size, _digest(p)) for p in files
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    mode: Literal["w:gz", "w"] = "w:gz" if _compressed(target) else "w"
    try:
        with tarfile.open(partial, mode) as tar:
            raw = manifest.to_json()
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size = len(raw)
            info.mtime = int(datetime.now(UTC).timestamp())
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(raw))
            for path in files:
                tar.add(path, arcname=path.relative_to(staged).as_posix(), recursive=False)
        partial.chmod(0o600)
        with partial.open("rb") as f:
            os.fsync(f.fileno())
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return manifest


def read_archive(source: Path, into: Path) -> Manifest:
    """Unpack ``source`` into ``into`` and return its manifest, after checking that every
    member is there, intact, and nothing else is."""
    if not source.is_file():
        raise BackupError("backup_missing", f"no backup archive at {source}")
    try:
        with tarfile.open(source, "r:*") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST_NAME or not first.isfile():
                raise BackupError(
                    "backup_manifest", f"{source} is not a Tresen backup (no manifest.json first)"
                )
            handle = tar.extractfile(first)
            assert handle is not None
            manifest = Manifest.from_json(handle.read())
            # The "data" filter refuses absolute paths, links out of the folder and devices.
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError("backup_unreadable", f"cannot read {source}: {exc}") from None
    listed = {m.path for m in manifest.members}
    found = {p.relative_to(into).as_posix() for p in into.rglob("*") if p.is_file()}
    found.discard(MANIFEST_NAME)
    if listed != found:
        raise BackupError(
            "backup_damaged",
            f"{source} does not hold what its manifest lists "
            f"(missing: {sorted(listed - found)[:5]}, unlisted: {sorted(found - listed)[:5]})",
        )
    for member in manifest.members:
        path = into / member.path
        if path.stat().st_size != member.bytes or _digest(path) != member.sha256:
            raise BackupError("backup_damaged", f"{member.path} in {source} is damaged")
    return manifest


# --- files -------------------------------------------------------------------------------------


def sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite database ``source`` while others use it.

    One backup step copies every page inside one read transaction: in WAL mode writers go on,
    and no write made meanwhile restarts the copy (as it would between smaller steps).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(source)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def sqlite_has_tables(path: Path) -> bool:
    """Whether the SQLite file at ``path`` exists and holds any table."""
    if not path.exists():
        return False
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
        return bool(row[0])
    finally:
        db.close()


def sqlite_revision(path: Path) -> str | None:
    """The Alembic revision of the SQLite database at ``path`` (``None``: not migrated)."""
    db = sqlite3.connect(path)
    try:
        row = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).fetchone()
        if row is None:
            return None
        found = db.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if found is None else str(found[0])
    finally:
        db.close()


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def copy_folder(source: Path, target: Path) -> int:
    """Copy the regular files under ``source`` to ``target``; SQLite databases through the
    online backup API, their journal files, lock files and sockets left out. Returns how many
    files were copied (none when ``source`` does not exist)."""
    if not source.is_dir():
        return 0
    copied = 0
    for path in sorted(source.rglob("*")):
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue  # removed while we walk: it was no longer needed
        if not stat.S_ISREG(mode):
            continue
        if path.name in _SKIPPED_NAMES or path.name.endswith(_SKIPPED_SUFFIXES):
            continue
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            if _is_sqlite(path):
                sqlite_copy(path, destination)
            else:
                shutil.copy2(path, destination)
        except FileNotFoundError:
            continue
        copied += 1
    return copied


def folder_has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


# --- PostgreSQL --------------------------------------------------------------------------------


def _dsn(url: str) -> str:
    """An asyncpg connection string for a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _connect(url: str, schema: str) -> Any:
    import asyncpg  # type: ignore[import-untyped]

    # As the server's own connections: names in triggers and defaults resolve in the schema.
    return await asyncpg.connect(_dsn(url), server_settings={"search_path": schema})


async def _tables_in_order(conn: Any, schema: str) -> list[str]:
    """The schema's tables, each after those its foreign keys point to."""
    names = [
        r["relname"]
        for r in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname",
            schema,
        )
    ]
    edges = await conn.fetch(
        "SELECT c.relname AS child, p.relname AS parent FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE k.contype = 'f' AND n.nspname = $1",
        schema,
    )
    parents: dict[str, set[str]] = {name: set() for name in names}
    for edge in edges:
        if edge["child"] != edge["parent"] and edge["parent"] in parents:
            parents[edge["child"]].add(edge["parent"])
    ordered: list[str] = []
    placed: set[str] = set()
    while len(ordered) < len(names):
        ready = [n for n in names if n not in placed and parents[n] <= placed]
        if not ready:  # a cycle: the rest in name order (the schemas have none)
            ready = [n for n in names if n not in placed]
        ordered.extend(ready)
        placed.update(ready)
    return ordered


async def pg_schema_tables(url: str, schema: str) -> list[str]:
    """The tables in ``schema`` (none when it does not exist)."""
    conn = await _connect(url, schema)
    try:
        return await _tables_in_order(conn, schema)
    finally:
        await conn.close()


async def pg_dump_schema(url: str, schema: str, into: Path) -> str | None:
    """Copy every table of ``schema`` into ``into`` (one binary COPY file per table and
    ``tables.json``), all read in one snapshot; returns the Alembic revision of that
    snapshot."""
    await asyncio.to_thread(into.mkdir, parents=True, exist_ok=True)
    conn = await _connect(url, schema)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            tables = await _tables_in_order(conn, schema)
            revision = None
            if "alembic_version" in tables:
                revision = await conn.fetchval(
                    f"SELECT version_num FROM {_quote(schema)}.alembic_version"  # noqa: S608
                )
            listing: list[dict[str, Any]] = []
            for table in tables:
                columns = [
                    r["attname"]
                    for r in await conn.fetch(
                        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = "
                        "a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 "
                        "AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
                        schema,
                        table,
                    )
                ]
                await conn.copy_from_table(
                    table,
                    schema_name=schema,
                    columns=columns,
                    output=str(into / f"{table}.copy"),
                    format="binary",
                )
                listing.append({"table": table, "columns": columns})
    finally:
        await conn.close()
    (into / "tables.json").write_text(json.dumps(listing, indent=2))
    return None if revision is None else str(revision)


async def pg_reset_schema(url: str, schema: str) -> None:
    """Drop ``schema`` with everything in it and create it again, empty."""
    conn = await _connect(url, schema)
    try:
        quoted = _quote(schema)
        await conn.execute(f"DROP SCHEMA IF EXISTS {quoted} CASCADE; CREATE SCHEMA {quoted}")
    finally:
        await conn.close()


async def pg_load_schema(url: str, schema: str, folder: Path, *, keep: set[str]) -> None:
    """Fill the tables of ``schema`` (made by the migrations of the archived revision) with
    the rows in ``folder``, replacing what the migrations put there, except in the tables
    named in ``keep``; then move each sequence past its column's largest value."""
    listing = json.loads((folder / "tables.json").read_text())
    conn = await _connect(url, schema)
    try:
        async with conn.transaction():
            present = set(await _tables_in_order(conn, schema))
            wanted = [e for e in listing if e["table"] not in keep]
            missing = [e["table"] for e in wanted if e["table"] not in present]
            if missing:
                raise BackupError(
                    "backup_schema",
                    f"the archive has tables the migrations did not create: {missing}",
                )
            if wanted:
                names = ", ".join(f"{_quote(schema)}.{_quote(e['table'])}" for e in wanted)
                await conn.execute(f"TRUNCATE {names}")
            # The rows go back as they were: triggers that keep derived columns stay off
            # (foreign keys are still checked).
            for entry in wanted:
                await conn.execute(
                    f"ALTER TABLE {_quote(schema)}.{_quote(entry['table'])} DISABLE TRIGGER USER"
                )
            for entry in wanted:
                await conn.copy_to_table(
                    entry["table"],
                    schema_name=schema,
                    columns=entry["columns"],
                    source=str(folder / f"{entry['table']}.copy"),
                    format="binary",
                )
            for entry in wanted:
                await conn.execute(
                    f"ALTER TABLE {_quote(schema)}.{_quote(entry['table'])} ENABLE TRIGGER USER"
                )
            sequences = await conn.fetch(
                "SELECT c.relname AS tbl, a.attname AS col, pg_get_serial_sequence("
                "quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) AS seq "
                "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 "
                "AND NOT a.attisdropped",
                schema,
            )
            for row in sequences:
                if row["seq"] is None:
                    continue
                # Names come from the catalogue, quoted as identifiers.
                column = _quote(row["col"])
                table = f"{_quote(schema)}.{_quote(row['tbl'])}"
                largest = f"SELECT max({column}) FROM {table}"  # noqa: S608
                await conn.execute(
                    f"SELECT setval($1, COALESCE(({largest}), 0) + 1, false)", row["seq"]
                )
    finally:
        await conn.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'

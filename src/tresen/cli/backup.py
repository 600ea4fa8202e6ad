"""``backup`` and ``restore`` of the relay and of a gateway, while the server runs.

What goes into an archive (docs/operations.md, "Backup and restore"): the database, the
folders of files the server needs, and the key file only when asked (``--with-key``): that key
protects secrets in the database, and an archive that holds both protects nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from sqlalchemy.engine import make_url

from tresen.cli.common import console
from tresen.core.backup import (
    BackupError,
    Manifest,
    copy_folder,
    folder_has_files,
    pg_dump_schema,
    pg_load_schema,
    pg_reset_schema,
    pg_schema_tables,
    read_archive,
    sqlite_copy,
    sqlite_has_tables,
    sqlite_revision,
    staging,
)
from tresen.core.backup import write_archive as write_archive_file
from tresen.core.db import Database
from tresen.core.settings import Settings

if TYPE_CHECKING:
    from tresen.gateway.settings import GatewaySettings

__all__ = [
    "DataSet",
    "gateway_data",
    "relay_data",
    "run_backup",
    "run_restore",
]

DATABASE_FOLDER = "database"
SQLITE_MEMBER = "database.sqlite"
FILES_FOLDER = "files"
KEY_MEMBER = "key/key"


@dataclass(frozen=True, slots=True)
class DataSet:
    """Where one server's data lives, as its settings say, and how to check it after a
    restore."""

    component: str
    """``relay`` or ``gateway``."""
    database_url: str
    database_schema: str | None
    folders: dict[str, Path]
    """Folders of files to keep, by their name in the archive."""
    key_file: Path
    key_in_environment: str | None
    """The environment variable the key comes from instead of the file, when it is set."""
    open_database: Callable[[], Database]
    migrate: Callable[[Database, str], Awaitable[None]]
    key_problem: Callable[[Database], Awaitable[str | None]]
    """What keeps the restored server from opening its secrets with the key it has."""
    where_to_put_the_key: str

    @property
    def backend(self) -> str:
        name = make_url(self.database_url).get_backend_name()
        return "sqlite" if name == "sqlite" else "postgresql"

    @property
    def sqlite_path(self) -> Path:
        database = make_url(self.database_url).database
        assert database
        return Path(database)

    @property
    def schema(self) -> str:
        return self.database_schema or "public"


# --- the relay and the gateway -----------------------------------------------------------------


def relay_data(settings: Settings) -> DataSet:
    from tresen.cli.relay import database_for
    from tresen.relay import migrate as migrations

    async def key_problem(db: Database) -> str | None:
        from tresen.relay.operator import repo
        from tresen.relay.operator.keys import OperatorKeyError, load_kek

        async with db.read() as conn:
            row = await repo.current_operator_key(conn)
        if row is None:
            return None  # the relay makes its first key when it starts
        try:
            load_kek(settings, keys_exist=True).unseal(
                row.key_id, row.public_key, row.private_sealed
            )
        except OperatorKeyError as exc:
            return str(exc)
        return None

    folders: dict[str, Path] = {}
    if settings.attachments.storage == "filesystem":
        folders["attachments"] = settings.data_dir / "attachments"
    key_file = settings.resolved_operator_key_file
    return DataSet(
        component="relay",
        database_url=settings.resolved_database_url,
        database_schema=settings.database_schema,
        folders=folders,
        key_file=key_file,
        key_in_environment="TRESEN_OPERATOR_KEY" if settings.operator_key else None,
        open_database=lambda: database_for(settings),
        migrate=migrations.upgrade,
        key_problem=key_problem,
        where_to_put_the_key=(
            f"copy the old relay's key file to {key_file} (mode 0600) or set "
            "TRESEN_OPERATOR_KEY to the key it had, or restore a backup made with --with-key"
        ),
    )


def gateway_data(settings: GatewaySettings) -> DataSet:
    from tresen.gateway import migrate as migrations
    from tresen.gateway.database import KEY_ENV, gateway_database

    key_file = settings.resolved_key_file

    async def key_problem(_db: Database) -> str | None:
        return _device_key_problem(settings.device_dir / "client.db", key_file, KEY_ENV)

    return DataSet(
        component="gateway",
        database_url=settings.resolved_database_url,
        database_schema=settings.database_schema,
        folders={"device": settings.device_dir, "media": settings.media_dir},
        key_file=key_file,
        key_in_environment=KEY_ENV if os.environ.get(KEY_ENV) else None,
        open_database=lambda: gateway_database(settings),
        migrate=migrations.upgrade,
        key_problem=key_problem,
        where_to_put_the_key=(
            f"copy the old gateway's key file to {key_file} (mode 0600) or set {KEY_ENV} to "
            "the key it had, or restore a backup made with --with-key; never start the "
            "gateway without it (it would make a new key and could not read its device)"
        ),
    )


def _device_key_problem(client_db: Path, key_file: Path, key_env: str) -> str | None:
    """Whether the gateway's device store opens with the key the gateway would use."""
    import sqlite3

    from tresen.crypto.secrets import SecretsError, key_from_env, load_or_create_key_file, unseal

    if not client_db.exists():
        return None
    from_env = os.environ.get(key_env)
    try:
        if from_env:
            key, source = key_from_env(from_env), key_env
        elif key_file.exists():
            # Read (and its mode checked) as the gateway reads it; never created here.
            key, source = load_or_create_key_file(key_file), f"the key file {key_file}"
        else:
            return f"the device's secrets are sealed with a key, but {key_file} does not exist"
    except SecretsError as exc:
        return str(exc)
    db = sqlite3.connect(client_db)
    try:
        row = db.execute("SELECT v FROM meta WHERE k = 'token'").fetchone()
    finally:
        db.close()
    if row is None:
        return None
    try:
        unseal(key, bytes(row[0]), context=b"token")
    except SecretsError:
        return (
            f"the device's secrets do not open with {source}: it is not the key they were "
            "sealed with"
        )
    return None


# --- backup ------------------------------------------------------------------------------------


async def take_backup(data: DataSet, target: Path, *, with_key: bool) -> Manifest:
    """Write an archive of ``data`` to ``target`` while the server goes on."""
    if with_key and data.key_in_environment:
        raise BackupError(
            "backup_key_in_environment",
            f"the key comes from {data.key_in_environment}, not from a file: keep that "
            "secret with the backup yourself (leave out --with-key)",
        )
    if with_key and not data.key_file.is_file():
        raise BackupError("backup_no_key", f"--with-key: there is no key file at {data.key_file}")
    with staging(target) as staged:
        if data.backend == "sqlite":
            if not sqlite_has_tables(data.sqlite_path):
                raise BackupError(
                    "backup_empty", f"there is no {data.component} database at {data.sqlite_path}"
                )
            copy = staged / DATABASE_FOLDER / SQLITE_MEMBER
            await asyncio.to_thread(sqlite_copy, data.sqlite_path, copy)
            revision = sqlite_revision(copy)
        else:
            if not await pg_schema_tables(data.database_url, data.schema):
                raise BackupError(
                    "backup_empty", f"the schema {data.schema} holds no {data.component} tables"
                )
            revision = await pg_dump_schema(
                data.database_url, data.schema, staged / DATABASE_FOLDER
            )
        # The files after the database: every file a row of the copy names exists by then.
        for name, folder in data.folders.items():
            await asyncio.to_thread(copy_folder, folder, staged / FILES_FOLDER / name)
        notes = []
        if data.component == "relay" and "attachments" not in data.folders:
            notes.append("attachment blobs are in the S3 bucket: back the bucket up on its own")
        if with_key:
            (staged / KEY_MEMBER).parent.mkdir(parents=True)
            shutil.copyfile(data.key_file, staged / KEY_MEMBER)
        manifest = Manifest(
            component=data.component,
            backend="sqlite" if data.backend == "sqlite" else "postgresql",
            revision=revision,
            database_schema=data.database_schema,
            with_key=with_key,
            notes=notes,
        )
        return await asyncio.to_thread(write_archive_file, target, staged, manifest)


# --- restore -----------------------------------------------------------------------------------


async def restore_backup(
    data: DataSet, source: Path, *, force: bool
) -> tuple[Manifest, str | None]:
    """Restore the archive ``source`` into the (empty) places ``data`` names and migrate;
    returns the manifest and what keeps the restored server from opening its key, if
    anything does."""
    with staging(source) as staged:
        manifest = await asyncio.to_thread(read_archive, source, staged)
        if manifest.component != data.component:
            raise BackupError(
                "backup_component",
                f"{source} is a backup of a {manifest.component}, not of a {data.component}",
            )
        if manifest.backend != data.backend:
            raise BackupError(
                "backup_backend",
                f"{source} holds a {manifest.backend} database and the target is "
                f"{data.backend}: restore it into {manifest.backend} (a backup is not moved "
                "between SQLite and PostgreSQL)",
            )
        if manifest.revision is None:
            raise BackupError("backup_manifest", f"{source} names no schema revision")
        archived_key = staged / KEY_MEMBER
        occupied = await _occupied(data, archived_key if manifest.with_key else None)
        if occupied and not force:
            raise BackupError(
                "restore_target_not_empty",
                f"the target already holds data ({'; '.join(occupied)}): restore into an empty "
                "database and data folder, or pass --force to replace what is there",
            )
        if data.backend == "sqlite":
            _put_sqlite(staged / DATABASE_FOLDER / SQLITE_MEMBER, data.sqlite_path)
        else:
            if occupied:
                await pg_reset_schema(data.database_url, data.schema)
            db = data.open_database()
            try:
                await _migrate(data, db, manifest.revision)
            finally:
                await db.dispose()
            await pg_load_schema(
                data.database_url,
                data.schema,
                staged / DATABASE_FOLDER,
                keep={"alembic_version"},
            )
        for name, folder in data.folders.items():
            _put_folder(staged / FILES_FOLDER / name, folder)
        if manifest.with_key:
            data.key_file.parent.mkdir(parents=True, exist_ok=True)
            data.key_file.unlink(missing_ok=True)
            shutil.copyfile(archived_key, data.key_file)
            data.key_file.chmod(0o600)
    db = data.open_database()
    try:
        await _migrate(data, db, "head")
        problem = await data.key_problem(db)
    finally:
        await db.dispose()
    return manifest, problem


async def _occupied(data: DataSet, archived_key: Path | None) -> list[str]:
    found = []
    if data.backend == "sqlite":
        if sqlite_has_tables(data.sqlite_path):
            found.append(f"the database {data.sqlite_path}")
    elif await pg_schema_tables(data.database_url, data.schema):
        found.append(f"the schema {data.schema}")
    for folder in data.folders.values():
        if folder_has_files(folder):
            found.append(f"the folder {folder}")
    if archived_key is not None and _differs(data.key_file, archived_key):
        found.append(f"a different key in {data.key_file}")
    return found


def _differs(existing: Path, wanted: Path) -> bool:
    return existing.exists() and existing.read_bytes() != wanted.read_bytes()


async def _migrate(data: DataSet, db: Database, revision: str) -> None:
    from alembic.util.exc import CommandError

    try:
        await data.migrate(db, revision)
    except CommandError as exc:
        raise BackupError(
            "backup_revision",
            f"cannot bring the database to revision {revision}: {exc} (is the backup from a "
            "newer Tresen?)",
        ) from None


def _put_sqlite(copy: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    partial = path.with_name(f".{path.name}.restoring")
    shutil.copyfile(copy, partial)
    partial.chmod(0o600)
    partial.replace(path)


def _put_folder(copy: Path, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    if copy.is_dir():
        shutil.copytree(copy, folder)
    else:
        folder.mkdir(parents=True, exist_ok=True)


# --- the commands' shared part -----------------------------------------------------------------


def run_backup(data: DataSet, target: Path, *, with_key: bool) -> None:
    """``tresen relay|gateway backup``: take it, say what is in it, or exit 1 with why not."""
    try:
        manifest = asyncio.run(take_backup(data, target, with_key=with_key))
    except BackupError as exc:
        console.print(f"[red]backup failed ({exc.code}):[/red] {exc.message}", soft_wrap=True)
        raise typer.Exit(1) from None
    size = sum(m.bytes for m in manifest.members)
    console.print(
        f"{data.component} backup written to {target}: {manifest.backend} database at "
        f"revision {manifest.revision}, {len(manifest.members)} files ({size:,} bytes)",
        soft_wrap=True,
    )
    for note in manifest.notes:
        console.print(f"note: {note}", soft_wrap=True)
    if data.key_in_environment:
        console.print(
            f"The key ({data.key_in_environment}) is not in the archive: keep it apart from "
            "the backups.",
            soft_wrap=True,
        )
    elif not with_key:
        console.print(
            f"The key file ({data.key_file.name}) is not in the archive: keep a copy of it "
            "apart from the backups (or pass --with-key).",
            soft_wrap=True,
        )


def run_restore(data: DataSet, source: Path, *, force: bool) -> None:
    """``tresen relay|gateway restore``: restore, migrate and check the key; exit 1 with
    what to do when something is wrong."""
    try:
        manifest, problem = asyncio.run(restore_backup(data, source, force=force))
    except BackupError as exc:
        console.print(f"[red]restore failed ({exc.code}):[/red] {exc.message}", soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(
        f"{data.component} restored from {source} (taken {manifest.created} by Tresen "
        f"{manifest.tresen_version}, revision {manifest.revision}) and migrated",
        soft_wrap=True,
    )
    if problem is not None:
        console.print(
            f"[red]the restored {data.component} cannot open its key (restore_key_missing):"
            f"[/red] {problem}. To start it, {data.where_to_put_the_key}.",
            soft_wrap=True,
        )
        raise typer.Exit(1)

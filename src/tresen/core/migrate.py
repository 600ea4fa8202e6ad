"""Alembic migrations run in process, on a :class:`~tresen.core.db.Database`.

The relay and the gateway each keep their scripts beside their schema; both run them
through :class:`Migrations`, which hands Alembic the open connection.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from tresen.core.db import Database

__all__ = ["Migrations"]


class Migrations:
    def __init__(self, scripts: Path) -> None:
        self.scripts = scripts

    def _config(self, connection: Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.scripts))
        config.attributes["connection"] = connection
        return config

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(self._config()).get_current_head()

    async def upgrade(self, db: Database, revision: str = "head") -> None:
        if db.schema and not db.is_sqlite:
            await db.ensure_schema(db.schema)

        def run(connection: Connection) -> None:
            command.upgrade(self._config(connection), revision)

        async with db.write() as conn:
            await conn.run_sync(run)

    async def current_revision(self, db: Database) -> str | None:
        def read(connection: Connection) -> str | None:
            return MigrationContext.configure(connection).get_current_revision()

        async with db.read() as conn:
            return await conn.run_sync(read)

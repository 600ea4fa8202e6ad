"""Schema migrations of the gateway database (Alembic)."""

from __future__ import annotations

from pathlib import Path

from tresen.core.db import Database
from tresen.core.migrate import Migrations

__all__ = ["current_revision", "head_revision", "upgrade"]

_MIGRATIONS = Migrations(Path(__file__).with_name("migrations"))


def head_revision() -> str | None:
    return _MIGRATIONS.head_revision()


async def upgrade(db: Database, revision: str = "head") -> None:
    await _MIGRATIONS.upgrade(db, revision)


async def current_revision(db: Database) -> str | None:
    return await _MIGRATIONS.current_revision(db)

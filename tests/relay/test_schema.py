"""The migrations create exactly the tables, columns and indexes ``relay/schema.py`` declares."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from support import Backend

from tresen.relay import migrate
from tresen.relay.schema import metadata


async def test_migrations_match_the_declared_schema(backend: Backend) -> None:
    db = backend.database()
    try:
        await migrate.upgrade(db)

        def differences(connection: Any) -> list[Any]:
            context = MigrationContext.configure(connection)
            return list(compare_metadata(context, metadata))

        async with db.read() as conn:
            diff = await conn.run_sync(differences)
        assert diff == []
        assert await migrate.current_revision(db) == migrate.head_revision()
    finally:
        await db.dispose()

"""The gateway's migrations create the subscriber and campaign tables exactly as
``gateway/schema.py`` declares them."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData
from support import Backend

from tresen.gateway import migrate
from tresen.gateway.schema import (
    campaign_recipients,
    campaigns,
    subscriber_imports,
    subscriber_lists,
    subscribers,
)

TABLES = (subscriber_lists, subscribers, subscriber_imports, campaigns, campaign_recipients)


async def test_the_campaign_tables_match_their_declaration(backend: Backend) -> None:
    declared = MetaData(naming_convention=campaigns.metadata.naming_convention)
    for table in TABLES:
        table.to_metadata(declared)
    names = {table.name for table in TABLES}
    db = backend.database()
    try:
        await migrate.upgrade(db)

        def differences(connection: Any) -> list[Any]:
            context = MigrationContext.configure(
                connection,
                opts={"include_name": lambda name, kind, _: kind != "table" or name in names},
            )
            return list(compare_metadata(context, declared))

        async with db.read() as conn:
            diff = await conn.run_sync(differences)
        assert diff == []
        assert await migrate.current_revision(db) == migrate.head_revision()
    finally:
        await db.dispose()

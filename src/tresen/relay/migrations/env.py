"""Alembic environment of the relay; run through :func:`tresen.relay.migrate.upgrade`."""

from __future__ import annotations

from alembic import context

from tresen.relay.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run relay migrations with `tresen relay migrate`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

"""Alembic environment of the gateway; run through :func:`tresen.gateway.migrate.upgrade`."""

from __future__ import annotations

from alembic import context

from tresen.gateway.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("gateway migrations run when `tresen gateway serve` starts")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

"""The gateway's database and storage key, opened without the web application: the command
line's gateway commands (agents, bots, retention, backups) load only this."""

from __future__ import annotations

import os
import secrets

from tresen.core.db import Database
from tresen.crypto.secrets import key_from_env, load_or_create_key_file, seal, unseal
from tresen.gateway import migrate
from tresen.gateway.settings import GatewaySettings
from tresen.gateway.store import get_meta, set_meta

__all__ = ["KEY_ENV", "app_secret", "gateway_database", "gateway_key", "open_database"]

KEY_ENV = "TRESEN_GATEWAY_KEY"
APP_SECRET_CONTEXT = b"gateway-app-secret"


def gateway_key(settings: GatewaySettings) -> bytes:
    """The gateway's 32-byte storage key: ``TRESEN_GATEWAY_KEY``, else the key file."""
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return key_from_env(from_env)
    return load_or_create_key_file(settings.resolved_key_file)


def gateway_database(settings: GatewaySettings) -> Database:
    return Database(
        settings.resolved_database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        schema=settings.database_schema,
    )


async def open_database(settings: GatewaySettings) -> Database:
    """The gateway's database, migrated to the current schema."""
    db = gateway_database(settings)
    try:
        await migrate.upgrade(db)
    except BaseException:
        await db.dispose()
        raise
    return db


async def app_secret(db: Database, key: bytes, configured: str | None) -> str:
    """The app secret that signs webhooks of API-made subscriptions (made once, sealed)."""
    if configured:
        return configured
    async with db.write() as conn:
        sealed = await get_meta(conn, "app_secret")
        if sealed is not None:
            return unseal(key, sealed, context=APP_SECRET_CONTEXT).decode()
        secret = secrets.token_hex(16)
        await set_meta(conn, "app_secret", seal(key, secret.encode(), context=APP_SECRET_CONTEXT))
        return secret

"""Mailbox rules (being written)."""

from __future__ import annotations

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.settings import Limits
from tresen.relay.keys.service import KeyService
from tresen.relay.mailbox.hub import Hub


class MailboxService:
    def __init__(self, db: Database, clock: Clock, limits: Limits, hub: Hub, keys: KeyService) -> None:
        self.db = db

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

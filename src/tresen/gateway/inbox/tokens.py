"""Personal access tokens: an agent's key to the inbox's JSON API, for tools and bots.

A token acts as its agent, with the agent's role, until it is revoked or the agent is
disabled. Only its SHA-256 is kept (the token itself is shown once, when it is made), with a
short hint to tell tokens apart in listings.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.fields import LINE_PATTERN
from tresen.gateway.inbox.agents import Agent, Agents
from tresen.gateway.inbox.i18n import Refused
from tresen.gateway.schema import agent_tokens

__all__ = ["MAX_TOKENS", "PREFIX", "AgentToken", "AgentTokens", "TokenError"]

PREFIX = "tia_"
MAX_TOKENS = 20
"""Active tokens per agent: enough for a few tools, few enough to review on one page."""
MAX_TOKEN_CHARS = 128
_LINE = re.compile(LINE_PATTERN)


class TokenError(Refused):
    """A refused token change, with a sentence for the agent who asked."""


@dataclass(frozen=True, slots=True)
class AgentToken:
    id: int
    agent_id: int
    name: str
    hint: str
    created_ms: int
    last_used_ms: int | None
    revoked_ms: int | None

    @property
    def active(self) -> bool:
        return self.revoked_ms is None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token(row: object) -> AgentToken:
    return AgentToken(
        int(row.id),  # type: ignore[attr-defined]
        int(row.agent_id),  # type: ignore[attr-defined]
        str(row.name),  # type: ignore[attr-defined]
        str(row.hint),  # type: ignore[attr-defined]
        int(row.created_ms),  # type: ignore[attr-defined]
        row.last_used_ms,  # type: ignore[attr-defined]
        row.revoked_ms,  # type: ignore[attr-defined]
    )


class AgentTokens:
    def __init__(self, db: Database, clock: Clock, agents: Agents) -> None:
        self.db = db
        self.clock = clock
        self.agents = agents

    async def create(self, agent_id: int, name: str) -> tuple[AgentToken, str]:
        """A new token of the agent (shown only now) and its listing."""
        name = name.strip()
        if not 1 <= len(name) <= 64 or not _LINE.fullmatch(name):
            raise TokenError("a token's name is 1 to 64 characters on one line")
        agent = await self.agents.get(agent_id)
        if agent is None:
            raise TokenError("there is no agent {id}", id=agent_id)
        if not agent.active:
            raise TokenError("a disabled agent gets no tokens")
        token = PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            active = await conn.scalar(
                select(func.count())
                .select_from(agent_tokens)
                .where(agent_tokens.c.agent_id == agent_id, agent_tokens.c.revoked_ms.is_(None))
            )
            if (active or 0) >= MAX_TOKENS:
                raise TokenError("an agent has at most {n} tokens; revoke one first", n=MAX_TOKENS)
            token_id = await conn.scalar(
                insert(agent_tokens)
                .values(
                    agent_id=agent_id,
                    name=name,
                    token_hash=_hash(token),
                    hint=token[: len(PREFIX) + 6],
                    created_ms=now,
                )
                .returning(agent_tokens.c.id)
            )
        assert token_id is not None
        listed = AgentToken(
            int(token_id), agent_id, name, token[: len(PREFIX) + 6], now, None, None
        )
        return listed, token

    async def of(self, agent_id: int) -> list[AgentToken]:
        """The agent's tokens, active ones first, the newest first."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(agent_tokens)
                .where(agent_tokens.c.agent_id == agent_id)
                .order_by(agent_tokens.c.revoked_ms.is_not(None), agent_tokens.c.id.desc())
                .limit(200)
            )
            return [_token(r) for r in rows]

    async def revoke(self, agent_id: int, token_id: int) -> bool:
        """Revoke one of the agent's own tokens; whether one was active."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(agent_tokens)
                .where(
                    agent_tokens.c.id == token_id,
                    agent_tokens.c.agent_id == agent_id,
                    agent_tokens.c.revoked_ms.is_(None),
                )
                .values(revoked_ms=self.clock.now_ms())
            )
        return bool(result.rowcount)

    async def agent_of(self, token: str) -> tuple[Agent, AgentToken] | None:
        """The active agent a current token acts as, and the token; ``None`` otherwise."""
        if not token.startswith(PREFIX) or len(token) > MAX_TOKEN_CHARS:
            return None
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(agent_tokens).where(
                        agent_tokens.c.token_hash == _hash(token),
                        agent_tokens.c.revoked_ms.is_(None),
                    )
                )
            ).first()
        if row is None:
            return None
        agent = await self.agents.get(int(row.agent_id))
        if agent is None or not agent.active:
            return None
        found = _token(row)
        now = self.clock.now_ms()
        # Written at most once a minute per token, so that reading does not become writing.
        if found.last_used_ms is None or now - found.last_used_ms >= 60_000:
            async with self.db.write() as conn:
                await conn.execute(
                    update(agent_tokens)
                    .where(agent_tokens.c.id == found.id)
                    .values(last_used_ms=now)
                )
        return agent, found

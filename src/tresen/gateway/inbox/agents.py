"""The inbox's people: agents with roles, their passwords, sessions and sign-in throttling.

Passwords are kept only as argon2id hashes (argon2-cffi's defaults, hashed off the event
loop). A session is a random cookie of which only the SHA-256 is stored, with its own CSRF
token; it ends after ``session_max_s``, or ``session_idle_s`` without use, or when its agent
signs out everywhere. Failed sign-ins are counted per user name and per address over
``throttle_window_s``; beyond ``max_failures`` further attempts are refused until the window
passes, whatever the password.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.fields import LINE_PATTERN
from tresen.gateway.inbox.i18n import LANGUAGES, N_, Refused
from tresen.gateway.inbox.roles import Role
from tresen.gateway.schema import agent_sessions, agent_tokens, agents, login_failures

__all__ = [
    "Agent",
    "AgentError",
    "Agents",
    "LoginThrottled",
    "Role",
    "SignedIn",
]

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_LINE = re.compile(LINE_PATTERN)
MIN_PASSWORD = 10
MAX_PASSWORD = 256


class AgentError(Refused):
    """A refused change to the team or a sign-in, with a sentence for the person who asked."""


class LoginThrottled(Refused):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            N_("too many failed sign-ins; try again in {seconds} s"), seconds=retry_after_s
        )
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Agent:
    id: int
    username: str
    display_name: str
    role: Role
    created_ms: int
    disabled_ms: int | None
    language: str = "en"
    available: bool = True

    @property
    def active(self) -> bool:
        return self.disabled_ms is None


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A browser's session: who, and the token its forms must carry."""

    agent: Agent
    csrf: str
    token_hash: str


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _agent(row: object) -> Agent:
    return Agent(
        int(row.id),  # type: ignore[attr-defined]
        str(row.username),  # type: ignore[attr-defined]
        str(row.display_name),  # type: ignore[attr-defined]
        Role(row.role),  # type: ignore[attr-defined]
        int(row.created_ms),  # type: ignore[attr-defined]
        row.disabled_ms,  # type: ignore[attr-defined]
        str(row.language or "en"),  # type: ignore[attr-defined]
        available=getattr(row, "away_ms", None) is None,
    )


class Agents:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        session_max_s: int = 12 * 3600,
        session_idle_s: int = 2 * 3600,
        max_failures: int = 5,
        throttle_window_s: int = 900,
        max_agents: int = 500,
        hasher: PasswordHasher | None = None,
        address_key: bytes | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.session_max_ms = session_max_s * 1000
        self.session_idle_ms = session_idle_s * 1000
        self.max_failures = max_failures
        self.throttle_window_ms = throttle_window_s * 1000
        self.max_agents = max_agents
        self.hasher = hasher or PasswordHasher()
        # Failed sign-ins are counted per address under a keyed hash, so that the table
        # names no address; without the gateway's key, a random one for this process.
        self._address_key = address_key or secrets.token_bytes(32)
        self._decoy: str | None = None

    # --- the team ------------------------------------------------------------------------------

    async def create(self, username: str, display_name: str, role: Role, password: str) -> Agent:
        username = _check_username(username)
        display_name = _check_name(display_name)
        _check_password(password)
        hashed = await asyncio.to_thread(self.hasher.hash, password)
        async with self.db.write() as conn:
            count = (await conn.execute(select(func.count()).select_from(agents))).scalar_one()
            if count >= self.max_agents:
                raise AgentError("a gateway has at most {n} agents", n=self.max_agents)
            taken = await conn.execute(select(agents.c.id).where(agents.c.username == username))
            if taken.first() is not None:
                raise AgentError("the user name {name} is taken", name=username)
            await conn.execute(
                insert(agents).values(
                    username=username,
                    display_name=display_name,
                    role=str(role),
                    password_hash=hashed,
                    created_ms=self.clock.now_ms(),
                )
            )
        agent = await self.by_username(username)
        assert agent is not None
        return agent

    async def all(self) -> list[Agent]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(agents).order_by(agents.c.username))
            return [_agent(r) for r in rows]

    async def by_username(self, username: str) -> Agent | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(agents).where(agents.c.username == username.lower()))
            ).first()
        return None if row is None else _agent(row)

    async def get(self, agent_id: int) -> Agent | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(agents).where(agents.c.id == agent_id))).first()
        return None if row is None else _agent(row)

    async def set_role(self, agent_id: int, role: Role) -> Agent:
        async with self.db.write() as conn:
            agent = await self._existing(conn, agent_id)
            if agent.role is Role.OWNER and role is not Role.OWNER:
                await self._keep_an_owner(conn, agent_id)
            await conn.execute(update(agents).where(agents.c.id == agent_id).values(role=str(role)))
        changed = await self.get(agent_id)
        assert changed is not None
        return changed

    async def disable(self, agent_id: int) -> Agent:
        """Disable an agent: signed out everywhere, their API tokens revoked, and no sign-in
        until enabled again."""
        async with self.db.write() as conn:
            agent = await self._existing(conn, agent_id)
            if agent.role is Role.OWNER:
                await self._keep_an_owner(conn, agent_id)
            await conn.execute(
                update(agents)
                .where(agents.c.id == agent_id, agents.c.disabled_ms.is_(None))
                .values(disabled_ms=self.clock.now_ms())
            )
            await conn.execute(delete(agent_sessions).where(agent_sessions.c.agent_id == agent_id))
            # Their API tokens end too, for good: enabling them again does not revive them.
            await conn.execute(
                update(agent_tokens)
                .where(agent_tokens.c.agent_id == agent_id, agent_tokens.c.revoked_ms.is_(None))
                .values(revoked_ms=self.clock.now_ms())
            )
        changed = await self.get(agent_id)
        assert changed is not None
        return changed

    async def enable(self, agent_id: int) -> Agent:
        async with self.db.write() as conn:
            await self._existing(conn, agent_id)
            await conn.execute(
                update(agents).where(agents.c.id == agent_id).values(disabled_ms=None)
            )
        changed = await self.get(agent_id)
        assert changed is not None
        return changed

    async def set_language(self, agent_id: int, language: str) -> None:
        """The language the agent reads the inbox in (one of ``LANGUAGES``)."""
        if language not in LANGUAGES:
            raise AgentError("choose English or Deutsch")
        async with self.db.write() as conn:
            await self._existing(conn, agent_id)
            await conn.execute(
                update(agents).where(agents.c.id == agent_id).values(language=language)
            )

    async def set_password(self, agent_id: int, password: str) -> None:
        """A new password; every session of the agent ends."""
        _check_password(password)
        hashed = await asyncio.to_thread(self.hasher.hash, password)
        async with self.db.write() as conn:
            await self._existing(conn, agent_id)
            await conn.execute(
                update(agents).where(agents.c.id == agent_id).values(password_hash=hashed)
            )
            await conn.execute(delete(agent_sessions).where(agent_sessions.c.agent_id == agent_id))

    async def _existing(self, conn: AsyncConnection, agent_id: int) -> Agent:
        row = (await conn.execute(select(agents).where(agents.c.id == agent_id))).first()
        if row is None:
            raise AgentError("there is no agent {id}", id=agent_id)
        return _agent(row)

    async def _keep_an_owner(self, conn: AsyncConnection, leaving: int) -> None:
        others = await conn.execute(
            select(func.count())
            .select_from(agents)
            .where(
                agents.c.role == str(Role.OWNER),
                agents.c.disabled_ms.is_(None),
                agents.c.id != leaving,
            )
        )
        if not others.scalar_one():
            raise AgentError("the business needs an owner: make someone else owner first")

    # --- signing in ----------------------------------------------------------------------------

    async def sign_in(self, username: str, password: str, source: str) -> tuple[str, SignedIn]:
        """A new session (its cookie value, and what it holds) for a right name and password.

        Raises ``LoginThrottled`` after too many failures for the name or the address, and
        ``AgentError`` (one sentence for every wrong name or password) otherwise."""
        name = username.strip().lower()[:64]
        keys = [f"user:{name}", f"addr:{self._address(source)}"]
        await self._check_throttle(keys)
        async with self.db.read() as conn:
            row = (await conn.execute(select(agents).where(agents.c.username == name))).first()
        if row is None and self._decoy is None:
            # A hash to verify against when the name is unknown, so that a wrong name takes
            # as long as a wrong password and reveals nothing (made once, off the event loop).
            self._decoy = await asyncio.to_thread(self.hasher.hash, secrets.token_hex(16))
        stored = str(row.password_hash) if row is not None else self._decoy
        assert stored is not None
        try:
            await asyncio.to_thread(self.hasher.verify, stored, password[:MAX_PASSWORD])
            valid = row is not None and row.disabled_ms is None
        except (VerificationError, InvalidHashError):
            valid = False
        if not valid or row is None:
            await self._count_failure(keys)
            raise AgentError("the user name or the password is wrong")
        if self.hasher.check_needs_rehash(stored):
            await self.set_password_hash(
                int(row.id), await asyncio.to_thread(self.hasher.hash, password)
            )
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            await conn.execute(delete(login_failures).where(login_failures.c.key == keys[0]))
            await conn.execute(
                insert(agent_sessions).values(
                    token_hash=_hash_token(token),
                    agent_id=int(row.id),
                    csrf=csrf,
                    created_ms=now,
                    last_seen_ms=now,
                    expires_ms=now + self.session_max_ms,
                )
            )
        return token, SignedIn(_agent(row), csrf, _hash_token(token))

    def _address(self, source: str) -> str:
        return hmac.new(self._address_key, source[:120].encode(), hashlib.sha256).hexdigest()[:32]

    async def check_password(self, username: str, password: str) -> bool:
        """Whether ``password`` is that active agent's (no session, nothing counted)."""
        agent = await self.by_username(username)
        if agent is None or not agent.active:
            return False
        async with self.db.read() as conn:
            stored = (
                await conn.execute(select(agents.c.password_hash).where(agents.c.id == agent.id))
            ).scalar_one()
        try:
            return bool(await asyncio.to_thread(self.hasher.verify, str(stored), password))
        except (VerificationError, InvalidHashError):
            return False

    async def set_password_hash(self, agent_id: int, hashed: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(agents).where(agents.c.id == agent_id).values(password_hash=hashed)
            )

    async def _check_throttle(self, keys: list[str]) -> None:
        now = self.clock.now_ms()
        async with self.db.read() as conn:
            rows = await conn.execute(select(login_failures).where(login_failures.c.key.in_(keys)))
            for row in rows:
                ends = int(row.window_start_ms) + self.throttle_window_ms
                if row.failures >= self.max_failures and ends > now:
                    raise LoginThrottled(max(1, (ends - now + 999) // 1000))

    async def _count_failure(self, keys: list[str]) -> None:
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            for key in keys:
                row = (
                    await conn.execute(select(login_failures).where(login_failures.c.key == key))
                ).first()
                if row is None:
                    await conn.execute(
                        insert(login_failures).values(key=key, failures=1, window_start_ms=now)
                    )
                elif int(row.window_start_ms) + self.throttle_window_ms <= now:
                    await conn.execute(
                        update(login_failures)
                        .where(login_failures.c.key == key)
                        .values(failures=1, window_start_ms=now)
                    )
                else:
                    await conn.execute(
                        update(login_failures)
                        .where(login_failures.c.key == key)
                        .values(failures=login_failures.c.failures + 1)
                    )

    async def session(self, token: str) -> SignedIn | None:
        """The live session of a cookie, touched; ``None`` if it ended (or never was)."""
        if not token or len(token) > 128:
            return None
        token_hash = _hash_token(token)
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            found = (
                await conn.execute(
                    select(agent_sessions).where(agent_sessions.c.token_hash == token_hash)
                )
            ).first()
            if found is None:
                return None
            agent = await self._existing(conn, int(found.agent_id))
            idle = int(found.last_seen_ms) + self.session_idle_ms <= now
            if idle or int(found.expires_ms) <= now or not agent.active:
                await conn.execute(
                    delete(agent_sessions).where(agent_sessions.c.token_hash == token_hash)
                )
                return None
            await conn.execute(
                update(agent_sessions)
                .where(agent_sessions.c.token_hash == token_hash)
                .values(last_seen_ms=now)
            )
        return SignedIn(agent, str(found.csrf), token_hash)

    async def sign_out(self, token_hash: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                delete(agent_sessions).where(agent_sessions.c.token_hash == token_hash)
            )

    async def sign_out_everywhere(self, agent_id: int) -> int:
        async with self.db.write() as conn:
            result = await conn.execute(
                delete(agent_sessions).where(agent_sessions.c.agent_id == agent_id)
            )
        return int(result.rowcount or 0)


def _check_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME.fullmatch(name):
        raise AgentError(
            "a user name is 2 to 64 letters a to z, digits, dots, dashes or underscores, "
            "starting with a letter or digit"
        )
    return name


def _check_name(display_name: str) -> str:
    name = display_name.strip()
    if not 1 <= len(name) <= 128 or not _LINE.fullmatch(name):
        raise AgentError("a display name is 1 to 128 characters on one line")
    return name


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AgentError(
            "a password has {low} to {high} characters", low=MIN_PASSWORD, high=MAX_PASSWORD
        )

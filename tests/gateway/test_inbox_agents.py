"""The inbox's people: agents, roles, passwords kept only as argon2id hashes, sessions that
end, sign-in throttling; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from tresen.core.clock import ManualClock
from tresen.core.db import Database
from tresen.gateway.inbox.agents import AgentError, Agents, LoginThrottled, Role
from tresen.gateway.schema import agent_sessions, agents

# Cheap hashes: the tests are about what is kept and when, not about the cost.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "Korrekt Pferd Batterie"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def team(db: Database, clock: ManualClock) -> Agents:
    return Agents(db, clock, hasher=FAST, session_max_s=3600, session_idle_s=600)


async def test_a_password_is_kept_only_as_an_argon2id_hash(team: Agents, db: Database) -> None:
    owner = await team.create("Anna", "Anna Schmidt", Role.OWNER, PASSWORD)
    assert (owner.username, owner.role, owner.active) == ("anna", Role.OWNER, True)
    async with db.read() as conn:
        stored = (await conn.execute(select(agents.c.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored

    with pytest.raises(AgentError, match="taken"):
        await team.create("anna", "Another Anna", Role.AGENT, PASSWORD)
    for bad in ("a", "Anna Schmidt", "anna\x00", "x" * 65):
        with pytest.raises(AgentError, match="user name"):
            await team.create(bad, "Name", Role.AGENT, PASSWORD)
    with pytest.raises(AgentError, match="password"):
        await team.create("ben", "Ben", Role.AGENT, "short")
    with pytest.raises(AgentError, match="display name"):
        await team.create("ben", "Ben\nMüller", Role.AGENT, PASSWORD)


async def test_signing_in_makes_a_session_that_ends(
    team: Agents, db: Database, clock: ManualClock
) -> None:
    await team.create("anna", "Anna", Role.OWNER, PASSWORD)
    cookie, signed_in = await team.sign_in("Anna", PASSWORD, "127.0.0.1")
    assert signed_in.agent.username == "anna"
    assert len(signed_in.csrf) >= 32
    async with db.read() as conn:
        [kept] = (await conn.execute(select(agent_sessions.c.token_hash))).scalars().all()
    assert cookie not in kept  # only its hash is stored

    assert (await team.session(cookie)) is not None
    clock.advance(seconds=599)
    assert (await team.session(cookie)) is not None  # in use: the idle time starts again
    clock.advance(seconds=600)
    assert await team.session(cookie) is None  # idle too long
    assert await team.session("not a session") is None

    cookie, _ = await team.sign_in("anna", PASSWORD, "127.0.0.1")
    for _ in range(7):
        clock.advance(seconds=500)
        assert await team.session(cookie) is not None
    clock.advance(seconds=500)
    assert await team.session(cookie) is None  # an hour at most, however busy


async def test_signing_out_everywhere_and_disabling_end_every_session(team: Agents) -> None:
    anna = await team.create("anna", "Anna", Role.OWNER, PASSWORD)
    ben = await team.create("ben", "Ben", Role.AGENT, PASSWORD)
    laptop, _ = await team.sign_in("anna", PASSWORD, "10.0.0.1")
    phone, _ = await team.sign_in("anna", PASSWORD, "10.0.0.2")
    bens, _ = await team.sign_in("ben", PASSWORD, "10.0.0.3")

    assert await team.sign_out_everywhere(anna.id) == 2
    assert await team.session(laptop) is None
    assert await team.session(phone) is None
    assert await team.session(bens) is not None

    await team.disable(ben.id)
    assert await team.session(bens) is None
    with pytest.raises(AgentError, match="wrong"):
        await team.sign_in("ben", PASSWORD, "10.0.0.3")
    await team.enable(ben.id)
    await team.sign_in("ben", PASSWORD, "10.0.0.3")

    await team.set_password(ben.id, "ein ganz neues Passwort")
    with pytest.raises(AgentError, match="wrong"):
        await team.sign_in("ben", PASSWORD, "10.0.0.3")


async def test_the_business_always_keeps_an_owner(team: Agents) -> None:
    anna = await team.create("anna", "Anna", Role.OWNER, PASSWORD)
    ben = await team.create("ben", "Ben", Role.ADMIN, PASSWORD)
    with pytest.raises(AgentError, match="needs an owner"):
        await team.set_role(anna.id, Role.AGENT)
    with pytest.raises(AgentError, match="needs an owner"):
        await team.disable(anna.id)
    await team.set_role(ben.id, Role.OWNER)
    assert (await team.set_role(anna.id, Role.AGENT)).role is Role.AGENT
    assert Role.ADMIN.manages
    assert not Role.AGENT.manages


async def test_failed_sign_ins_are_throttled_per_name_and_per_address(
    team: Agents, clock: ManualClock
) -> None:
    await team.create("anna", "Anna", Role.OWNER, PASSWORD)
    for _ in range(5):
        with pytest.raises(AgentError, match="the user name or the password is wrong"):
            await team.sign_in("anna", "guess guess guess", "10.0.0.9")
    # Now even the right password is refused, from anywhere, until the window passes.
    with pytest.raises(LoginThrottled) as throttled:
        await team.sign_in("anna", PASSWORD, "10.0.0.1")
    assert 1 <= throttled.value.retry_after_s <= 900
    # The guessing address is held back for other names too.
    with pytest.raises(LoginThrottled):
        await team.sign_in("ben", "whatever whatever", "10.0.0.9")
    # An unknown name fails like a wrong password.
    with pytest.raises(AgentError, match="the user name or the password is wrong"):
        await team.sign_in("nobody", PASSWORD, "10.0.0.2")

    clock.advance(seconds=901)
    cookie, _ = await team.sign_in("anna", PASSWORD, "10.0.0.1")
    assert await team.session(cookie) is not None

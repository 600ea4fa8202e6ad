"""``tresen gateway agents token``: an agent's personal access tokens for the inbox's JSON
API, made (shown once), listed and revoked from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from tresen.core.clock import SystemClock
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import Agents
from tresen.gateway.inbox.tokens import AgentTokens
from tresen.gateway.schema import agent_tokens
from tresen.gateway.settings import GatewaySettings

pytestmark = pytest.mark.slow


def agents(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "tresen", "gateway", "agents", *args, "--data-dir", str(data_dir)],
        env={k: v for k, v in os.environ.items() if not k.startswith("TRESEN_GATEWAY")},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


async def test_create_list_and_revoke_a_token(tmp_path: Path) -> None:
    folder = tmp_path / "gateway"
    added = agents(
        folder, "add", "cem", "--name", "Cem", "--password-stdin", stdin="Korrekt Pferd Batterie\n"
    )
    assert added.returncode == 0, added.stderr

    made = agents(folder, "token", "create", "cem", "--name", "Support-Bot")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("tia_")
    unknown = agents(folder, "token", "create", "nobody")
    assert (unknown.returncode, "there is no agent nobody" in unknown.stdout) == (1, True)

    listed = agents(folder, "token", "list", "cem")
    assert listed.returncode == 0
    assert "Support-Bot" in listed.stdout
    assert token[:10] in listed.stdout  # its hint
    assert token not in listed.stdout  # never the token itself

    db = await open_database(GatewaySettings(data_dir=folder))
    try:
        team = Agents(db, SystemClock())
        tokens = AgentTokens(db, SystemClock(), team)
        found = await tokens.agent_of(token)
        assert found is not None
        assert found[0].username == "cem"
        async with db.read() as conn:
            stored = (await conn.execute(select(agent_tokens.c.token_hash))).scalar_one()
        assert token not in stored  # only its SHA-256

        token_id = str(found[1].id)
        revoked = agents(folder, "token", "revoke", "cem", token_id)
        assert revoked.returncode == 0, revoked.stdout
        assert await tokens.agent_of(token) is None
        again = agents(folder, "token", "revoke", "cem", token_id)
        assert again.returncode == 1
        assert "no active token" in again.stdout
    finally:
        await db.dispose()

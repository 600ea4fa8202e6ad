"""``tresen gateway agents``: the inbox's people managed from the command line, on the
gateway's own database (no relay needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tresen.core.clock import SystemClock
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import AgentError, Agents
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


async def test_add_list_role_disable_and_password(tmp_path: Path) -> None:
    folder = tmp_path / "gateway"
    added = agents(
        folder,
        "add",
        "Anna",
        "--name",
        "Anna Schmidt",
        "--role",
        "owner",
        "--password-stdin",
        stdin="Korrekt Pferd Batterie\n",
    )
    assert added.returncode == 0, added.stderr
    assert "Added anna (Anna Schmidt) as owner." in added.stdout
    ok = agents(
        folder, "add", "ben", "--name", "Ben", "--password-stdin", stdin="noch ein Passwort\n"
    )
    assert ok.returncode == 0, ok.stderr

    listed = agents(folder, "list")
    assert listed.returncode == 0
    assert "anna" in listed.stdout
    assert "owner" in listed.stdout
    assert "ben" in listed.stdout
    assert "agent" in listed.stdout

    last_owner = agents(folder, "role", "anna", "agent")
    assert last_owner.returncode == 1
    assert "needs an owner" in last_owner.stdout
    assert agents(folder, "role", "ben", "admin").returncode == 0
    assert agents(folder, "disable", "ben").returncode == 0
    short = agents(folder, "password", "anna", "--password-stdin", stdin="kurz\n")
    assert short.returncode == 1
    assert "10 to 256 characters" in short.stdout
    assert (
        agents(
            folder, "password", "anna", "--password-stdin", stdin="ganz neu und lang\n"
        ).returncode
        == 0
    )
    unknown = agents(folder, "disable", "nobody")
    assert (unknown.returncode, "there is no agent nobody" in unknown.stdout) == (1, True)

    # What the inbox will see: the new password signs in, the disabled agent cannot.
    db = await open_database(GatewaySettings(data_dir=folder))
    try:
        team = Agents(db, SystemClock())
        await team.sign_in("anna", "ganz neu und lang", "127.0.0.1")
        with pytest.raises(AgentError):
            await team.sign_in("ben", "noch ein Passwort", "127.0.0.1")
    finally:
        await db.dispose()

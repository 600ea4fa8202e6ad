"""The deployment files (deploy/) name commands, options, settings and routes that exist, so
that they cannot silently rot when the code changes."""

from __future__ import annotations

import asyncio
import json
import runpy
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from support import Backend, serve_relay
from typer.testing import CliRunner

from tresen.cli.main import app as cli
from tresen.core.settings import FileSettings, Settings
from tresen.gateway.settings import GatewaySettings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
INSTALLED = "/opt/tresen/bin/tresen"
UNITS = {
    "tresen-relay.service": (Settings, "TRESEN_"),
    "tresen-gateway.service": (GatewaySettings, "TRESEN_GATEWAY_"),
}


def unit(name: str) -> dict[str, list[str]]:
    """``[Service]`` of a unit file: each key with all its values, in order (systemd allows
    a key more than once)."""
    service: dict[str, list[str]] = {}
    section = ""
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            service.setdefault(key, []).append(value)
    return service


def assert_cli_accepts(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, (args, result.output)


def assert_setting_exists(variable: str, settings: type[FileSettings], prefix: str) -> None:
    if variable == settings.config_env:
        return
    assert variable.startswith(prefix), variable
    path = variable.removeprefix(prefix).lower().split("__")
    model: Any = settings
    for part in path:
        assert part in model.model_fields, f"{variable}: no setting {part}"
        model = model.model_fields[part].annotation


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_units_run_existing_commands_with_existing_settings(name: str) -> None:
    service = unit(name)
    commands = service.get("ExecStartPre", []) + service["ExecStart"]
    for line in commands:
        program, *args = shlex.split(line)
        assert program == INSTALLED, line
        assert_cli_accepts(args)
    settings, prefix = UNITS[name]
    for assignment in service["Environment"]:
        variable = assignment.split("=", 1)[0]
        if variable != "PYTHONUNBUFFERED":
            assert_setting_exists(variable, settings, prefix)
    # Hardened: no privileges, the file system read-only but for the state folder.
    assert service["DynamicUser"] == ["yes"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["StateDirectory"]
    assert service["CapabilityBoundingSet"] == [""]


def containerfile() -> list[tuple[str, str]]:
    """The instructions of the runtime stage, continuation lines joined."""
    text = (DEPLOY / "Containerfile").read_text().replace("\\\n", " ")
    stages = text.split("\nFROM ")
    instructions = []
    for line in stages[-1].splitlines()[1:]:
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword, rest.strip()))
    return instructions


async def test_the_container_runs_existing_commands_and_checks_readiness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instructions = containerfile()
    found = dict(instructions)
    entrypoint, command = json.loads(found["ENTRYPOINT"]), json.loads(found["CMD"])
    assert entrypoint == ["tresen"]
    assert_cli_accepts(command)
    assert_cli_accepts(["gateway", "serve"])  # the same image, as the header shows
    for assignment in shlex.split(found["ENV"]):
        variable = assignment.split("=", 1)[0]
        if variable.startswith("TRESEN_GATEWAY_"):
            assert_setting_exists(variable, GatewaySettings, "TRESEN_GATEWAY_")
        elif variable.startswith("TRESEN_"):
            assert_setting_exists(variable, Settings, "TRESEN_")
    assert found["USER"] == "tresen"

    # The health check's program and URL: run against a relay, it reports it ready.
    healthcheck = json.loads(found["HEALTHCHECK"].split(" CMD ", 1)[1])
    program, url = healthcheck
    copied = next(rest for kw, rest in instructions if kw == "COPY" and program in rest)
    script = DEPLOY.parent / copied.split()[-2]
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    async with serve_relay(backend, tmp_path) as relay:
        path = url.split("8470", 1)[1]
        monkeypatch.setattr(sys, "argv", [program, relay.url + path])
        # In a thread: the script blocks on its request to the relay in this event loop.
        assert await asyncio.to_thread(exit_code_of, script) == 0


def exit_code_of(script: Path) -> object:
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return exc.code
    return None


def test_the_proxy_upgrades_websockets_and_hides_the_metrics() -> None:
    conf = (DEPLOY / "nginx" / "tresen.conf").read_text()
    assert "location = /v1/ws" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert conf.count("location = /metrics { return 404; }") == 2

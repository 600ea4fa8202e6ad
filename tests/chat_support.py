"""Test support for ``tresen chat`` in child processes: running its commands, and the
registered data folders they work on."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import RelayProcess, registered_client

from tresen.relay.accounts.sms import read_last_code

# The child processes get no client settings from whoever runs the tests.
ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("TRESEN_CLIENT_KEY", "TRESEN_CHAT_DIR", "TRESEN_RELAY_URL")
}


def chat(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tresen", "chat", *args, "--data-dir", str(data_dir)],
        env=ENV,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
    )


def popen_chat(data_dir: Path, *args: str, stdin: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tresen", "chat", *args, "--data-dir", str(data_dir)],
        env=ENV,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_code(sms_file: Path, phone: str) -> str:
    """The code the relay texted to ``phone``, once the other process requested it."""
    deadline = time.monotonic() + 60
    while (code := read_last_code(sms_file, phone)) is None:
        assert time.monotonic() < deadline, f"no code was sent to {phone}"
        time.sleep(0.05)
    return code


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


async def register(relay: RelayProcess, data_dir: Path, phone: str) -> str:
    """Register ``data_dir`` with the SDK (faster than the CLI); returns the account id."""
    client = await registered_client(relay.url, relay.sms_file, data_dir, phone)
    account_id = client.account_id
    await client.close()
    assert account_id is not None
    return account_id


def holds_folder(process: subprocess.Popen[str], data_dir: Path) -> None:
    """Wait until ``process`` has opened ``data_dir`` (its lock file names it)."""
    deadline = time.monotonic() + 60
    lock = data_dir / "lock"
    while not (lock.exists() and f"process {process.pid} " in lock.read_text()):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the listener never opened its data folder"
        time.sleep(0.05)


def wait_for_socket(process: subprocess.Popen[str], data_dir: Path) -> None:
    """Wait until ``process`` listens for handed-over sends."""
    deadline = time.monotonic() + 60
    while not (data_dir / "app.sock").exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the process never listened for hand-offs"


@dataclass(frozen=True)
class Ran:
    """What a ``tresen chat`` child process did."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> str:
        assert self.returncode == 0, self.stdout + self.stderr
        assert "Traceback" not in self.stderr
        return self.stdout

    def records(self) -> list[dict[str, Any]]:
        """The JSON lines it printed (it must have succeeded)."""
        return [json.loads(line) for line in self.ok.splitlines() if line.strip()]


async def run_chat(data_dir: Path, *args: str) -> Ran:
    """``tresen chat …`` in a child process, awaited: a relay in this process keeps serving."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tresen",
        "chat",
        *args,
        "--data-dir",
        str(data_dir),
        env=ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())

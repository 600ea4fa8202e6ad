"""Registering with ``tresen chat register`` and in the app: a wrong code is asked for again
(no new code needed), and a registration that fails or is interrupted leaves no half-made
data folder. Child processes (and the app, headless) against a relay in this process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from chat_support import ENV
from support import Backend, RunningRelay, serve_relay
from textual.pilot import Pilot
from textual.widgets import Input, Static

from tresen.cli.chat.messages import run_app
from tresen.cli.chat.runner import Where
from tresen.client import Client
from tresen.client.tui import ChatApp, RegisterScreen
from tresen.relay.accounts.sms import read_last_code

pytestmark = pytest.mark.slow


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[RunningRelay]:
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    async with serve_relay(backend, tmp_path) as running:
        yield running


@dataclass
class Registering:
    """``tresen chat register`` in a child process, answering its prompt for the code."""

    process: asyncio.subprocess.Process
    said: str = ""

    async def until_said(self, text: str) -> None:
        assert self.process.stderr is not None
        while text not in self.said:
            chunk = await asyncio.wait_for(self.process.stderr.read(256), 60)
            assert chunk, f"the command ended before saying {text!r}: {self.said}"
            self.said += chunk.decode()
        self.said = self.said[self.said.index(text) + len(text) :]

    async def answer(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def finish(self) -> tuple[int, str, str]:
        if self.process.stdin is not None:
            self.process.stdin.close()
        out, errors = await asyncio.wait_for(self.process.communicate(), 90)
        assert self.process.returncode is not None
        return self.process.returncode, out.decode(), self.said + errors.decode()


async def register(folder: Path, *args: str) -> Registering:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tresen",
        "chat",
        "register",
        *args,
        "--data-dir",
        str(folder),
        env=ENV,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Registering(process)


def other_than(code: str) -> str:
    return "000000" if code != "000000" else "111111"


async def test_a_wrong_code_is_asked_for_again(relay: RunningRelay, tmp_path: Path) -> None:
    phone = relay.next_phone()
    folder = tmp_path / "new" / "alice"
    registering = await register(folder, "--phone", phone, "--relay", relay.url)
    await registering.until_said(f"Code sent to {phone}")
    code = read_last_code(relay.sms_file, phone)
    assert code is not None
    await registering.answer(other_than(code))
    await registering.until_said("That code is not correct; type it again (2 tries left).")
    await registering.until_said(f"Code sent to {phone}")
    await registering.answer(code)  # the same code: no new one was needed
    returncode, out, errors = await registering.finish()
    assert returncode == 0, errors
    assert f"Registered {phone}: account" in out
    assert read_last_code(relay.sms_file, phone) == code
    assert (folder / "client.db").exists()


async def test_no_half_made_folder_is_left_behind(relay: RunningRelay, tmp_path: Path) -> None:
    phone = relay.next_phone()
    # Three wrong codes: the command gives up, and the folder it made goes again.
    folder = tmp_path / "made" / "chat"
    registering = await register(folder, "--phone", phone, "--relay", relay.url)
    await registering.until_said(f"Code sent to {phone}")
    code = read_last_code(relay.sms_file, phone)
    assert code is not None
    for left in ("2 tries left", "1 try left", None):
        await registering.answer(other_than(code))
        if left is not None:
            await registering.until_said(left)
            await registering.until_said("Code sent to")
    returncode, _, errors = await registering.finish()
    assert returncode == 1
    assert "the relay refused: the code is not correct (code 150011)" in errors
    assert not (tmp_path / "made").exists()

    # Interrupted at the prompt (no answer comes): nothing stays either.
    phone = relay.next_phone()
    registering = await register(folder, "--phone", phone, "--relay", relay.url)
    await registering.until_said(f"Code sent to {phone}")
    returncode, _, errors = await registering.finish()
    assert returncode != 0
    assert "Traceback" not in errors
    assert not (tmp_path / "made").exists()

    # An empty folder is left empty; the relay cannot be reached.
    empty = tmp_path / "empty"
    empty.mkdir()
    unreachable = await register(empty, "--phone", phone, "--relay", "http://127.0.0.1:1")
    returncode, _, errors = await unreachable.finish()
    assert returncode == 1
    assert "cannot reach the relay" in errors
    assert list(empty.iterdir()) == []

    # A folder that held anything before is never removed.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    unreachable = await register(mine, "--phone", phone, "--relay", "http://127.0.0.1:1")
    returncode, _, _ = await unreachable.finish()
    assert returncode == 1
    assert (mine / "notes.txt").read_text() == "keep me"


# --- the app ---------------------------------------------------------------------------------


async def until(pilot: Pilot[None], condition: Callable[[], object], timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the app never got there"
        await pilot.pause(0.05)


def text_of(widget: Static) -> str:
    return str(widget.visual)


async def test_the_app_asks_again_for_a_wrong_code(relay: RunningRelay, tmp_path: Path) -> None:
    phone = relay.next_phone()
    client = Client.open(tmp_path / "alice", relay.url)
    try:
        app = ChatApp(client, device_name="laptop")
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press(*phone, "enter")
            code_field = app.screen.query_one("#code", Input)
            await until(pilot, lambda: not code_field.disabled)
            code = read_last_code(relay.sms_file, phone)
            assert code is not None
            await pilot.press(*other_than(code), "enter")
            error = app.screen.query_one("#register-error", Static)
            await until(pilot, lambda: "type it again (2 tries left)" in text_of(error))
            assert not code_field.disabled
            assert code_field.value == ""
            await pilot.press(*code, "enter")
            await until(pilot, lambda: app.model.connected)
            assert client.registered
    finally:
        await client.close()


async def test_leaving_the_app_unregistered_takes_the_new_folder_away(
    relay: RunningRelay, tmp_path: Path
) -> None:
    async def leave_at_the_registration(client: Client) -> None:
        app = ChatApp(client)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, RegisterScreen))
            await pilot.press("ctrl+q")

    folder = tmp_path / "share" / "alice"
    await run_app(Where(folder, relay.url), leave_at_the_registration)
    assert not (tmp_path / "share").exists()

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("keep me")
    await run_app(Where(kept, relay.url), leave_at_the_registration)
    assert (kept / "notes.txt").exists()
    assert (kept / "client.db").exists()  # held something before: left as it is

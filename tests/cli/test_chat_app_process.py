"""The terminal app in its own process, in a terminal of 130 by 40, while a script runs
``tresen chat send`` on the same data folder: the send goes out through the app, and the
conversation with the business goes on (it answers every message)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from chat_support import ENV, chat, json_lines, register, wait_for_socket
from support import RelayProcess, registered_client

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.client.store import MessageStatus
from tresen.wire.e2e import Text, decode_payload

pytestmark = pytest.mark.slow

CUSTOMER = "+4915130000011"
SHOP = "+4915130000012"


class Terminal:
    """``tresen chat`` (the app) on a pseudo-terminal of ``columns`` by ``rows``."""

    def __init__(self, data_dir: Path, columns: int = 130, rows: int = 40) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.master = master
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tresen", "chat", "--data-dir", str(data_dir)],
            env=ENV | {"TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.screen = bytearray()
        # Read all the app draws, so that it never blocks on a full terminal.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.screen.extend(chunk)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def quit(self) -> int:
        self.type("/quit\r")
        try:
            code = self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            os.close(self.master)
        return code


def stored_answers(db: Path, chat: str) -> int:
    """Messages the app stored as received from ``chat`` (read beside it, as SQLite allows)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM messages WHERE chat = ? AND outgoing = 0", (chat,)
        ).fetchone()
    return int(row[0])


async def echo_shop(shop: Client, answered: list[str]) -> None:
    """The business: answers every text it reads."""
    async for event in shop.events():
        if isinstance(event, MessageEvent) and not event.outgoing:
            assert isinstance(event.payload, Text)
            answered.append(event.payload.text)
            await shop.send_text(event.chat, f"Ihre Nachricht „{event.payload.text}“ ist da.")


async def test_a_script_sends_through_the_open_app_and_the_business_answers(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    await relay_process.start()
    folder = tmp_path / "customer"
    await register(relay_process, folder, CUSTOMER)
    shop = await registered_client(
        relay_process.url, relay_process.sms_file, tmp_path / "shop", SHOP
    )
    shop.start()
    answered: list[str] = []
    responder = asyncio.create_task(echo_shop(shop, answered))

    app = Terminal(folder)
    try:
        await asyncio.to_thread(wait_for_socket, app.process, folder)  # type: ignore[arg-type]
        for text in ("Wann kommt mein Paket?", "Und die Rechnung?"):
            sent = await asyncio.to_thread(
                chat, folder, "send", "--to", SHOP, "--text", text, "--json"
            )
            assert sent.returncode == 0, sent.stderr
            assert "Sent through the app" in sent.stderr
            assert json_lines(sent.stdout)[0]["message_id"]
        deadline = time.monotonic() + 60
        while len(answered) < 2:
            assert time.monotonic() < deadline, "the business never read the second message"
            await asyncio.sleep(0.05)
        assert answered == ["Wann kommt mein Paket?", "Und die Rechnung?"]
        # The app reads both answers: wait until it stored them, then close it.
        db = folder / "client.db"
        while stored_answers(db, shop.account_id or "") < 2:
            assert time.monotonic() < deadline, "the app never stored the answers"
            await asyncio.sleep(0.05)
    finally:
        code = await asyncio.to_thread(app.quit)
        responder.cancel()
    assert code == 0
    assert db.exists()

    # The customer's store holds both answers, decrypted: the sessions stayed whole.
    customer = Client.open(folder)
    try:
        texts = []
        for message in customer.store.messages(shop.account_id or ""):
            if not message.outgoing and message.payload is not None:
                assert message.status in (MessageStatus.RECEIVED, MessageStatus.SEEN)
                payload = decode_payload(message.payload)
                assert isinstance(payload, Text)
                texts.append(payload.text)
        assert texts == [
            "Ihre Nachricht „Wann kommt mein Paket?“ ist da.",
            "Ihre Nachricht „Und die Rechnung?“ ist da.",
        ]
    finally:
        await customer.close()
        await shop.close()

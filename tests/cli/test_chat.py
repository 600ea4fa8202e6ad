"""``tresen chat`` as a script uses it: real processes against a real relay process.

Registration needs the code the relay "texts" (here: writes to its SMS file). Two ways are
covered: ``register --phone`` prompting for the code, answered on standard input once the
code is in the SMS file, and ``register --request-only`` followed by ``register --code``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import vodozemac
from chat_support import (
    ENV,
    chat,
    holds_folder,
    json_lines,
    popen_chat,
    register,
    wait_for_code,
    wait_for_socket,
)
from support import RelayProcess

from tresen.relay.accounts.sms import read_last_code

pytestmark = pytest.mark.slow

ALICE = "+4915130000001"
BOB = "+4915130000002"
NOBODY = "+4915139999999"


async def test_register_send_and_listen(relay_process: RelayProcess, tmp_path: Path) -> None:
    await relay_process.start()
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"

    # Alice registers interactively: the command requests the code and asks for it.
    process = popen_chat(
        alice_dir, "register", "--phone", ALICE, "--relay", relay_process.url, stdin=True
    )
    code = wait_for_code(relay_process.sms_file, ALICE)
    out, errors = process.communicate(code + "\n", timeout=90)
    assert process.returncode == 0, errors
    assert "Registered +4915130000001: account" in out
    assert "device 1" in out

    # Bob in two steps; the relay URL is remembered from the first.
    requested = chat(
        bob_dir, "register", "--phone", BOB, "--request-only", "--relay", relay_process.url
    )
    assert requested.returncode == 0, requested.stderr
    assert "A code was sent" in requested.stderr
    code = read_last_code(relay_process.sms_file, BOB)
    assert code is not None
    registered = chat(bob_dir, "register", "--phone", BOB, "--code", code, "--json")
    assert registered.returncode == 0, registered.stderr
    bob = json.loads(registered.stdout)
    assert bob["phone"] == BOB
    assert bob["device_id"] == 1

    sent = chat(alice_dir, "send", "--to", BOB, "--text", "Grüß dich, Bob", "--json")
    assert sent.returncode == 0, sent.stderr
    message = json.loads(sent.stdout)
    assert message["chat"] == bob["account_id"]
    assert message["server_ms"] > 0

    listened = chat(bob_dir, "listen", "--json", "--count", "1", "--timeout", "60")
    assert listened.returncode == 0, listened.stderr
    [received] = [e for e in json_lines(listened.stdout) if e["event"] == "message"]
    assert received["message_id"] == message["message_id"]
    assert received["text"] == "Grüß dich, Bob"
    assert received["from"] == ALICE
    assert received["outgoing"] is False

    # Alice's listener sees the delivered tick, and stops cleanly on Ctrl+C.
    listener = popen_chat(alice_dir, "listen", "--json")
    assert listener.stdout is not None
    for line in listener.stdout:
        event = json.loads(line)
        if event["event"] == "status" and event["message_id"] == message["message_id"]:
            assert event["status"] == "delivered"
            break
    listener.send_signal(signal.SIGINT)
    _, errors = listener.communicate(timeout=30)
    assert listener.returncode == 0
    assert "Traceback" not in errors

    human = chat(alice_dir, "send", "--to", BOB, "--text", "plain output")
    assert human.returncode == 0, human.stderr
    assert len(human.stdout.strip()) > 0
    listened = chat(bob_dir, "listen", "--count", "1", "--timeout", "60")
    assert listened.returncode == 0, listened.stderr
    assert f"{ALICE} → plain output" in listened.stdout


async def test_errors_are_explained_without_a_traceback(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    await relay_process.start()

    unregistered = chat(tmp_path / "new", "send", "--to", BOB, "--text", "hi")
    assert unregistered.returncode == 1
    assert "tresen chat register" in unregistered.stderr
    assert not (tmp_path / "new").exists()  # nothing was created on the way

    no_relay = chat(tmp_path / "new", "register", "--phone", ALICE)
    assert no_relay.returncode == 1
    assert "--relay" in no_relay.stderr

    unreachable = chat(
        tmp_path / "elsewhere", "register", "--phone", ALICE, "--relay", "http://127.0.0.1:1"
    )
    assert unreachable.returncode == 1
    assert "cannot reach the relay" in unreachable.stderr

    alice_dir = tmp_path / "alice"
    await register(relay_process, alice_dir, ALICE)
    unknown = chat(alice_dir, "send", "--to", NOBODY, "--text", "anyone?")
    assert unknown.returncode == 1
    assert "no account is registered for this number" in unknown.stderr
    assert "131026" in unknown.stderr

    wrong_key = subprocess.run(
        [sys.executable, "-m", "tresen", "chat", "send", "--to", BOB, "--text", "hi"],
        env={**ENV, "TRESEN_CLIENT_KEY": "ab" * 32, "TRESEN_CHAT_DIR": str(alice_dir)},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert wrong_key.returncode == 1
    assert f"cannot open the data in {alice_dir}" in wrong_key.stderr

    again = chat(alice_dir, "register", "--phone", ALICE, "--code", "123456")
    assert again.returncode == 1
    assert "already holds device 1" in again.stderr

    bob_dir = tmp_path / "bob"
    assert (
        chat(
            bob_dir, "register", "--phone", BOB, "--request-only", "--relay", relay_process.url
        ).returncode
        == 0
    )
    right = read_last_code(relay_process.sms_file, BOB)
    wrong = "000000" if right != "000000" else "111111"
    refused = chat(bob_dir, "register", "--phone", BOB, "--code", wrong)
    assert refused.returncode == 1
    assert "the relay refused" in refused.stderr
    assert "(code 150011)" in refused.stderr

    for result in (unregistered, no_relay, unreachable, unknown, wrong_key, again, refused):
        assert "Traceback" not in result.stderr + result.stdout


async def test_changed_identity_keys_stop_sending_until_trusted(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    await relay_process.start()
    alice_dir = tmp_path / "alice"
    await register(relay_process, alice_dir, ALICE)
    bob_account = await register(relay_process, tmp_path / "bob", BOB)
    assert chat(alice_dir, "send", "--to", BOB, "--text", "hello").returncode == 0
    before = chat(alice_dir, "safety", "--with", BOB)
    assert before.returncode == 0, before.stderr
    digits = before.stdout.split()
    assert len(digits) == 12
    assert all(len(group) == 5 and group.isdigit() for group in digits)

    impostor = vodozemac.Account()
    await relay_process.replace_identity_keys(
        bob_account, 1, impostor.curve25519_key.to_base64(), impostor.ed25519_key.to_base64()
    )
    blocked = chat(alice_dir, "send", "--to", BOB, "--text", "are you still you?")
    assert blocked.returncode == 3
    assert "nothing was sent" in blocked.stderr
    assert f"tresen chat trust --with {BOB}" in blocked.stderr

    after = chat(alice_dir, "safety", "--with", BOB)
    assert after.returncode == 0
    assert after.stdout != before.stdout
    assert "changed" in after.stderr

    stale = chat(alice_dir, "trust", "--with", BOB, "--expect", before.stdout.strip())
    assert stale.returncode == 1
    assert "nothing was trusted" in stale.stderr
    trusted = chat(alice_dir, "trust", "--with", BOB, "--expect", after.stdout.strip())
    assert trusted.returncode == 0, trusted.stderr
    assert "Accepted the new security keys" in trusted.stdout
    # No longer blocked: the keys are now checked against the accepted identity, and the
    # impostor never signed the one-time keys the relay still hands out.
    resumed = chat(alice_dir, "send", "--to", BOB, "--text", "trusting you")
    assert resumed.returncode == 1
    assert "end-to-end encryption refused" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    unchanged = chat(alice_dir, "trust", "--with", BOB)
    assert "nothing to accept" in unchanged.stdout


def test_help_lists_the_chat_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tresen", "chat", "--help"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for command in ("open", "register", "send", "listen", "safety", "trust"):
        assert command in result.stdout


async def test_a_second_process_on_a_data_folder_hands_its_send_to_the_owner(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    await relay_process.start()
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    await register(relay_process, alice_dir, ALICE)
    await register(relay_process, bob_dir, BOB)

    listener = popen_chat(alice_dir, "listen", "--json")
    assert listener.stdout is not None
    holds_folder(listener, alice_dir)
    wait_for_socket(listener, alice_dir)

    # A second process never opens Alice's sessions beside the listener's: its send goes
    # out through the listener.
    handed = chat(alice_dir, "send", "--to", BOB, "--text", "from a second process", "--json")
    assert handed.returncode == 0, handed.stderr
    assert "Sent through the app" in handed.stderr
    [record] = json_lines(handed.stdout)
    # Other commands are refused with the holder's name, never run beside it.
    refused = chat(alice_dir, "chats")
    assert refused.returncode == 1
    assert f"is in use by process {listener.pid} (" in refused.stderr
    assert "close it first" in refused.stderr
    assert "Traceback" not in refused.stderr

    listened = chat(bob_dir, "listen", "--json", "--count", "1", "--timeout", "60")
    assert listened.returncode == 0, listened.stderr
    [received] = [e for e in json_lines(listened.stdout) if e["event"] == "message"]
    assert (received["text"], received["message_id"]) == (
        "from a second process",
        record["message_id"],
    )

    # The conversation goes on in the process that owns the folder ...
    assert chat(bob_dir, "send", "--to", ALICE, "--text", "still there?").returncode == 0
    for line in listener.stdout:
        event = json.loads(line)
        if event["event"] == "message" and not event.get("outgoing"):
            assert event["text"] == "still there?"
            break
    listener.send_signal(signal.SIGINT)
    _, errors = listener.communicate(timeout=30)
    assert listener.returncode == 0, errors
    assert not (alice_dir / "app.sock").exists()

    # ... and in the next one, once the first has let go: a text, then a file.
    answered = chat(alice_dir, "send", "--to", BOB, "--text", "yes, here")
    assert answered.returncode == 0, answered.stderr
    listened = chat(bob_dir, "listen", "--json", "--count", "1", "--timeout", "60")
    assert listened.returncode == 0, listened.stderr
    [received] = [e for e in json_lines(listened.stdout) if e["event"] == "message"]
    assert received["text"] == "yes, here"

    ticket = tmp_path / "ticket.pdf"
    ticket.write_bytes(b"%PDF-1.4 ticket " + bytes(3000))
    sent = chat(alice_dir, "send", "--to", BOB, "--file", str(ticket), "--text", "your ticket")
    assert sent.returncode == 0, sent.stderr
    listened = chat(bob_dir, "listen", "--json", "--count", "1", "--timeout", "60")
    assert listened.returncode == 0, listened.stderr
    [received] = [e for e in json_lines(listened.stdout) if e["event"] == "message"]
    assert (received["type"], received["kind"], received["filename"]) == (
        "media",
        "document",
        "ticket.pdf",
    )
    assert received["caption"] == "your ticket"
    nothing = chat(alice_dir, "send", "--to", BOB)
    assert nothing.returncode != 0
    assert "give --text, --file or both" in nothing.stderr

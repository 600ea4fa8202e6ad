"""A vodozemac device for the web app's interop tests (web/tests/interop.test.ts).

Reads one JSON command per line on stdin and answers one JSON line on stdout, so that a test
in another language can open sessions with the Python SDK's Olm and exchange messages both
ways. Bytes travel as standard base64.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from tresen.crypto.olm import Ciphertext, DeviceIdentity, OlmSession, SignedKey, verify_signed_key


def main() -> None:
    device = DeviceIdentity.create()
    sessions: dict[str, OlmSession] = {}
    for line in sys.stdin:
        command: dict[str, Any] = json.loads(line)
        try:
            answer = handle(device, sessions, command)
        except Exception as exc:  # the test reads the failure
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


def handle(
    device: DeviceIdentity, sessions: dict[str, OlmSession], command: dict[str, Any]
) -> dict[str, Any]:
    op = command["op"]
    if op == "identity":
        [key] = device.generate_one_time_keys(1)
        device.mark_published()
        return {
            "curve25519": device.curve25519,
            "ed25519": device.ed25519,
            "one_time_key": {
                "key_id": key.key_id,
                "public_key": key.public_key,
                "signature": key.signature,
            },
        }
    if op == "verify_key":
        key = SignedKey(**command["key"])
        verify_signed_key(command["ed25519"], key, fallback=bool(command.get("fallback")))
        return {"ok": True}
    if op == "outbound":
        sessions[command["peer"]] = device.create_outbound_session(
            command["curve25519"], command["one_time_key"]
        )
        return {"ok": True}
    if op == "encrypt":
        message = sessions[command["peer"]].encrypt(base64.b64decode(command["plaintext"]))
        return {"type": message.type, "body": base64.b64encode(message.body).decode()}
    if op == "decrypt":
        message = Ciphertext(command["type"], base64.b64decode(command["body"]))
        peer = command["peer"]
        if peer in sessions and not (message.type == 0 and not sessions[peer].matches(message)):
            plaintext = sessions[peer].decrypt(message)
        else:
            sessions[peer], plaintext = device.create_inbound_session(
                command["curve25519"], message
            )
        return {"plaintext": base64.b64encode(plaintext).decode()}
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    main()

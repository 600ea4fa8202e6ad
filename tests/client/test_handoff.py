"""A script's send handed to the process that owns the data folder, over its socket."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from gateway_support import customer, next_of
from support import RunningRelay

from tresen.client.events import MessageEvent
from tresen.client.handoff import SOCKET_NAME, HandOff, HandOffError, hand_off_send
from tresen.wire.e2e import Media, Text


async def test_a_send_handed_to_the_owner_goes_out_over_its_sessions(
    relay: RunningRelay, tmp_path: Path
) -> None:
    ana = await customer(relay, tmp_path / "ana")
    ben = await customer(relay, tmp_path / "ben")
    assert ben.phone is not None
    handoff = HandOff(ana, tmp_path / "ana")
    await handoff.start()
    socket = tmp_path / "ana" / SOCKET_NAME
    assert stat.S_IMODE(socket.stat().st_mode) == 0o600

    sent = await hand_off_send(tmp_path / "ana", ben.phone, "Von einem Skript")

    arrived = await next_of(ben, MessageEvent)
    assert isinstance(arrived.payload, Text)
    assert arrived.payload.text == "Von einem Skript"
    assert arrived.message_id == sent["message_id"]
    assert sent["pending"] is False
    stored = ana.store.message(sent["message_id"])
    assert stored is not None
    assert stored.outgoing

    await handoff.close()
    assert not socket.exists()
    with pytest.raises(HandOffError, match="no running app"):
        await hand_off_send(tmp_path / "ana", ben.phone, "nobody listens")
    await ana.close()
    await ben.close()


async def test_bad_requests_get_a_clear_answer(relay: RunningRelay, tmp_path: Path) -> None:
    ana = await customer(relay, tmp_path / "ana")
    handoff = HandOff(ana, tmp_path / "ana")
    await handoff.start()

    with pytest.raises(HandOffError, match=r"to .* and text"):
        await hand_off_send(tmp_path / "ana", "+4915110000999", "")
    with pytest.raises(HandOffError, match=r"to .* and text"):
        await hand_off_send(tmp_path / "ana", "+49\x00", "NUL in the number")
    with pytest.raises(HandOffError) as unknown:
        await hand_off_send(tmp_path / "ana", "+4915110000999", "to nobody")
    assert unknown.value.code is not None  # the relay's code, as the CLI shows it

    async def raw(line: bytes) -> dict[str, object]:
        reader, writer = await asyncio.open_unix_connection(str(handoff.path))
        writer.write(line)
        await writer.drain()
        answer: dict[str, object] = json.loads(await reader.readline())
        writer.close()
        return answer

    assert "only send" in str(await raw(b'{"delete": {}}\n'))
    assert "error" in await raw(b"not json\n")
    assert "at most" in str(await raw(b'{"send": "' + b"x" * 70_000 + b'"}\n'))
    await handoff.close()
    await ana.close()


async def test_a_file_handed_to_the_owner_goes_out_encrypted_with_its_caption(
    relay: RunningRelay, tmp_path: Path
) -> None:
    ana = await customer(relay, tmp_path / "ana")
    ben = await customer(relay, tmp_path / "ben")
    assert ben.phone is not None
    handoff = HandOff(ana, tmp_path / "ana")
    await handoff.start()
    invoice = tmp_path / "Rechnung 42.pdf"
    invoice.write_bytes(b"%PDF-1.7 invoice 42 " + bytes(range(256)) * 40)

    sent = await hand_off_send(tmp_path / "ana", ben.phone, "Ihre Rechnung", file=invoice)

    arrived = await next_of(ben, MessageEvent)
    assert arrived.message_id == sent["message_id"]
    assert isinstance(arrived.payload, Media)
    assert (arrived.payload.filename, arrived.payload.caption) == (
        "Rechnung 42.pdf",
        "Ihre Rechnung",
    )
    assert (await ben.download(arrived)).read_bytes() == invoice.read_bytes()
    # Without a caption too; a missing file and a relative path are refused clearly.
    await hand_off_send(tmp_path / "ana", ben.phone, None, file=invoice)
    assert (await next_of(ben, MessageEvent)).payload.caption is None  # type: ignore[union-attr]
    with pytest.raises(HandOffError, match="cannot be read"):
        await hand_off_send(tmp_path / "ana", ben.phone, None, file=tmp_path / "gone.pdf")
    with pytest.raises(ValueError, match="absolute"):
        await hand_off_send(tmp_path / "ana", ben.phone, None, file=Path("relative.pdf"))
    await handoff.close()
    await ana.close()
    await ben.close()

"""A WebSocket's socket stops being read once several received frames wait for the relay,
and is read again once the relay has taken them all (uvicorn's own code, with the relay's
threshold)."""

from __future__ import annotations

import asyncio

from tresen.cli.ws_flow import QUEUED_FRAMES, QueuedFramesProtocol


class Transport:
    """The part of an asyncio transport that flow control touches."""

    def __init__(self) -> None:
        self.reading = True
        self.pauses = 0

    def pause_reading(self) -> None:
        self.pauses += 1
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def receiving_protocol() -> tuple[QueuedFramesProtocol, Transport]:
    # Only the state that receiving frames uses (no handshake, no server).
    protocol = QueuedFramesProtocol.__new__(QueuedFramesProtocol)
    transport = Transport()
    protocol.transport = transport  # type: ignore[assignment]
    protocol.queue = asyncio.Queue()
    protocol.read_paused = False
    protocol.close_sent = False
    protocol.curr_msg_data_type = "bytes"
    return protocol, transport


def frame_arrives(protocol: QueuedFramesProtocol, data: bytes) -> None:
    protocol.frames = [data]
    protocol.send_receive_event_to_app()


async def test_the_socket_is_read_until_several_frames_wait_and_again_once_all_are_taken() -> None:
    protocol, transport = receiving_protocol()
    for i in range(QUEUED_FRAMES - 1):
        frame_arrives(protocol, bytes([i]))
    assert transport.reading
    assert transport.pauses == 0

    frame_arrives(protocol, b"last")
    assert not transport.reading
    assert transport.pauses == 1

    taken = [await protocol.receive() for _ in range(QUEUED_FRAMES - 1)]
    assert not transport.reading  # one frame still waits
    taken.append(await protocol.receive())
    assert transport.reading
    assert [m.get("bytes") for m in taken] == [bytes([i]) for i in range(QUEUED_FRAMES - 1)] + [
        b"last"
    ]

    # A frame that the relay takes at once never pauses the socket.
    for _ in range(3 * QUEUED_FRAMES):
        frame_arrives(protocol, b"x")
        await protocol.receive()
    assert transport.reading
    assert transport.pauses == 1

"""Relay frames as both sides read them: the ``failed`` report."""

from __future__ import annotations

import msgspec
import pytest

from tresen.wire import relay as wire


def test_a_failed_report_round_trips_with_every_field() -> None:
    frame = wire.Failed(
        id=9,
        message_id="7fbb70b2bd41c2d70044c8428bb26af7",
        recipient="a6a8d2daa6ff17aebf0a720206b257c4",
        code=131026,
        reason="expired before delivery",
        server_ms=1_797_834_207_861,
    )
    raw = wire.encode(frame)
    assert msgspec.msgpack.decode(raw) == {
        "t": "failed",
        "v": 1,
        "id": 9,
        "message_id": "7fbb70b2bd41c2d70044c8428bb26af7",
        "recipient": "a6a8d2daa6ff17aebf0a720206b257c4",
        "code": 131026,
        "reason": "expired before delivery",
        "server_ms": 1_797_834_207_861,
    }
    assert wire.decode_server_frame(raw) == frame


def test_a_failed_report_is_not_something_a_client_may_send() -> None:
    with pytest.raises(msgspec.ValidationError):
        wire.decode_client_frame(wire.encode(wire.Failed(id=1)))

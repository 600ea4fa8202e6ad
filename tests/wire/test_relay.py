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


def test_a_resend_and_its_answer_round_trip_with_every_field() -> None:
    resend = wire.Resend(
        client_msg_id="r-1",
        message_id="7fbb70b2bd41c2d70044c8428bb26af7",
        device_id=2,
        type=0,
        body=b"\x03olm",
        registration_id=911217085,
    )
    raw = wire.encode(resend)
    assert msgspec.msgpack.decode(raw) == {
        "t": "resend",
        "v": 1,
        "client_msg_id": "r-1",
        "message_id": "7fbb70b2bd41c2d70044c8428bb26af7",
        "device_id": 2,
        "type": 0,
        "body": b"\x03olm",
        "registration_id": 911217085,
    }
    assert wire.decode_client_frame(raw) == resend
    resent = wire.Resent(
        client_msg_id="r-1", message_id="7fbb70b2bd41c2d70044c8428bb26af7", device_id=2, resends=1
    )
    assert wire.decode_server_frame(wire.encode(resent)) == resent


def test_a_resend_names_one_device_and_carries_a_ciphertext() -> None:
    good = {"t": "resend", "client_msg_id": "r", "message_id": "m", "device_id": 1, "type": 1}
    assert wire.decode_client_frame(msgspec.msgpack.encode({**good, "body": b"x"})).v == 1
    for bad in (
        {**good, "body": b"x", "device_id": 0},
        {**good, "body": b"x", "type": 2},
        {**good, "body": b"x", "klass": 1},  # the class is the original's, never the frame's
        {**good, "body": b"x", "message_id": ""},
        good,  # no body
    ):
        with pytest.raises(msgspec.ValidationError):
            wire.decode_client_frame(msgspec.msgpack.encode(bad))
    # A rejected resend is still answered with its client_msg_id.
    raw = msgspec.msgpack.encode({**good, "device_id": 0})
    assert wire.rejected_send_id(raw) == "r"
    assert wire.rejected_send_id(msgspec.msgpack.encode({"t": "ack", "client_msg_id": "r"})) is None


def test_an_ack_without_undecryptable_ids_encodes_as_before() -> None:
    # So that an ordinary ack is understood by a relay that predates the field.
    assert msgspec.msgpack.decode(wire.encode(wire.Ack(ids=[5, 6]))) == {"t": "ack", "ids": [5, 6]}
    ack = wire.Ack(ids=[5, 6], undecryptable=[6])
    assert msgspec.msgpack.decode(wire.encode(ack)) == {
        "t": "ack",
        "ids": [5, 6],
        "undecryptable": [6],
    }
    assert wire.decode_client_frame(wire.encode(ack)) == ack
    assert wire.decode_client_frame(msgspec.msgpack.encode({"t": "ack", "ids": [1]})) == wire.Ack(
        ids=[1]
    )

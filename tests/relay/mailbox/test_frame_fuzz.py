"""Whatever a device sends, it gets an answer and no other device notices (PostgreSQL).

Arbitrary msgpack values, shaped like client frames or not, with any strings (NUL included)
and any integers msgpack can carry, go over a real connection while another device sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import Device, RunningRelay, WsClient, receiving_device, send_frame

from tresen.core.errors import ErrorCode
from tresen.wire import relay as wire

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

INTS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),
)
TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["", "\x00", "a\x00b", "\x1b[2J", "é"]))
SCALARS = st.one_of(st.none(), st.booleans(), INTS, TEXT, st.binary(max_size=16), st.floats())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "v",
        "client_msg_id",
        "to",
        "per_device",
        "klass",
        "template_ref",
        "ids",
        "message_ids",
        "undecryptable",
        "message_id",
        "device_id",
    ]
)


@st.composite
def shaped(draw: st.DrawFn, to: str) -> dict[Any, Any]:
    """A client frame of each kind with arbitrary values where the protocol has fields."""
    kind = draw(st.sampled_from(["send", "ack", "receipt", "ping", "resend"]))
    if kind == "ack":
        ack: dict[str, Any] = {"t": kind, "ids": draw(st.lists(INTS, min_size=1, max_size=3))}
        if draw(st.booleans()):
            ack["undecryptable"] = draw(st.lists(st.one_of(st.sampled_from(ack["ids"]), INTS)))
        return ack
    if kind == "receipt":
        return {"t": kind, "message_ids": draw(st.lists(TEXT, min_size=1, max_size=3))}
    if kind == "ping":
        return {"t": kind, "nonce": draw(INTS)}
    copy: dict[str, Any] = {
        "device_id": draw(st.one_of(st.just(1), INTS)),
        "type": draw(st.one_of(st.sampled_from([0, 1]), INTS)),
        "body": draw(st.binary(min_size=1, max_size=8)),
    }
    if draw(st.booleans()):
        copy["registration_id"] = draw(INTS)
    if kind == "resend":
        return {"t": kind, "client_msg_id": draw(TEXT), "message_id": draw(TEXT), **copy}
    frame = {
        "t": kind,
        "client_msg_id": draw(TEXT),
        "to": draw(st.one_of(st.just(to), TEXT)),
        "per_device": [copy],
        "klass": draw(st.one_of(st.sampled_from([0, 1, 2, 3]), INTS)),
    }
    if draw(st.booleans()):
        frame["template_ref"] = draw(st.one_of(st.none(), TEXT))
    return frame


@st.composite
def frames(draw: st.DrawFn, to: str) -> bytes:
    """Raw bytes of a frame: mostly well shaped with odd values, sometimes anything at all."""
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return msgspec.msgpack.encode(draw(VALUES))
    if shape == 1:
        depth = draw(st.sampled_from([1_000, 100_000]))
        nested = b"\x91" * depth + b"\xc0"
        key = draw(st.sampled_from([b"\xa1x", b"\xa5nonce", b"\xa3ids"]))
        return b"\x82" + key + nested + b"\xa1t\xa4ping"
    frame = draw(shaped(to))
    for key in draw(st.lists(st.one_of(FIELDS, TEXT), max_size=2)):
        frame[key] = draw(VALUES)
    return msgspec.msgpack.encode(frame)


@dataclass
class Arena:
    relay: RunningRelay
    bob: Device
    alice: WsClient
    mallory: WsClient
    sent: int = 0


@pytest.fixture
async def arena(relay: RunningRelay) -> AsyncIterator[Arena]:
    bob = await receiving_device(relay)
    alice = await relay.connect(await relay.register())
    mallory = await relay.connect(await relay.register())
    yield Arena(relay, bob, alice, mallory)
    await alice.close()
    await mallory.close()


@settings(
    max_examples=80,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_frame_fails_another_device_or_gets_an_internal_error(
    arena: Arena, data: st.DataObject
) -> None:
    raw = data.draw(frames(arena.bob.account_id))
    arena.sent += 1
    nonce = 7_000_000_000 + arena.sent  # told apart from the pongs of generated pings
    good = send_frame(arena.bob, f"good-{arena.sent}", {1: b"ciphertext"})
    await arena.mallory.send_raw(raw)
    await arena.mallory.send(wire.Ping(nonce=nonce))
    await arena.alice.send(good)

    # Answers come in frame order; those of an earlier (failed) example are skipped.
    answers: list[wire.ServerFrame] = []
    while not isinstance(frame := await arena.mallory.recv(), wire.Pong) or frame.nonce != nonce:
        answers.append(frame)
    assert [
        a for a in answers if isinstance(a, wire.ErrorFrame) and a.code == ErrorCode.INTERNAL
    ] == []
    while getattr(answer := await arena.alice.recv(), "client_msg_id", None) != good.client_msg_id:
        assert not isinstance(answer, wire.ErrorFrame), answer
    assert isinstance(answer, wire.Accepted), answer
    assert arena.relay.ctx.mailbox.write_failures_isolated == 0

"""The inbox's hub: every listener hears every event, a slow listener is told it lagged
instead of holding up anyone, and what the recorder commits becomes events."""

from __future__ import annotations

import pytest

from tresen.gateway.inbox.events import Hub, HubFull, InboxEvent
from tresen.gateway.recorder import Echo, StatusReport
from tresen.gateway.store import StoredMessage


def _message(wamid: str, contact: str, direction: str) -> StoredMessage:
    return StoredMessage(
        wamid=wamid,
        relay_message_id=None,
        contact=contact,
        direction=direction,
        type="text",
        content={"body": "secret text"},
        context_wamid=None,
        status="sent",
        error_code=None,
        callback_data=None,
        created_ms=1,
    )


async def test_every_listener_hears_every_event_until_it_leaves() -> None:
    hub = Hub()
    anna, ben = hub.subscribe(), hub.subscribe()
    hub.publish(InboxEvent("activity", "c1", {"kind": "note", "agent_id": 1}))
    assert (await anna.get()).contact == "c1"
    assert (await ben.get()).data == {"kind": "note", "agent_id": 1}
    ben.close()
    hub.publish(InboxEvent("conversation", "c2"))
    assert (await anna.get()).contact == "c2"
    assert hub.listeners == 1


async def test_a_listener_that_falls_behind_is_told_once_and_holds_up_no_one() -> None:
    hub = Hub(max_queued=3)
    slow, quick = hub.subscribe(), hub.subscribe()
    for n in range(10):
        hub.publish(InboxEvent("message", f"c{n}"))
        assert (await quick.get()).contact == f"c{n}"
    heard = [await slow.get() for _ in range(4)]
    assert [e.kind for e in heard] == ["message", "message", "message", "lagged"]
    hub.publish(InboxEvent("message", "after"))
    assert (await slow.get()).contact == "after"


def test_listeners_are_limited() -> None:
    hub = Hub(max_listeners=2)
    hub.subscribe()
    hub.subscribe()
    with pytest.raises(HubFull):
        hub.subscribe()


async def test_what_the_recorder_commits_is_told_without_message_text() -> None:
    hub = Hub()
    listener = hub.subscribe()
    hub.recorded(
        [
            Echo(_message("wamid.1", "c1", "out")),
            StatusReport("r1", "wamid.1", "read", 5, None),
        ]
    )
    message, status = await listener.get(), await listener.get()
    assert (message.kind, message.contact, message.data) == (
        "message",
        "c1",
        {"wamid": "wamid.1", "direction": "out"},
    )
    assert (status.kind, status.data["status"]) == ("status", "read")
    assert "secret text" not in repr([message, status])

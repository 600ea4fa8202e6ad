"""The group committer: one poisoned operation fails alone, the rest of its batch is written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tresen.core.batching import LONE_TURNS, GroupCommitter


class Store:
    """A transaction per batch: all of it is written, or (on an exception) none of it."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.attempts: list[list[str]] = []

    async def process(self, items: Sequence[str]) -> list[str | BaseException]:
        self.attempts.append(list(items))
        if any(item.startswith("poison") for item in items):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        results: list[str | BaseException] = []
        for item in items:
            if item.startswith("refused"):
                results.append(ValueError(item))  # a per-operation answer: no retry
            else:
                self.written.append(item)
                results.append(item.upper())
        return results


def blame(item: str, exc: Exception) -> BaseException:
    return LookupError(f"{item}: {type(exc).__name__}")


async def submit_all(
    committer: GroupCommitter[str, str], items: list[str]
) -> list[str | BaseException]:
    # Submitted without a pause, so that the worker takes them as one batch.
    futures = [committer.submit(item) for item in items]
    return list(await asyncio.gather(*futures, return_exceptions=True))


async def test_a_poisoned_operation_fails_alone_and_the_others_are_written() -> None:
    store = Store()
    committer = GroupCommitter(store.process, max_batch=64, blame=blame)
    committer.start()
    items = [f"op{i}" for i in range(11)]
    items.insert(7, "poison")
    try:
        results = await submit_all(committer, items)
    finally:
        await committer.close()

    assert store.written == [i for i in items if i != "poison"]  # once each, in order
    assert results[7].__class__ is LookupError
    assert str(results[7]) == "poison: OverflowError"
    assert [r for i, r in enumerate(results) if i != 7] == [
        i.upper() for i in items if i != "poison"
    ]
    assert committer.isolated_failures == 1
    assert store.attempts[0] == items
    assert ["poison"] in store.attempts


async def test_several_poisoned_operations_each_get_their_error() -> None:
    store = Store()
    committer = GroupCommitter(store.process, max_batch=256, blame=blame)
    committer.start()
    items = [f"poison{i}" if i % 50 == 3 else f"op{i}" for i in range(200)]
    try:
        results = await submit_all(committer, items)
    finally:
        await committer.close()

    failed = [item for item, r in zip(items, results, strict=True) if isinstance(r, Exception)]
    assert failed == [i for i in items if i.startswith("poison")]
    assert store.written == [i for i in items if not i.startswith("poison")]
    assert committer.isolated_failures == 4
    # Each poisoned operation costs about two attempts per halving, not one per operation.
    assert len(store.attempts) < 4 * 2 * 8 + 1


async def test_answers_per_operation_need_no_retry() -> None:
    store = Store()
    committer = GroupCommitter(store.process, blame=blame)
    committer.start()
    try:
        results = await submit_all(committer, ["op1", "refused", "op2"])
    finally:
        await committer.close()

    assert results[0] == "OP1"
    assert isinstance(results[1], ValueError)
    assert results[2] == "OP2"
    assert len(store.attempts) == 1
    assert committer.isolated_failures == 0


async def test_without_blame_the_lone_operation_gets_the_exception_itself() -> None:
    store = Store()
    committer = GroupCommitter(store.process)
    committer.start()
    try:
        with pytest.raises(OverflowError):
            await committer.submit("poison")
        assert await committer.submit("op") == "OP"
    finally:
        await committer.close()
    assert committer.isolated_failures == 1


async def test_the_observer_hears_each_batch_with_its_size() -> None:
    store = Store()
    heard: list[tuple[int, float]] = []
    committer = GroupCommitter(
        store.process, max_batch=4, observe=lambda size, s: heard.append((size, s))
    )
    committer.start()
    try:
        await submit_all(committer, [f"op{i}" for i in range(6)])
    finally:
        await committer.close()

    assert [size for size, _ in heard] == [4, 2]
    assert all(seconds >= 0 for _, seconds in heard)


def submit_after_turns(
    committer: GroupCommitter[str, str], item: str, turns: int
) -> asyncio.Future[asyncio.Future[str]]:
    """Submit ``item`` ``turns`` turns of the event loop from now, as a frame read later does."""
    loop = asyncio.get_running_loop()
    submitted: asyncio.Future[asyncio.Future[str]] = loop.create_future()

    def step(left: int) -> None:
        if left > 0:
            loop.call_soon(step, left - 1)
        else:
            submitted.set_result(committer.submit(item))

    step(turns)
    return submitted


async def test_operations_that_arrive_within_a_few_turns_join_a_lone_one() -> None:
    """One message at a time: the sender's next message and the acks come in together, a
    turn or two of the event loop apart, and share a transaction."""
    store = Store()
    committer = GroupCommitter(store.process, max_batch=64)
    committer.start()
    try:
        await asyncio.sleep(0)  # the worker waits for the queue
        send = committer.submit("send")
        ack = submit_after_turns(committer, "ack", 1)
        ack_of_delivered = submit_after_turns(committer, "ack-delivered", LONE_TURNS - 1)
        assert await send == "SEND"
        assert await (await ack) == "ACK"
        assert await (await ack_of_delivered) == "ACK-DELIVERED"
        # Later than that, an operation has a batch of its own.
        late = committer.submit("late")
        too_late = submit_after_turns(committer, "too-late", LONE_TURNS + 2)
        assert await late == "LATE"
        assert await (await too_late) == "TOO-LATE"
    finally:
        await committer.close()

    assert store.attempts == [["send", "ack", "ack-delivered"], ["late"], ["too-late"]]

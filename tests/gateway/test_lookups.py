"""The gateway's memory of numbers not on the network: forgotten after its time to live, or
as soon as the number writes, and never larger than its bound."""

from __future__ import annotations

from tresen.gateway.lookups import UnknownNumbers


def test_an_unknown_number_is_remembered_until_its_time_is_up() -> None:
    unknown = UnknownNumbers(ttl_ms=600_000, max_entries=10)
    unknown.add("+4930555000001", now_ms=1_000)
    assert unknown.holds("+4930555000001", now_ms=600_999)
    assert not unknown.holds("+4930555000001", now_ms=601_000)
    assert len(unknown) == 0
    assert not unknown.holds("+4930555000002", now_ms=1_000)


def test_a_number_that_registers_is_forgotten_at_once() -> None:
    unknown = UnknownNumbers(ttl_ms=600_000, max_entries=10)
    unknown.add("+4930555000001", now_ms=0)
    unknown.discard("+4930555000001")
    assert not unknown.holds("+4930555000001", now_ms=1)


def test_the_oldest_go_first_when_full() -> None:
    unknown = UnknownNumbers(ttl_ms=600_000, max_entries=3)
    phones = [f"+493055500000{i}" for i in range(5)]
    for i, phone in enumerate(phones):
        unknown.add(phone, now_ms=i)
    assert len(unknown) == 3
    assert [unknown.holds(p, now_ms=10) for p in phones] == [False, False, True, True, True]

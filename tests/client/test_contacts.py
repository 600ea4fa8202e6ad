"""The address book: names saved for numbers, shown instead of them; businesses keep the name
of their profile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tresen.client.contacts import NAME_MAX, AddressBook, Contact, InvalidName, check_name
from tresen.client.store import LocalStore
from tresen.core.clock import ManualClock

ALICE = "+4915140000001"
SHOP = "+4930555010000"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    opened = LocalStore(tmp_path / "client.db", b"k" * 32)
    yield opened
    opened.close()


def test_a_saved_name_stands_for_the_number(store: LocalStore) -> None:
    clock = ManualClock()
    book = AddressBook(store, clock)
    store.remember_peer("acc-alice", ALICE, clock.now_ms())
    assert book.title("acc-alice") == ALICE
    assert book.title("acc-unknown") == "acc-unknown"

    assert book.set_name(ALICE, "  Alice Schmidt ") == Contact(
        ALICE, "Alice Schmidt", clock.now_ms()
    )
    assert book.title("acc-alice") == "Alice Schmidt"
    assert book.name(ALICE) == "Alice Schmidt"

    clock.advance(minutes=1)
    book.set_name(ALICE, "Alice")
    assert book.contacts() == [Contact(ALICE, "Alice", clock.now_ms())]
    assert book.forget(ALICE)
    assert not book.forget(ALICE)
    assert book.title("acc-alice") == ALICE


def test_a_business_is_named_by_its_profile(store: LocalStore) -> None:
    book = AddressBook(store, ManualClock())
    store.remember_peer("acc-shop", SHOP, 0)
    store.mark_business("acc-shop")
    with pytest.raises(InvalidName, match="is a business: its name comes from its profile"):
        book.set_name(SHOP, "Cheap Flights")
    store.put_business("acc-shop", "Tresen Air", "verified", {}, 0)
    assert book.title("acc-shop") == "Tresen Air"
    # Even a name saved before the number was known as a business does not hide its name.
    store.put_contact(SHOP, "My airline", 0)
    assert book.title("acc-shop") == "Tresen Air"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "at least one letter"),
        ("   ", "at least one letter"),
        ("x" * (NAME_MAX + 1), f"at most {NAME_MAX} characters"),
        ("Alice\nBob", "without control characters"),
        ("Alice\x1b[31m", "without control characters"),
        ("Tab\there", "without control characters"),
        ("+4915140000002", "would look like a phone number"),
        ("Tresen Air ✓", "✓ marks a verified business only"),
    ],
)
def test_names_are_checked(name: str, why: str) -> None:
    with pytest.raises(InvalidName, match=why):
        check_name(name)


def test_only_phone_numbers_are_named(store: LocalStore) -> None:
    book = AddressBook(store, ManualClock())
    with pytest.raises(InvalidName, match="is not a phone number"):
        book.set_name("0151 400", "Alice")
    assert check_name("Zoë O'Brien-Łukasz 🙂") == "Zoë O'Brien-Łukasz 🙂"
    assert check_name("x" * NAME_MAX) == "x" * NAME_MAX

"""The address book: names the user gave to phone numbers, kept on this device only.

A saved name is shown instead of the number everywhere a person is named (the chat list, a
chat's title, notices, ``tresen chat`` output). A business is always named by its profile (the
name its operator certificate binds), never by the address book, so a saved name cannot make
a business look like another or a person look like a business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tresen.client.store import LocalStore
from tresen.core.clock import Clock
from tresen.core.fields import LINE_PATTERN

__all__ = ["NAME_MAX", "AddressBook", "Contact", "InvalidName", "check_name"]

NAME_MAX = 64
_ONE_LINE = re.compile(LINE_PATTERN)
_E164 = re.compile(r"\+[1-9][0-9]{3,14}")
# Only this device's check of an operator certificate may put a tick next to a name.
_TICKS = frozenset("✓✔☑✅")


class InvalidName(ValueError):
    """A name (or number) the address book does not take; the message says why."""


@dataclass(frozen=True, slots=True)
class Contact:
    phone: str
    name: str
    updated_ms: int


def check_name(name: str) -> str:
    """The name as it is stored (trimmed), or :class:`InvalidName` saying what is wrong."""
    if not _ONE_LINE.fullmatch(name):
        raise InvalidName("a name is one line without control characters (no tabs or breaks)")
    name = name.strip()
    if not name:
        raise InvalidName("a name needs at least one letter")
    if len(name) > NAME_MAX:
        raise InvalidName(f"a name has at most {NAME_MAX} characters, not {len(name)}")
    if name.startswith("+"):
        raise InvalidName("a name cannot start with “+”: it would look like a phone number")
    if not _TICKS.isdisjoint(name):
        raise InvalidName("a name cannot contain a tick: ✓ marks a verified business only")
    return name


class AddressBook:
    """Names by phone number (E.164, as the relay spells it), over the client's store."""

    def __init__(self, store: LocalStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def name(self, phone: str) -> str | None:
        return self._store.contact_name(phone)

    def contacts(self) -> list[Contact]:
        return [Contact(*row) for row in self._store.contacts()]

    def set_name(self, phone: str, name: str) -> Contact:
        """Name ``phone``; a business's number is refused (its profile names it)."""
        if not _E164.fullmatch(phone):
            raise InvalidName(f"{phone!r} is not a phone number like +4915112345678")
        name = check_name(name)
        account_id = self._store.account_for_phone(phone)
        known = None if account_id is None else self._store.known_business(account_id)
        if known is not None:
            who = known.display_name or phone
            raise InvalidName(f"{who} is a business: its name comes from its profile")
        contact = Contact(phone, name, self._clock.now_ms())
        self._store.put_contact(contact.phone, contact.name, contact.updated_ms)
        return contact

    def forget(self, phone: str) -> bool:
        """Remove the name of ``phone``; False if it had none."""
        return self._store.delete_contact(phone)

    def title(self, account_id: str) -> str:
        """How to name an account: a business by its profile's name, a person by the name
        saved for the number, else the number, else (never looked up) the account id."""
        known = self._store.known_business(account_id)
        if known is not None and known.display_name:
            return known.display_name
        phone = self._store.peer_phone(account_id)
        if phone is None:
            return account_id
        return self._store.contact_name(phone) or phone

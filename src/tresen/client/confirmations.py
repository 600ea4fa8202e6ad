"""Acknowledging to the relay only what the application has made safe.

By default a device acknowledges a relay envelope as soon as it has stored what the envelope
carried in its local store. An application that keeps received messages somewhere else (the
business gateway's database) must not let the relay forget a message before it is kept there:
with ``confirm_events``, every event the device raises while handling an envelope waits for
the application's :meth:`Confirmations.confirm`, and the envelope is acknowledged once all of
them are confirmed. Until then the relay holds it and hands it over again on the next
connection, where the device raises its event again from the local store (the application
must therefore take an event it already kept as a repetition).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tresen.client.events import Event

__all__ = ["Confirmations"]


@dataclass(slots=True)
class _Envelope:
    """The events one envelope raised that still wait for the application."""

    waiting: int
    acknowledge: Callable[[], None]


class Confirmations:
    def __init__(self) -> None:
        # Events raised since the last envelope was handled, by identity (the event is kept
        # so that its ``id`` stays its own until confirmed).
        self._fresh: dict[int, Event] = {}
        self._waiting: dict[int, tuple[Event, _Envelope]] = {}

    def raised(self, event: Event) -> None:
        """``event`` was handed to the application."""
        self._fresh[id(event)] = event

    def after_handled(self, acknowledge: Callable[[], None]) -> None:
        """The envelope just handled raised the events raised since the last one: call
        ``acknowledge`` once the application confirmed them all (at once if none waits)."""
        if not self._fresh:
            acknowledge()
            return
        envelope = _Envelope(len(self._fresh), acknowledge)
        for key, event in self._fresh.items():
            self._waiting[key] = (event, envelope)
        self._fresh.clear()

    def confirm(self, event: Event) -> None:
        """The application is done with ``event`` (it kept what it needed of it)."""
        if self._fresh.pop(id(event), None) is not None:
            return
        entry = self._waiting.get(id(event))
        if entry is None or entry[0] is not event:
            return
        del self._waiting[id(event)]
        envelope = entry[1]
        envelope.waiting -= 1
        if envelope.waiting == 0:
            envelope.acknowledge()

    @property
    def unconfirmed(self) -> int:
        """Events handed over and not yet confirmed."""
        return len(self._fresh) + len(self._waiting)

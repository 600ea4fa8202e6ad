"""The relay's delivered/read/failed reports on the messages this account sent."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from tresen.client.connection import Report
from tresen.client.events import Event, StatusChanged
from tresen.client.store import LocalStore, MessageStatus
from tresen.wire import relay as wire

__all__ = ["Reports"]

EARLY_STATUSES_MAX = 10_000

_REPORTED_STATUS: dict[type[Report], MessageStatus] = {
    wire.Delivered: MessageStatus.DELIVERED,
    wire.Read: MessageStatus.READ,
    wire.Failed: MessageStatus.FAILED,
}
_REPORT_ORDER: dict[type[Report], int] = {wire.Delivered: 0, wire.Read: 1, wire.Failed: 2}


class Reports:
    """The relay's delivered/read/failed reports on messages this account sent."""

    def __init__(
        self, store: LocalStore, emit: Callable[[Event], None], *, repeat: bool = False
    ) -> None:
        self.store = store
        self.emit = emit
        # With confirmed events: a report handed over again (its ack was held back until the
        # application confirmed it) is told again, as the application may not have kept it.
        self._repeat = repeat
        # Reports that came before this device stored the message they name (the relay's
        # answer and its report can be read in one go), kept until it does.
        self._early: OrderedDict[str, list[Report]] = OrderedDict()

    def on_report(self, frame: Report) -> None:
        if self._advance(frame):
            return
        if self._repeat and self._again(frame):
            return
        if not self.store.has_message(frame.message_id):
            # The relay's report overtook the storing of the message: its ``accepted``
            # answer resolved ``send()``, but the connection read on before ``send()``
            # resumed (or another device's transcript has not arrived yet). Kept until then.
            self._early.setdefault(frame.message_id, []).append(frame)
            while len(self._early) > EARLY_STATUSES_MAX:
                self._early.popitem(last=False)

    def _advance(self, frame: Report) -> bool:
        """Move the stored message forward and tell the application; False if it is not
        stored (or already that far: a message delivered or read never becomes failed)."""
        failed = frame if isinstance(frame, wire.Failed) else None
        error = None if failed is None else failed.reason
        status = _REPORTED_STATUS[type(frame)]
        if not self.store.advance_status(frame.message_id, status, error=error):
            return False
        stored = self.store.message(frame.message_id)
        self.emit(
            StatusChanged(
                frame.message_id,
                stored.chat if stored else "",
                status,
                pricing=frame.pricing if isinstance(frame, wire.Delivered) else None,
                server_ms=frame.server_ms,
                error_code=None if failed is None else failed.code,
                error=error,
            )
        )
        return True

    def _again(self, frame: Report) -> bool:
        """Tell the application again of a report the stored message is already as far as."""
        stored = self.store.message(frame.message_id)
        if stored is None or not stored.outgoing:
            return False
        status = _REPORTED_STATUS[type(frame)]
        read_since = status is MessageStatus.DELIVERED and stored.status is MessageStatus.READ
        if stored.status is not status and not read_since:
            return False
        failed = frame if isinstance(frame, wire.Failed) else None
        self.emit(
            StatusChanged(
                frame.message_id,
                stored.chat,
                status,
                pricing=frame.pricing if isinstance(frame, wire.Delivered) else None,
                server_ms=frame.server_ms,
                error_code=None if failed is None else failed.code,
                error=None if failed is None else failed.reason,
            )
        )
        return True

    def apply_early(self, message_id: str) -> None:
        """Apply the reports on ``message_id`` that came before it was stored: delivered,
        then read, then failed (which then no longer applies)."""
        for frame in sorted(self._early.pop(message_id, ()), key=lambda f: _REPORT_ORDER[type(f)]):
            self._advance(frame)

"""The terminal app's model: its state and actions without any widget (``tresen.client.tui``
shows it)."""

from __future__ import annotations

from tresen.client.app.commands import COMMANDS_HELP, HELP, Commands, Typed, parse
from tresen.client.app.model import ChatModel, ChatRow
from tresen.client.presentation import ChatLine, LineKind

__all__ = [
    "COMMANDS_HELP",
    "HELP",
    "ChatLine",
    "ChatModel",
    "ChatRow",
    "Commands",
    "LineKind",
    "Typed",
    "parse",
]

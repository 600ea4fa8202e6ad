"""Waiting for the chat app (textual) in tests: the relay and the peers are other parties, so
a test lets the app run until what it expects is on the screen."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.css.query import NoMatches
from textual.pilot import Pilot


async def until(pilot: Pilot[None], condition: Callable[[], object], timeout: float = 30) -> None:
    """Let the app run until ``condition`` holds. While the app rebuilds a chat's lines there
        are none for a moment (and a new item has no children yet): a condition about a line that is
    not there yet does not hold yet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not _holds(condition):
        assert loop.time() < deadline, "the app never got there"
        await pilot.pause(0.05)


def _holds(condition: Callable[[], object]) -> bool:
    try:
        return bool(condition())
    except (IndexError, NoMatches):
        # A list or chat item being rebuilt: its children are not mounted yet.
        return False

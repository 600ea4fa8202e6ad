"""uvicorn's sans-I/O WebSocket protocol, pausing a socket only once several frames wait.

uvicorn's protocol stops reading a WebSocket's socket as soon as one received frame waits for
the application, and reads again when the application has taken it: a device that sends
three frames per message (its send and two acks) costs six ``epoll_ctl`` system calls and the
transport's bookkeeping around them, ~10 % of the relay's CPU per message
(docs/benchmarks.md). Here reading stops once :data:`QUEUED_FRAMES` frames wait, and goes on
when the application has taken them all. A device that sends faster than the relay takes its
frames is stopped as before, a few frames later; the relay's own bound on frames in progress
(``limits.pipeline_per_connection``) is unchanged.

uvicorn checks its ``read_paused`` flag before it pauses a socket and before it resumes one;
the flag reads as set while fewer than :data:`QUEUED_FRAMES` frames wait, so uvicorn neither
pauses the socket nor resumes it (which asyncio does without a system call when it is not
paused). Everything else is uvicorn's.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["QUEUED_FRAMES", "QueuedFramesProtocol"]

QUEUED_FRAMES = 8
"""Received frames that may wait for the application before the socket is no longer read."""


class QueuedFramesProtocol(WebSocketsSansIOProtocol):
    _paused = False

    @property
    def read_paused(self) -> bool:
        return self._paused or self.queue.qsize() < QUEUED_FRAMES

    @read_paused.setter
    def read_paused(self, value: bool) -> None:
        self._paused = value

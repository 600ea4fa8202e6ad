"""One process per data folder.

A client's session state (Olm sessions, ratchets, the outbox) must never be used by two
processes at once: two copies of a ratchet that move apart break the conversation for good.
Opening a client takes an exclusive OS lock on ``lock`` in its data folder, held until it is
closed or the process ends (the OS drops it even after ``kill -9``), and records who holds it
so that a second process can say what to close.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import sys
from pathlib import Path

__all__ = ["FolderInUse", "FolderLock"]

LOCK_FILE = "lock"


class FolderInUse(Exception):
    """Another process (or another client in this one) has the data folder open."""

    def __init__(self, folder: Path, holder: str) -> None:
        super().__init__(f"{folder} is in use by {holder or 'another process'}")
        self.folder = folder
        self.holder = holder


class FolderLock:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, folder: Path) -> FolderLock:
        """Lock ``folder`` for this process, or raise :class:`FolderInUse` naming the holder."""
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
            os.close(fd)
            raise FolderInUse(folder, holder) from None
        except BaseException:
            os.close(fd)
            raise
        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200] if sys.argv else ""
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} ({command})\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # Truncated first: a holder line left behind would name a process that has let go.
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

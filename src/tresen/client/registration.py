"""Registering a device, as the app and ``tresen chat register`` do it: a wrong code may be
typed again (the code the relay sent stays valid), and a registration that fails or is
interrupted leaves no half-made data folder behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tresen.client.api import RelayError
from tresen.core.errors import ErrorCode

__all__ = ["CODE_ATTEMPTS", "CodeAttempts", "NewFolder"]

CODE_ATTEMPTS = 3
"""Codes a person may type for one code sent (the relay allows a few more per number, so a
second request still has tries left)."""


class NewFolder:
    """A data folder about to be opened for registering, noted before anything is written.

    :meth:`discard` takes away what was made since: the folder (and the parent folders that
    were made for it) when it did not exist, its contents when it existed empty. A folder
    that held anything before is never touched.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder.expanduser().absolute()
        self._existed = self.folder.exists()
        self.fresh = not self._existed or (self.folder.is_dir() and not any(self.folder.iterdir()))
        missing = [self.folder, *self.folder.parents]
        # The outermost folder that does not exist yet: opening makes it and all below it.
        self._made = [p for p in missing if not p.exists()]

    def discard(self) -> None:
        """Remove what was made in and for the folder, if it was new or empty before."""
        if not self.fresh or not self.folder.is_dir():
            return
        if self._existed:
            for child in self.folder.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        for parent in self._made[1:]:
            try:
                parent.rmdir()  # only while empty: something else may have moved in
            except OSError:
                return


class CodeAttempts:
    """The codes typed for one code sent: a wrong code may be typed again, up to ``limit``
    codes in all (fewer when the relay says fewer tries are left)."""

    def __init__(self, limit: int = CODE_ATTEMPTS) -> None:
        self.limit = limit
        self.used = 0

    def retry(self, exc: Exception) -> int:
        """After a code was refused with ``exc``: how many more codes may be typed (0: asking
        again cannot help, as the code was not merely wrong or no tries are left)."""
        self.used += 1
        if not isinstance(exc, RelayError) or exc.code != ErrorCode.CODE_INCORRECT:
            return 0
        left = self.limit - self.used
        relay_left = exc.details.get("attempts_left")
        if isinstance(relay_left, int):
            left = min(left, relay_left)
        return max(0, left)

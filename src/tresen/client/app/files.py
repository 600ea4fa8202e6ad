"""The app's file commands: ``/attach PATH [caption]``, ``/save N [PATH]`` and ``/open N``.

Files are numbered in each chat from 1, oldest first, as the chat shows them (``file 2``);
without N a command means the chat's newest file. ``/open`` hands the downloaded file to the
system's opener (``xdg-open``), which the app is given, so tests never start one.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tresen.client.api import RelayError
from tresen.client.attachments import AttachmentUnavailable, safe_filename
from tresen.client.directory import IdentityNotTrusted
from tresen.client.presentation import APP_HINTS, LineKind, error_text, size_text
from tresen.client.store import MessageStatus
from tresen.crypto.attachments import AttachmentError
from tresen.wire.e2e import Media, attached_file, decode_payload

if TYPE_CHECKING:
    from tresen.client.app.model import ChatModel

__all__ = ["Files", "Opener", "system_opener"]

Opener = Callable[[Path], Awaitable[bool]]
"""Opens a file with the system's viewer; False when there is no opener on this system."""

_OPENERS = ("xdg-open", "open")


async def system_opener(path: Path) -> bool:
    """Start ``xdg-open`` (``open`` on macOS) on ``path`` without waiting for the viewer."""
    program = next((found for name in _OPENERS if (found := shutil.which(name))), None)
    if program is None:
        return False
    await asyncio.create_subprocess_exec(
        program,
        str(path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    return True


def _existing_file(text: str) -> Path | None:
    path = Path(text).expanduser()
    return path if path.is_file() else None


def _copy(kept: Path, destination: str, name: str) -> Path:
    """Copy ``kept`` to ``destination``, a file, or a folder to put ``name`` in."""
    target = Path(destination).expanduser()
    if target.is_dir():
        target = target / name
    shutil.copyfile(kept, target)
    return target


def _split(argument: str) -> list[str]:
    """Words of ``argument``; quotes keep a path with spaces together."""
    try:
        return shlex.split(argument)
    except ValueError:
        return argument.split()


class Files:
    """Sending, saving and opening the files of the open chat."""

    def __init__(self, model: ChatModel, opener: Opener) -> None:
        self.model = model
        self.client = model.client
        self.opener = opener

    async def attach(self, argument: str) -> None:
        """``/attach PATH [caption]``: send a file to the open chat."""
        chat = self.model.open_chat
        if chat is None:
            self.model.feedback = "Open a chat first; /attach sends a file to it."
            return
        words = _split(argument)
        if not words:
            self.model.feedback = "Which file? /attach ~/photo.jpg [a caption]"
            return
        path = _existing_file(words[0])
        caption = " ".join(words[1:]).strip() or None
        if path is None:
            self.model.feedback = f"There is no file at {words[0]}."
            return
        try:
            await self.client.send_file(chat, path, caption=caption)
        except IdentityNotTrusted:
            self.model.note(
                chat,
                LineKind.WARNING,
                f"Not sent: {path.name}. The security keys of {self.model.title(chat)} "
                "changed; compare safety numbers (/safety), then /trust.",
            )
        except (RelayError, httpx.HTTPError) as exc:
            why = error_text(exc, self.model.title(chat), APP_HINTS)
            self.model.note(chat, LineKind.ERROR, f"Not sent: {path.name}: {why}.")
        except (AttachmentError, ValueError) as exc:  # too large; a caption that does not fit
            self.model.note(chat, LineKind.ERROR, f"Not sent: {path.name}: {exc}.")

    async def save(self, argument: str) -> None:
        """``/save [N] [PATH]``: download file N of the open chat (and copy it to PATH)."""
        words = _split(argument)
        number = words.pop(0) if words and words[0].isdigit() else None
        found = self._file(number, "/save")
        if found is None:
            return
        message_id, media = found
        kept = await self._download(message_id)
        if kept is None:
            return
        if not words:
            self.model.feedback = f"Saved {kept.name} ({size_text(media.plain_size)}) at {kept}."
            return
        try:
            target = _copy(kept, " ".join(words), safe_filename(media.filename, kept.name))
        except OSError as exc:
            self.model.feedback = (
                f"Could not copy it there: {exc.strerror or exc}; it is at {kept}."
            )
            return
        self.model.feedback = f"Saved {target.name} ({size_text(media.plain_size)}) at {target}."

    async def open(self, argument: str) -> None:
        """``/open N``: download file N of the open chat and open it with the system's viewer."""
        found = self._file(argument or None, "/open")
        if found is None:
            return
        kept = await self._download(found[0])
        if kept is None:
            return
        if await self.opener(kept):
            self.model.feedback = f"Opening {kept.name} ({kept})."
        else:
            self.model.feedback = (
                f"No program to open files here (xdg-open is missing); the file is at {kept}."
            )

    async def _download(self, message_id: str) -> Path | None:
        chat = self.model.open_chat
        try:
            return await self.client.download(message_id)
        except AttachmentError as exc:
            if chat is not None:
                self.model.note(
                    chat,
                    LineKind.ERROR,
                    f"The file was refused and not kept ({exc.code}): it is not the file the "
                    "sender sent.",
                )
        except AttachmentUnavailable:
            self.model.feedback = "The relay no longer has this file (files are kept 30 days)."
        except OSError as exc:
            self.model.feedback = f"Could not save the file: {exc.strerror or exc}."
        return None

    def _file(self, number: str | None, command: str) -> tuple[str, Media] | None:
        """The open chat's file ``number`` (from 1, oldest first; None: the newest)."""
        chat = self.model.open_chat
        if chat is None:
            self.model.feedback = f"Open a chat first; {command} N is about its file N."
            return None
        files = self.chat_files(chat)
        if not files:
            self.model.feedback = "This chat has no files yet; /attach PATH sends one."
            return None
        if number is None:
            return files[-1]
        if number.isdigit() and 1 <= int(number) <= len(files):
            return files[int(number) - 1]
        self.model.feedback = (
            f"{command} 1 to {command} {len(files)}: the chat's files, oldest first."
            if len(files) > 1
            else f"This chat has one file: {command} 1."
        )
        return None

    def chat_files(self, chat: str) -> list[tuple[str, Media]]:
        """The chat's files in the order the chat numbers them."""
        files = []
        for message in self.client.store.messages(chat):
            if message.payload is None:
                continue
            if message.status is MessageStatus.FAILED and not message.outgoing:
                continue
            try:
                payload = decode_payload(message.payload)
            except ValueError:
                continue
            file = attached_file(payload)
            if file is not None:
                files.append((message.message_id, file))
        return files

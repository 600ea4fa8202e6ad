"""Where blobs of encrypted attachments are kept: the :class:`BlobStorage` seam and its
filesystem implementation.

The relay's database knows each blob's state (how many bytes were flushed, whether it is
complete); a storage only holds bytes. It never sees anything but ciphertext and its length.
The filesystem is the default; :mod:`tresen.relay.attachments.s3` keeps blobs in an
S3-compatible bucket behind the same seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = [
    "READ_CHUNK",
    "WRITE_BUFFER",
    "BlobReader",
    "BlobStorage",
    "BlobWriter",
    "FileBlobStorage",
]

READ_CHUNK = 256 * 1024
# Bytes gathered from the request before one write() in a worker thread: few thread hops
# per megabyte, and a small bound on what each upload in progress holds in memory (a device
# may have many bodies streaming at once).
WRITE_BUFFER = 256 * 1024


class BlobWriter(Protocol):
    """Appends to an unfinished blob, from the offset it was opened at."""

    @property
    def offset(self) -> int:
        """Bytes written so far (flushed or not)."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def flush(self) -> int:
        """Make every byte written so far durable (fsync); returns the durable size."""
        ...

    async def finalise(self) -> None:
        """Make the blob complete with every byte written and readable; durable when this
        returns. Nothing is written after it."""
        ...

    async def close(self) -> None: ...


class BlobReader(Protocol):
    """Bytes of a complete blob in bounded chunks. :meth:`close` releases what the reader
    holds whether or not it was read (a client may leave before the first chunk); iterating
    to the end releases it too."""

    def __aiter__(self) -> BlobReader: ...

    async def __anext__(self) -> bytes: ...

    def close(self) -> None: ...


class BlobStorage(Protocol):
    """Bytes of blobs by id. Ids are opaque, URL-safe and at least 16 characters long."""

    async def start(self) -> None:
        """Connect and check that the storage can be used; the relay does not start
        otherwise."""
        ...

    async def close(self) -> None: ...

    async def open_append(self, blob_id: str, offset: int) -> BlobWriter:
        """A writer at ``offset`` of the unfinished blob, created empty when ``offset`` is 0;
        bytes beyond ``offset`` (written but never recorded) are dropped."""
        ...

    async def open_read(self, blob_id: str, start: int, end: int) -> BlobReader:
        """Bytes ``start`` up to (excluding) ``end`` of a complete blob, in bounded chunks.
        Raises ``FileNotFoundError`` at once (before the first chunk is asked for) when the
        blob is not there."""
        ...

    async def delete(self, blob_id: str) -> None:
        """Remove the blob, complete or not; nothing happens when it is not there."""
        ...

    async def size(self, blob_id: str) -> int | None:
        """The stored bytes of a complete blob, None when there is none."""
        ...


class FileBlobStorage:
    """Blobs as files under ``root``: unfinished ones in ``uploading/``, complete ones in
    ``blobs/``, each fanned out by the id's first two characters. Blocking file work runs in
    worker threads so the event loop keeps serving."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploading = root / "uploading"
        self.blobs = root / "blobs"

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _partial(self, blob_id: str) -> Path:
        return self.uploading / blob_id[:2] / blob_id

    def _complete(self, blob_id: str) -> Path:
        return self.blobs / blob_id[:2] / blob_id

    async def open_append(self, blob_id: str, offset: int) -> BlobWriter:
        path = self._partial(blob_id)

        def open_file() -> BinaryIO:
            path.parent.mkdir(parents=True, exist_ok=True)
            if offset == 0:
                return path.open("wb")
            with contextlib.suppress(FileNotFoundError):
                # Finalised, but the relay stopped before recording it: unfinished again.
                os.replace(self._complete(blob_id), path)
            file = path.open("r+b")  # FileNotFoundError: the blob is gone
            file.truncate(offset)
            file.seek(offset)
            return file

        return _FileWriter(self, blob_id, await asyncio.to_thread(open_file), offset)

    async def finalise(self, blob_id: str) -> None:
        """Move the unfinished blob's file among the complete ones (also when a call the
        relay never recorded moved it already)."""
        source, target = self._partial(blob_id), self._complete(blob_id)

        def move() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, target)
            except FileNotFoundError:
                if not target.exists():  # moved already by a call the relay never recorded
                    raise
            _fsync_dir(target.parent)

        await asyncio.to_thread(move)

    async def open_read(self, blob_id: str, start: int, end: int) -> BlobReader:
        file = await asyncio.to_thread(self._complete(blob_id).open, "rb")
        return _FileReader(file, start, end)

    async def delete(self, blob_id: str) -> None:
        def remove() -> None:
            for path in (self._partial(blob_id), self._complete(blob_id)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

        await asyncio.to_thread(remove)

    async def size(self, blob_id: str) -> int | None:
        try:
            stat = await asyncio.to_thread(self._complete(blob_id).stat)
        except FileNotFoundError:
            return None
        return stat.st_size


class _FileWriter:
    def __init__(self, storage: FileBlobStorage, blob_id: str, file: BinaryIO, offset: int) -> None:
        self._storage = storage
        self._blob_id = blob_id
        self._file = file
        self._offset = offset
        self._buffer = bytearray()

    @property
    def offset(self) -> int:
        return self._offset + len(self._buffer)

    async def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= WRITE_BUFFER:
            await self._drain()

    async def _drain(self) -> None:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            await asyncio.to_thread(self._file.write, data)
            self._offset += len(data)

    async def flush(self) -> int:
        await self._drain()

        def sync() -> None:
            self._file.flush()
            os.fsync(self._file.fileno())

        await asyncio.to_thread(sync)
        return self._offset

    async def finalise(self) -> None:
        await self.flush()
        await self._storage.finalise(self._blob_id)

    async def close(self) -> None:
        # Closed here, not in a worker thread: a cancelled hop to a thread could leave the
        # file open, and after flush() there is nothing left for close() to write.
        self._file.close()


class _FileReader:
    """Bytes ``start`` up to (excluding) ``end`` of an open file, in chunks of at most
    :data:`READ_CHUNK`."""

    def __init__(self, file: BinaryIO, start: int, end: int) -> None:
        self._file = file
        self._position = start
        self._end = end

    def __aiter__(self) -> _FileReader:
        return self

    async def __anext__(self) -> bytes:
        if self._position >= self._end or self._file.closed:
            self.close()
            raise StopAsyncIteration
        chunk = await asyncio.to_thread(
            self._read_at, self._position, min(READ_CHUNK, self._end - self._position)
        )
        if not chunk:  # shorter than recorded: the answer's length tells the client
            self.close()
            raise StopAsyncIteration
        self._position += len(chunk)
        return chunk

    def _read_at(self, position: int, size: int) -> bytes:
        if self._file.closed:
            return b""
        self._file.seek(position)
        return self._file.read(size)

    def close(self) -> None:
        # Synchronous: closing a file opened for reading does not block, and a cancelled hop
        # to a worker thread could leave it open.
        self._file.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

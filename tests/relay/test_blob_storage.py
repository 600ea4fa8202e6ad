"""The blob storage contract, on the filesystem and on an S3-compatible server: what a relay
that stops at the wrong moment finds again, and what a delete leaves behind."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import S3Server

from tresen.core.settings import AttachmentLimits
from tresen.relay.attachments.s3 import S3BlobStorage
from tresen.relay.attachments.storage import BlobStorage, FileBlobStorage

MIB = 1_048_576
PART = 5 * MIB  # the smallest part S3 takes: blobs over it are multipart uploads
BLOB = "b" * 43


@dataclass
class Store:
    storage: BlobStorage
    held: Callable[[], list[str]]  # what the storage holds, whatever its layout


@pytest.fixture(params=["filesystem", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "filesystem":
        root = tmp_path / "attachments"
        storage: BlobStorage = FileBlobStorage(root)

        def files() -> list[str]:
            return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

        held = files
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = s3.new_bucket()
        settings = AttachmentLimits.model_validate(s3.settings(bucket, part_bytes=PART)).s3
        storage = S3BlobStorage(settings)

        def objects() -> list[str]:
            return s3.held(bucket)

        held = objects
    await storage.start()
    try:
        yield Store(storage, held)
    finally:
        await storage.close()


async def read_all(storage: BlobStorage, blob_id: str, start: int = 0, end: int = -1) -> bytes:
    if end < 0:
        size = await storage.size(blob_id)
        assert size is not None
        end = size
    reader = await storage.open_read(blob_id, start, end)
    return b"".join([chunk async for chunk in reader])


async def append(storage: BlobStorage, offset: int, data: bytes, *, flush: bool = True) -> int:
    """Write ``data`` at ``offset`` as one request body would; the durable offset."""
    writer = await storage.open_append(BLOB, offset)
    try:
        for i in range(0, len(data), 64 * 1024):
            await writer.write(data[i : i + 64 * 1024])
        return await writer.flush() if flush else offset
    finally:
        await writer.close()


async def finish(storage: BlobStorage, offset: int, data: bytes) -> None:
    writer = await storage.open_append(BLOB, offset)
    try:
        await writer.write(data)
        await writer.finalise()
    finally:
        await writer.close()


async def test_a_blob_written_in_pieces_reads_back_whole_and_in_ranges(store: Store) -> None:
    blob = os.urandom(2 * PART + 12_345)
    offset = 0
    for cut in (70_000, PART - 3, PART + 5, 2 * PART):
        assert await append(store.storage, offset, blob[offset:cut]) == cut
        offset = cut
    await finish(store.storage, offset, blob[offset:])

    assert await store.storage.size(BLOB) == len(blob)
    assert await read_all(store.storage, BLOB) == blob
    assert await read_all(store.storage, BLOB, PART - 10, PART + 10) == blob[PART - 10 : PART + 10]
    assert await read_all(store.storage, BLOB, len(blob) - 1) == blob[-1:]


@pytest.mark.parametrize("size", [PART, 2 * PART])
async def test_blobs_of_whole_parts_resume_at_the_boundary(store: Store, size: int) -> None:
    blob = os.urandom(size)
    assert await append(store.storage, 0, blob[: size - PART]) == size - PART
    assert await append(store.storage, size - PART, blob[size - PART : size - 1]) == size - 1
    await finish(store.storage, size - 1, blob[-1:])
    assert await read_all(store.storage, BLOB) == blob


async def test_bytes_flushed_but_never_recorded_are_dropped(store: Store) -> None:
    """The relay flushed, then stopped before its database said so: the client resumes at
    the offset recorded before, and the bytes after it are replaced."""
    first, lost = os.urandom(PART + 1000), os.urandom(PART)
    assert await append(store.storage, 0, first) == len(first)
    # Crosses a part boundary and flushes, but the relay never records it.
    assert await append(store.storage, len(first), lost) == len(first) + len(lost)

    rest = os.urandom(3000)
    await finish(store.storage, len(first), rest)
    assert await read_all(store.storage, BLOB) == first + rest


async def test_bytes_written_but_not_flushed_are_dropped(store: Store) -> None:
    head = os.urandom(100_000)
    assert await append(store.storage, 0, head) == len(head)
    await append(store.storage, len(head), os.urandom(PART + 10), flush=False)  # connection lost

    rest = os.urandom(PART)
    await finish(store.storage, len(head), rest)
    assert await read_all(store.storage, BLOB) == head + rest


async def test_an_upload_restarted_at_zero_starts_empty(store: Store) -> None:
    await append(store.storage, 0, os.urandom(PART + 7))
    blob = os.urandom(1000)
    await finish(store.storage, 0, blob)
    assert await read_all(store.storage, BLOB) == blob


@pytest.mark.parametrize("size", [10, PART + PART // 2])
async def test_a_blob_finalised_but_never_recorded_is_resumed(store: Store, size: int) -> None:
    """The relay completed the blob and stopped before its database said so: the client
    resumes at the recorded offset and the blob is unfinished again."""
    blob = os.urandom(size)
    recorded = size * 6 // 10
    await finish(store.storage, 0, blob)
    assert await store.storage.size(BLOB) == size

    writer = await store.storage.open_append(BLOB, recorded)
    assert writer.offset == recorded
    await writer.write(blob[recorded:])
    await writer.finalise()
    await writer.close()
    assert await read_all(store.storage, BLOB) == blob


async def test_a_missing_blob_is_not_found_at_once(store: Store) -> None:
    with pytest.raises(FileNotFoundError):
        await store.storage.open_read("m" * 43, 0, 10)
    with pytest.raises(FileNotFoundError):
        await store.storage.open_append("m" * 43, 10)
    assert await store.storage.size("m" * 43) is None
    await store.storage.delete("m" * 43)  # nothing there: nothing happens


async def test_delete_leaves_nothing_complete_or_not(store: Store) -> None:
    await finish(store.storage, 0, os.urandom(PART + 1))
    other = "o" * 43
    writer = await store.storage.open_append(other, 0)
    await writer.write(os.urandom(PART + 2))
    await writer.flush()
    await writer.close()
    assert store.held()

    await store.storage.delete(BLOB)
    await store.storage.delete(other)
    assert store.held() == []
    with pytest.raises(FileNotFoundError):
        await store.storage.open_read(BLOB, 0, 1)

"""Blobs of encrypted attachments in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage,
…), behind the :class:`~tresen.relay.attachments.storage.BlobStorage` seam.

A complete blob is one object, ``{prefix}{id}``. An unfinished one is written in parts of
exactly ``part_bytes`` (a multipart upload on that key, started with the first full part) and
a *tail* object, ``{prefix}{id}.tail.{start}``, that :meth:`flush` writes with the bytes
after the last part: S3 refuses parts under 5 MiB unless they are last, so the bytes a client
sent since the last part boundary are made durable in the tail.

Resuming at the offset the relay recorded (every recorded offset was returned by a flush):
the tail that holds it starts at the part boundary below it, ``start = offset - offset %
part_bytes``; the parts before it are in the multipart upload, and the tail's first ``offset -
start`` bytes are read back into the buffer. Bytes beyond the offset (sent but never recorded)
are dropped: a later part overwrites its number, a later tail its key. The tail of the offset
flushed before the last one is kept too, because the relay may have died before recording the
last. A blob the relay finalised but did not record as complete is reopened from the object
(its whole parts copied inside the bucket, the rest read back).

A blob that fits one part, which is most of them, is written with one ``PutObject`` when it
is complete. What the relay holds per upload in progress is bounded: up to
:data:`~tresen.relay.attachments.storage.WRITE_BUFFER` in memory, the rest of one part in an
unnamed temporary file that disappears with the process.
"""

from __future__ import annotations

import asyncio
import tempfile
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, BinaryIO

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from tresen.core.logging import get_logger
from tresen.core.settings import S3Settings
from tresen.relay.attachments.storage import READ_CHUNK, WRITE_BUFFER, BlobReader, BlobWriter

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

__all__ = ["BlobStorageUnavailable", "S3BlobStorage"]

log = get_logger("tresen.relay.attachments")

_MISSING = {"404", "NoSuchKey", "NotFound"}
# Requests in flight to the bucket at once; beyond, they wait for a connection.
MAX_CONNECTIONS = 64
# What one download fetches (and holds) at a time.
READ_WINDOW = 1024 * 1024


class BlobStorageUnavailable(Exception):
    """The bucket cannot be used (unreachable, missing, or refusing the credentials); the
    relay does not start."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3BlobStorage:
    """Blobs in ``settings.bucket`` under ``settings.prefix``. :meth:`start` opens the client
    and checks the bucket; :meth:`close` closes it."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self.part_bytes = settings.part_bytes
        self._stack: AsyncExitStack | None = None
        self._s3: S3Client | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
        config = AioConfig(
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=MAX_CONNECTIONS,
            s3={"addressing_style": "path" if settings.path_style else "auto"},
            # Checksums only where the API requires them: many S3-compatible servers do not
            # take the newer ones, TLS protects the transfer, and every client checks the
            # blob's digest end to end.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        secret = settings.secret_access_key
        stack = AsyncExitStack()
        self._s3 = await stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=settings.endpoint_url,
                region_name=settings.region,
                aws_access_key_id=settings.access_key_id,
                aws_secret_access_key=secret.get_secret_value() if secret else None,
                config=config,
            )
        )
        self._stack = stack
        where = f"S3 bucket {self.bucket!r} at {settings.endpoint_url or 'AWS'}"
        reason = None
        try:
            await self._s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING or code == "NoSuchBucket":
                reason = "does not exist"
            elif code in {"403", "AccessDenied", "Forbidden"}:
                reason = "refuses these credentials"
            else:
                reason = f"answered {code}"
        except BotoCoreError as exc:
            # Unreachable, or no credentials found: the class name says which, never a key.
            reason = f"cannot be reached ({type(exc).__name__})"
        except OSError as exc:
            reason = f"cannot be reached ({type(exc).__name__})"
        if reason is not None:
            await self.close()
            message = f"attachment storage unavailable: {where} {reason}"
            log.error("attachment storage unavailable", bucket=self.bucket, reason=reason)
            raise BlobStorageUnavailable(message)
        log.info(
            "attachment storage",
            kind="s3",
            bucket=self.bucket,
            endpoint=settings.endpoint_url or "AWS",
            prefix=self.prefix,
        )

    async def close(self) -> None:
        stack, self._stack, self._s3 = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            raise RuntimeError("the S3 blob storage has not been started")
        return self._s3

    # --- keys --------------------------------------------------------------------------------

    def key(self, blob_id: str) -> str:
        return f"{self.prefix}{blob_id}"

    def _tails(self, blob_id: str) -> str:
        return f"{self.key(blob_id)}.tail."

    def _tail(self, blob_id: str, start: int) -> str:
        return f"{self._tails(blob_id)}{start}"

    # --- the seam ----------------------------------------------------------------------------

    async def open_append(self, blob_id: str, offset: int) -> BlobWriter:
        if offset == 0:
            return _S3Writer(self, blob_id, base=0, parts=[], upload_id=None, durable=0)
        writer = await self._resume_from_tail(blob_id, offset)
        if writer is None:
            # Finalised, but the relay stopped before recording it: unfinished again.
            writer = await self._reopen_complete(blob_id, offset)
        return writer

    async def open_read(self, blob_id: str, start: int, end: int) -> BlobReader:
        reader = _S3Reader(self, self.key(blob_id), start, end)
        if end <= start:
            if await self.size(blob_id) is None:
                raise FileNotFoundError(blob_id)
            return reader
        try:
            await reader.fetch()  # the first window now: a missing blob is known at once
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise FileNotFoundError(blob_id) from None
            if _code(exc) != "InvalidRange":  # shorter than recorded: the length tells
                raise
            reader.close()
        return reader

    async def delete(self, blob_id: str) -> None:
        for upload_id in await self._uploads(blob_id):
            await self._abort(blob_id, upload_id)
        for tail in await self._list(self._tails(blob_id)):
            await self.s3.delete_object(Bucket=self.bucket, Key=tail)
        await self.s3.delete_object(Bucket=self.bucket, Key=self.key(blob_id))

    async def size(self, blob_id: str) -> int | None:
        return await self._head(self.key(blob_id))

    # --- resuming ----------------------------------------------------------------------------

    async def _resume_from_tail(self, blob_id: str, offset: int) -> _S3Writer | None:
        start = offset - offset % self.part_bytes
        tail = self._tail(blob_id, start)
        held = await self._head(tail)
        if held is None or held < offset - start:
            return None
        upload_id: str | None = None
        parts: list[str] = []
        if start:
            found = await self._find_parts(blob_id, start // self.part_bytes)
            if found is None:
                return None
            upload_id, parts = found
        writer = _S3Writer(
            self, blob_id, base=start, parts=parts, upload_id=upload_id, durable=offset
        )
        writer.tails.add(start)
        try:
            await self._read_into(writer.spool, tail, 0, offset - start)
        except BaseException:
            await writer.close()
            raise
        return writer

    async def _reopen_complete(self, blob_id: str, offset: int) -> _S3Writer:
        size = await self.size(blob_id)
        if size is None or size < offset:
            raise FileNotFoundError(blob_id)
        key, whole = self.key(blob_id), offset // self.part_bytes
        upload_id: str | None = None
        parts: list[str] = []
        if whole:
            upload_id = await self._create_upload(blob_id)
            for index in range(whole):
                first = index * self.part_bytes
                copied = await self.s3.upload_part_copy(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=index + 1,
                    CopySource={"Bucket": self.bucket, "Key": key},
                    CopySourceRange=f"bytes={first}-{first + self.part_bytes - 1}",
                )
                parts.append(copied["CopyPartResult"]["ETag"])
        base = whole * self.part_bytes
        writer = _S3Writer(
            self, blob_id, base=base, parts=parts, upload_id=upload_id, durable=offset
        )
        try:
            await self._read_into(writer.spool, key, base, offset)
        except BaseException:
            await writer.close()
            raise
        log.info("complete attachment reopened", attachment=blob_id[:8], offset=offset)
        return writer

    async def _find_parts(self, blob_id: str, count: int) -> tuple[str, list[str]] | None:
        """The multipart upload holding whole parts 1 to ``count``, and their ETags."""
        for upload_id in await self._uploads(blob_id):
            etags: list[str] = []
            pages = self.s3.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=self.key(blob_id), UploadId=upload_id
            )
            async for page in pages:
                for part in page.get("Parts", []):
                    number = part["PartNumber"]
                    if number > count:
                        break
                    if number != len(etags) + 1 or part["Size"] != self.part_bytes:
                        break
                    etags.append(part["ETag"])
            if len(etags) == count:
                return upload_id, etags
        return None

    # --- requests ----------------------------------------------------------------------------

    async def _head(self, key: str) -> int | None:
        try:
            answer = await self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        return answer["ContentLength"]

    async def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        async for page in pages:
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    async def _uploads(self, blob_id: str) -> list[str]:
        key, ids = self.key(blob_id), list[str]()
        pages = self.s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=key
        )
        async for page in pages:
            ids.extend(u["UploadId"] for u in page.get("Uploads", []) if u["Key"] == key)
        return ids

    async def _create_upload(self, blob_id: str) -> str:
        # One multipart upload per blob: one left by an attempt that was never recorded goes.
        for stale in await self._uploads(blob_id):
            await self._abort(blob_id, stale)
        created = await self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key(blob_id))
        return created["UploadId"]

    async def _abort(self, blob_id: str, upload_id: str) -> None:
        try:
            await self.s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key(blob_id), UploadId=upload_id
            )
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":
                raise

    async def _delete_tails(self, blob_id: str, *, below: int | None = None) -> None:
        prefix = self._tails(blob_id)
        for key in await self._list(prefix):
            start = key.removeprefix(prefix)
            if below is None or (start.isdigit() and int(start) < below):
                await self.s3.delete_object(Bucket=self.bucket, Key=key)

    async def _read_into(self, spool: _Spool, key: str, start: int, end: int) -> None:
        if end <= start:
            return
        reader = _S3Reader(self, key, start, end)
        try:
            await reader.fetch()
        except ClientError as exc:
            if _code(exc) in _MISSING:  # deleted meanwhile
                raise FileNotFoundError(key) from None
            raise
        async for chunk in reader:
            await spool.append(chunk)
        if spool.size != end - start:
            raise FileNotFoundError(f"{key} is shorter than {end} bytes")


class _Spool:
    """The bytes of one part in progress: in memory up to :data:`WRITE_BUFFER`, beyond that in
    an unnamed temporary file (gone when closed, or when the process ends)."""

    def __init__(self) -> None:
        self._memory = bytearray()
        self._file: BinaryIO | None = None
        self.size = 0

    async def append(self, data: bytes | memoryview) -> None:
        self._memory += data
        self.size += len(data)
        if len(self._memory) >= WRITE_BUFFER:
            await self._spill()

    async def _spill(self) -> None:
        if not self._memory:
            return
        data = bytes(self._memory)
        self._memory.clear()
        if self._file is None:
            self._file = await asyncio.to_thread(tempfile.TemporaryFile)
        await asyncio.to_thread(self._file.write, data)

    async def body(self) -> bytes | BinaryIO:
        """What to send: the bytes, or the file at its start."""
        if self._file is None:
            return bytes(self._memory)
        await self._spill()
        file = self._file

        def rewind() -> None:
            file.flush()
            file.seek(0)

        await asyncio.to_thread(rewind)
        return file

    async def clear(self) -> None:
        self._memory.clear()
        self.size = 0
        if self._file is not None:
            file = self._file

            def empty() -> None:
                file.seek(0)
                file.truncate()

            await asyncio.to_thread(empty)

    def close(self) -> None:
        self._memory.clear()
        if self._file is not None:
            self._file.close()


class _S3Writer:
    """Appends from ``base + spool.size``: whole parts go to the multipart upload as they
    fill, :meth:`flush` writes the rest as the tail."""

    def __init__(
        self,
        storage: S3BlobStorage,
        blob_id: str,
        *,
        base: int,
        parts: list[str],
        upload_id: str | None,
        durable: int,
    ) -> None:
        self._storage = storage
        self._blob_id = blob_id
        self._base = base  # where the spool starts: the end of the last whole part
        self._parts = parts  # ETags of parts 1, 2, … in order
        self._upload_id = upload_id
        self._durable = durable
        self.spool = _Spool()
        self.tails: set[int] = set()  # tails this writer wrote or read

    @property
    def offset(self) -> int:
        return self._base + self.spool.size

    async def write(self, data: bytes) -> None:
        part_bytes = self._storage.part_bytes
        view = memoryview(data)
        while view:
            piece, view = view[: part_bytes - self.spool.size], view[part_bytes - self.spool.size :]
            await self.spool.append(piece)
            if self.spool.size == part_bytes:
                await self._send_part()

    async def _send_part(self) -> None:
        storage = self._storage
        if self._upload_id is None:
            self._upload_id = await storage._create_upload(self._blob_id)
        sent = await storage.s3.upload_part(
            Bucket=storage.bucket,
            Key=storage.key(self._blob_id),
            UploadId=self._upload_id,
            PartNumber=len(self._parts) + 1,
            Body=await self.spool.body(),
            ContentLength=self.spool.size,
        )
        self._parts.append(sent["ETag"])
        self._base += self.spool.size
        await self.spool.clear()

    async def flush(self) -> int:
        if self.offset == self._durable:
            return self._durable
        storage = self._storage
        previous = self._durable - self._durable % storage.part_bytes
        await storage.s3.put_object(
            Bucket=storage.bucket,
            Key=storage._tail(self._blob_id, self._base),
            Body=await self.spool.body(),
            ContentLength=self.spool.size,
        )
        self.tails.add(self._base)
        if self._base > previous > 0:
            # The tail of the offset flushed before stays: the relay may not have recorded
            # this one. Older ones hold nothing a resume can need.
            await storage._delete_tails(self._blob_id, below=previous)
        self._durable = self.offset
        return self._durable

    async def finalise(self) -> None:
        storage = self._storage
        key = storage.key(self._blob_id)
        if self._upload_id is None:
            await storage.s3.put_object(
                Bucket=storage.bucket,
                Key=key,
                Body=await self.spool.body(),
                ContentLength=self.spool.size,
            )
            for start in self.tails:
                await storage.s3.delete_object(
                    Bucket=storage.bucket, Key=storage._tail(self._blob_id, start)
                )
        else:
            if self.spool.size:
                await self._send_part()  # the last part may be short
            parts: list[CompletedPartTypeDef] = [
                {"ETag": etag, "PartNumber": number}
                for number, etag in enumerate(self._parts, start=1)
            ]
            await storage.s3.complete_multipart_upload(
                Bucket=storage.bucket,
                Key=key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
            await storage._delete_tails(self._blob_id)
        self._durable = self.offset

    async def close(self) -> None:
        self.spool.close()


class _S3Reader:
    """Bytes ``start`` up to (excluding) ``end`` of an object, in chunks of at most
    :data:`READ_CHUNK`, fetched by ranged ``GetObject`` of :data:`READ_WINDOW` each, read
    whole: a client that reads slowly holds a megabyte of memory, never one of the
    connections that every upload and download of the relay shares."""

    def __init__(self, storage: S3BlobStorage, key: str, start: int, end: int) -> None:
        self._storage = storage
        self._key = key
        self._position = start
        self._end = end
        self._window = b""
        self._at = 0

    async def fetch(self) -> None:
        """The next window; raises ``ClientError`` (``NoSuchKey``, ``InvalidRange``)."""
        last = min(self._position + READ_WINDOW, self._end) - 1
        answer = await self._storage.s3.get_object(
            Bucket=self._storage.bucket, Key=self._key, Range=f"bytes={self._position}-{last}"
        )
        body = answer["Body"]
        try:
            self._window = await body.read()
        finally:
            body.close()
        self._at = 0
        self._position += len(self._window)
        if not self._window:  # shorter than recorded: the answer's length tells the client
            self._end = self._position

    def __aiter__(self) -> _S3Reader:
        return self

    async def __anext__(self) -> bytes:
        if self._at >= len(self._window):
            if self._position >= self._end:
                self.close()
                raise StopAsyncIteration
            try:
                await self.fetch()
            except ClientError:
                # Deleted (or cut) while being read: the answer ends short, as a file that
                # shrank would.
                self.close()
                raise StopAsyncIteration from None
            if not self._window:
                raise StopAsyncIteration
        chunk = self._window[self._at : self._at + READ_CHUNK]
        self._at += len(chunk)
        return chunk

    def close(self) -> None:
        self._window, self._at, self._end = b"", 0, self._position

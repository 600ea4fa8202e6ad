"""The relay's blob store for encrypted attachments (``/v1/attachments``): resumable uploads,
ranged downloads, limits per kind and per device, who may do what, and expiry — with blobs
on the filesystem and in an S3-compatible bucket."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import (
    Backend,
    Device,
    MakeRelay,
    RunningRelay,
    S3Server,
    relay_database_bytes,
    serve_relay,
)

from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode

DAY_MS = 86_400_000


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


async def create(
    relay: RunningRelay, device: Device, size: int, kind: str = "document"
) -> dict[str, Any]:
    r = await relay.http.post(
        "/v1/attachments", json={"kind": kind, "size": size}, headers=device.auth
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def append(
    relay: RunningRelay, device: Device, attachment_id: str, offset: int, data: bytes
) -> httpx.Response:
    return await relay.http.patch(
        f"/v1/attachments/{attachment_id}",
        content=data,
        headers={
            **device.auth,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
    )


async def upload(relay: RunningRelay, device: Device, blob: bytes, kind: str = "document") -> str:
    created = await create(relay, device, len(blob), kind)
    r = await append(relay, device, created["id"], 0, blob)
    assert r.json() == {"offset": len(blob), "complete": True}, r.text
    return str(created["id"])


@dataclass
class BlobStore:
    """Where the relay under test keeps blobs: its ``attachments`` settings, and a look at
    what is stored."""

    settings: dict[str, Any]
    root: Path | None = None
    s3: S3Server | None = None
    bucket: str = ""

    def held(self) -> list[str]:
        """Names of the stored objects (files, or keys and multipart uploads)."""
        if self.s3 is not None:
            return self.s3.held(self.bucket)
        assert self.root is not None
        return sorted(str(p) for p in (self.root / "attachments").rglob("*") if p.is_file())

    def read(self, name: str) -> bytes:
        if self.s3 is not None:
            body: bytes = self.s3.client().get_object(Bucket=self.bucket, Key=name)["Body"].read()
            return body
        return Path(name).read_bytes()


@pytest.fixture(params=["filesystem", "s3"])
def blob_store(request: pytest.FixtureRequest, backend: Backend, tmp_path: Path) -> BlobStore:
    if request.param == "filesystem":
        return BlobStore({}, root=tmp_path)
    if backend.name != "sqlite":
        pytest.skip("the blob storage does not depend on the database: S3 runs with SQLite")
    s3: S3Server = request.getfixturevalue("s3_server")
    bucket = s3.new_bucket()
    return BlobStore(s3.settings(bucket), s3=s3, bucket=bucket)


# For the rules the relay's database enforces (limits, quotas, rates, ids), one storage is
# enough.
rules_only = pytest.mark.parametrize("blob_store", ["filesystem"], indirect=True)


@pytest.fixture
async def relay(
    backend: Backend, tmp_path: Path, blob_store: BlobStore
) -> AsyncIterator[RunningRelay]:
    async with serve_relay(backend, tmp_path, attachments=blob_store.settings) as running:
        yield running


@pytest.fixture
def make_relay(backend: Backend, tmp_path: Path, blob_store: BlobStore) -> MakeRelay:
    def factory(**overrides: Any) -> AbstractAsyncContextManager[RunningRelay]:
        attachments = {**blob_store.settings, **overrides.pop("attachments", {})}
        return serve_relay(backend, tmp_path, attachments=attachments, **overrides)

    return factory


async def test_an_uploaded_blob_downloads_byte_for_byte_by_any_device(
    relay: RunningRelay,
) -> None:
    sender, recipient = await relay.register(), await relay.register()
    blob = os.urandom(300_000)

    created = await create(relay, sender, len(blob), "media")
    assert len(created["id"]) == 43
    assert (created["offset"], created["size"]) == (0, len(blob))
    r = await append(relay, sender, created["id"], 0, blob)
    assert r.status_code == 200, r.text
    assert r.json() == {"offset": len(blob), "complete": True}

    r = await relay.http.get(f"/v1/attachments/{created['id']}", headers=recipient.auth)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-length"] == str(len(blob))
    assert r.content == blob


@rules_only
async def test_ids_are_random_and_reveal_nothing(relay: RunningRelay) -> None:
    device = await relay.register()
    ids = {(await create(relay, device, 10))["id"] for _ in range(5)}
    assert len(ids) == 5
    assert all(len(i) == 43 and "=" not in i for i in ids)


async def test_an_upload_resumes_where_the_relay_recorded_it(relay: RunningRelay) -> None:
    device = await relay.register()
    blob = os.urandom(200_000)
    attachment_id = (await create(relay, device, len(blob)))["id"]

    r = await append(relay, device, attachment_id, 0, blob[:70_000])
    assert r.json() == {"offset": 70_000, "complete": False}
    r = await relay.http.get(f"/v1/attachments/{attachment_id}/upload", headers=device.auth)
    assert r.status_code == 200
    state = r.json()
    assert (state["offset"], state["size"], state["complete"]) == (70_000, len(blob), False)
    # Not downloadable before it is complete.
    r = await relay.http.get(f"/v1/attachments/{attachment_id}", headers=device.auth)
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.ATTACHMENT_NOT_FOUND

    r = await append(relay, device, attachment_id, 70_000, blob[70_000:])
    assert r.json() == {"offset": len(blob), "complete": True}
    r = await relay.http.get(f"/v1/attachments/{attachment_id}", headers=device.auth)
    assert r.content == blob


async def test_a_connection_that_breaks_mid_body_keeps_what_arrived(
    relay: RunningRelay,
) -> None:
    import asyncio

    device = await relay.register()
    blob = os.urandom(600_000)
    attachment_id = (await create(relay, device, len(blob)))["id"]
    host, port = relay.url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (
            f"PATCH /v1/attachments/{attachment_id} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {device.token}\r\nUpload-Offset: 0\r\n"
            "Content-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {len(blob)}\r\n\r\n"
        ).encode()
        + blob[:250_000]
    )
    await writer.drain()

    async def offset() -> int:
        r = await relay.http.get(f"/v1/attachments/{attachment_id}/upload", headers=device.auth)
        return int(r.json()["offset"])

    writer.close()
    async with asyncio.timeout(20):
        while (current := await offset()) == 0:
            await asyncio.sleep(0.05)
    assert current == 250_000

    r = await append(relay, device, attachment_id, current, blob[current:])
    assert r.json() == {"offset": len(blob), "complete": True}
    r = await relay.http.get(f"/v1/attachments/{attachment_id}", headers=device.auth)
    assert r.content == blob


async def test_an_append_at_the_wrong_offset_is_refused_with_the_right_one(
    relay: RunningRelay,
) -> None:
    device = await relay.register()
    attachment_id = (await create(relay, device, 100))["id"]
    await append(relay, device, attachment_id, 0, b"x" * 40)

    r = await append(relay, device, attachment_id, 0, b"y" * 40)
    assert r.status_code == 409
    assert error_of(r)["code"] == ErrorCode.ATTACHMENT_OFFSET_MISMATCH
    assert error_of(r)["details"]["offset"] == 40

    await append(relay, device, attachment_id, 40, b"z" * 60)
    r = await append(relay, device, attachment_id, 100, b"more")
    assert r.status_code == 409
    assert error_of(r)["code"] == ErrorCode.ATTACHMENT_COMPLETE


async def test_a_body_past_the_declared_size_is_refused(relay: RunningRelay) -> None:
    device = await relay.register()
    attachment_id = (await create(relay, device, 100))["id"]

    r = await append(relay, device, attachment_id, 0, b"x" * 101)
    assert r.status_code == 413
    assert error_of(r)["code"] == ErrorCode.ATTACHMENT_TOO_LARGE
    r = await relay.http.get(f"/v1/attachments/{attachment_id}/upload", headers=device.auth)
    assert r.json()["offset"] == 0

    async def chunked() -> Any:  # no Content-Length: the relay cuts at the size
        yield b"a" * 60
        yield b"b" * 60

    r = await relay.http.patch(
        f"/v1/attachments/{attachment_id}",
        content=chunked(),
        headers={**device.auth, "Upload-Offset": "0"},
    )
    assert r.status_code == 413
    assert error_of(r)["details"]["offset"] == 100
    r = await relay.http.get(f"/v1/attachments/{attachment_id}", headers=device.auth)
    assert r.content == b"a" * 60 + b"b" * 40


async def test_ranges_resume_a_download(relay: RunningRelay) -> None:
    device = await relay.register()
    blob = os.urandom(1000)
    attachment_id = await upload(relay, device, blob)
    url = f"/v1/attachments/{attachment_id}"

    r = await relay.http.get(url, headers={**device.auth, "Range": "bytes=600-"})
    assert r.status_code == 206
    assert r.headers["content-range"] == "bytes 600-999/1000"
    assert r.headers["content-length"] == "400"
    assert r.content == blob[600:]

    r = await relay.http.get(url, headers={**device.auth, "Range": "bytes=10-19"})
    assert (r.status_code, r.content) == (206, blob[10:20])
    assert r.headers["content-range"] == "bytes 10-19/1000"

    r = await relay.http.get(url, headers={**device.auth, "Range": "bytes=990-5000"})
    assert (r.status_code, r.content) == (206, blob[990:])

    r = await relay.http.get(url, headers={**device.auth, "Range": "bytes=1000-"})
    assert r.status_code == 416
    assert error_of(r)["code"] == ErrorCode.ATTACHMENT_RANGE_NOT_SATISFIABLE
    assert r.headers["content-range"] == "bytes */1000"

    r = await relay.http.get(url, headers={**device.auth, "Range": "pages=1-2"})
    assert (r.status_code, r.content) == (200, blob)


@rules_only
async def test_each_kind_has_its_size_limit(make_relay: MakeRelay) -> None:
    limits = {"max_media_bytes": 1000, "max_document_bytes": 5000}
    async with make_relay(attachments=limits) as relay:
        device = await relay.register()
        await create(relay, device, 1000, "media")
        await create(relay, device, 5000, "document")
        for kind, size in (("media", 1001), ("document", 5001)):
            r = await relay.http.post(
                "/v1/attachments", json={"kind": kind, "size": size}, headers=device.auth
            )
            assert r.status_code == 413
            assert error_of(r)["code"] == ErrorCode.ATTACHMENT_TOO_LARGE
        for bad in ({"kind": "media", "size": 0}, {"kind": "photo", "size": 5}, {"size": 5}):
            r = await relay.http.post("/v1/attachments", json=bad, headers=device.auth)
            assert r.status_code == 400
            assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER


@rules_only
async def test_a_device_quota_counts_stored_and_reserved_bytes(make_relay: MakeRelay) -> None:
    async with make_relay(attachments={"quota_bytes": 1000}) as relay:
        device, other = await relay.register(), await relay.register()
        done = await upload(relay, device, os.urandom(600))
        await create(relay, device, 300)  # reserved, not yet sent

        r = await relay.http.post(
            "/v1/attachments", json={"kind": "media", "size": 101}, headers=device.auth
        )
        assert r.status_code == 429
        assert error_of(r)["code"] == ErrorCode.ATTACHMENT_QUOTA_EXCEEDED
        # Another device has its own quota.
        await create(relay, other, 1000)

        r = await relay.http.delete(f"/v1/attachments/{done}", headers=device.auth)
        assert r.status_code == 204
        await create(relay, device, 700)


@rules_only
async def test_unfinished_uploads_per_device_are_bounded(make_relay: MakeRelay) -> None:
    async with make_relay(attachments={"max_unfinished": 2}) as relay:
        device = await relay.register()
        first = (await create(relay, device, 10))["id"]
        await create(relay, device, 10)
        r = await relay.http.post(
            "/v1/attachments", json={"kind": "media", "size": 10}, headers=device.auth
        )
        assert r.status_code == 429
        assert error_of(r)["code"] == ErrorCode.ATTACHMENT_QUOTA_EXCEEDED
        await append(relay, device, first, 0, b"0123456789")
        await create(relay, device, 10)


@rules_only
async def test_creations_per_minute_are_limited(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock, attachments={"creations_per_minute": 3}) as relay:
        device = await relay.register()
        for _ in range(3):
            await create(relay, device, 10)
        r = await relay.http.post(
            "/v1/attachments", json={"kind": "media", "size": 10}, headers=device.auth
        )
        assert r.status_code == 429
        assert error_of(r)["code"] == ErrorCode.REQUEST_RATE_LIMITED
        assert int(r.headers["retry-after"]) >= 1
        clock.advance(seconds=20)
        await create(relay, device, 10)


@rules_only
async def test_a_business_device_may_hold_what_a_customer_may_not(make_relay: MakeRelay) -> None:
    limits = {"max_unfinished": 1, "business_max_unfinished": 50}
    async with make_relay(attachments=limits) as relay:
        business = await relay.register()
        r = await relay.http.put(
            "/v1/business/profile",
            json={"display_name": f"Airline {secrets.token_hex(3)}"},
            headers=business.auth,
        )
        assert r.status_code == 201, r.text
        for _ in range(50):
            await create(relay, business, 50_000)
        customer = await relay.register()
        await create(relay, customer, 50_000)
        r = await relay.http.post(
            "/v1/attachments", json={"kind": "document", "size": 10}, headers=customer.auth
        )
        assert error_of(r)["code"] == ErrorCode.ATTACHMENT_QUOTA_EXCEEDED


async def test_only_the_uploader_appends_inspects_or_deletes(relay: RunningRelay) -> None:
    owner, other = await relay.register(), await relay.register()
    attachment_id = (await create(relay, owner, 20))["id"]

    r = await append(relay, other, attachment_id, 0, b"x" * 20)
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.ATTACHMENT_NOT_FOUND
    r = await relay.http.get(f"/v1/attachments/{attachment_id}/upload", headers=other.auth)
    assert r.status_code == 404

    await append(relay, owner, attachment_id, 0, b"y" * 20)
    r = await relay.http.delete(f"/v1/attachments/{attachment_id}", headers=other.auth)
    assert r.status_code == 404
    r = await relay.http.get(f"/v1/attachments/{attachment_id}", headers=other.auth)
    assert (r.status_code, r.content) == (200, b"y" * 20)

    r = await relay.http.delete(f"/v1/attachments/{attachment_id}", headers=owner.auth)
    assert r.status_code == 204
    r = await relay.http.get(f"/v1/attachments/{attachment_id}", headers=other.auth)
    assert r.status_code == 404


@rules_only
async def test_unknown_ids_and_no_token(relay: RunningRelay) -> None:
    device = await relay.register()
    unknown = "A" * 43
    r = await relay.http.get(f"/v1/attachments/{unknown}", headers=device.auth)
    assert error_of(r)["code"] == ErrorCode.ATTACHMENT_NOT_FOUND
    r = await relay.http.get(f"/v1/attachments/{'A' * 42}", headers=device.auth)
    assert r.status_code == 400
    r = await relay.http.get(f"/v1/attachments/{unknown}")
    assert r.status_code == 401


async def test_expired_uploads_and_blobs_are_swept(
    make_relay: MakeRelay, blob_store: BlobStore
) -> None:
    clock = ManualClock()
    limits = {"upload_ttl_s": 3600, "ttl_s": 2 * 86_400, "quota_bytes": 2000}
    async with make_relay(clock=clock, attachments=limits) as relay:
        service = relay.ctx.attachments
        device = await relay.register()
        unfinished = (await create(relay, device, 1000))["id"]
        await append(relay, device, unfinished, 0, b"u" * 10)
        clock.advance(minutes=30)
        complete = await upload(relay, device, b"c" * 1000)
        assert len(blob_store.held()) == 2

        clock.advance(minutes=31)  # the upload's hour is over
        r = await append(relay, device, unfinished, 10, b"u" * 10)
        assert r.status_code == 404
        assert await service.sweep_expired() == 1
        assert len(blob_store.held()) == 1
        await create(relay, device, 1000)  # its reserved bytes are free again

        clock.advance(hours=47)
        r = await relay.http.get(f"/v1/attachments/{complete}", headers=device.auth)
        assert r.status_code == 200
        clock.advance(hours=1)
        r = await relay.http.get(f"/v1/attachments/{complete}", headers=device.auth)
        assert r.status_code == 404
        assert await service.sweep_expired() == 2
        assert blob_store.held() == []
        assert await attachment_rows(relay) == 0


@pytest.mark.parametrize("size", [1, 65_536, 262_144, 3 * 1_048_576 + 7])
async def test_sizes_around_the_write_buffer(relay: RunningRelay, size: int) -> None:
    device = await relay.register()
    blob = os.urandom(size)
    attachment_id = await upload(relay, device, blob)
    r = await relay.http.get(f"/v1/attachments/{attachment_id}", headers=device.auth)
    assert r.content == blob


async def test_the_relay_keeps_the_bytes_opaque_and_nothing_else(
    relay: RunningRelay,
    backend: Backend,
    blob_store: BlobStore,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The relay stores what the client sent, as sent, in the blob store only: not in its
    database, not in its logs (the client encrypts; the end-to-end test checks plaintext)."""
    marker = f"blob-marker-{secrets.token_hex(8)}".encode()
    blob = os.urandom(70_000) + marker + os.urandom(70_000)
    device = await relay.register()
    attachment_id = (await create(relay, device, len(blob)))["id"]
    await append(relay, device, attachment_id, 0, blob[:100_000])
    await append(relay, device, attachment_id, 100_000, blob[100_000:])
    r = await relay.http.get(f"/v1/attachments/{attachment_id}", headers=device.auth)
    assert r.content == blob

    [stored] = blob_store.held()
    assert blob_store.read(stored) == blob  # positive control: the bytes are there, unchanged
    assert marker not in await relay_database_bytes(backend)
    r = await relay.http.delete(f"/v1/attachments/{attachment_id}", headers=device.auth)
    assert r.status_code == 204
    out, err = capfd.readouterr()
    assert f"attachment={attachment_id[:8]}" in out + err  # positive control: logs captured
    assert attachment_id not in out + err  # the id is the capability to download
    assert marker.decode() not in out + err


async def test_memory_stays_bounded_whatever_the_upload_size(relay: RunningRelay) -> None:
    """64 MiB up and down in one request each: the process's peak allocation stays a small
    fraction of it (bodies stream to and from the file)."""
    import hashlib
    import tracemalloc

    size, piece = 64 * 1_048_576, 64 * 1024
    device = await relay.register()
    attachment_id = (await create(relay, device, size))["id"]
    pattern = os.urandom(piece)

    async def body() -> Any:
        for _ in range(size // piece):
            yield pattern

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        r = await relay.http.patch(
            f"/v1/attachments/{attachment_id}",
            content=body(),
            headers={**device.auth, "Upload-Offset": "0", "Content-Length": str(size)},
        )
        _, upload_peak = tracemalloc.get_traced_memory()
        assert r.json() == {"offset": size, "complete": True}

        tracemalloc.reset_peak()
        digest, received = hashlib.sha256(), 0
        async with relay.http.stream(
            "GET", f"/v1/attachments/{attachment_id}", headers=device.auth
        ) as response:
            async for chunk in response.aiter_bytes():
                digest.update(chunk)
                received += len(chunk)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size
    assert digest.digest() == hashlib.sha256(pattern * (size // piece)).digest()
    assert upload_peak < 8 * 1_048_576, upload_peak
    assert download_peak < 8 * 1_048_576, download_peak


async def test_a_relay_that_starts_sweeps_what_expired_while_it_was_down(
    make_relay: MakeRelay, blob_store: BlobStore
) -> None:
    import asyncio

    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        device = await relay.register()
        await upload(relay, device, b"expires while the relay is down")
        assert len(blob_store.held()) == 1
    clock.advance(hours=31 * 24)
    async with make_relay(clock=clock) as restarted:
        async with asyncio.timeout(20):
            while blob_store.held() or await attachment_rows(restarted):
                await asyncio.sleep(0.02)


async def attachment_rows(relay: RunningRelay) -> int:
    from sqlalchemy import func, select

    from tresen.relay.schema import attachments

    async with relay.ctx.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(attachments))).scalar_one())

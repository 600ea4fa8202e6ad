"""A relay that keeps attachment blobs in an S3-compatible bucket: started as the operator
starts it (``tresen relay serve`` with ``TRESEN_ATTACHMENTS__*``), refusing to start without
its bucket, and keeping nothing but ciphertext under random ids there."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from support import S3_KEYS, Backend, RelayProcess, S3Server, free_port

from tresen.core.http import tls_context
from tresen.core.settings import Settings
from tresen.relay.accounts.sms import read_last_code

pytestmark = pytest.mark.slow


def s3_env(s3: S3Server, bucket: str) -> dict[str, str]:
    return {
        "TRESEN_ATTACHMENTS__STORAGE": "s3",
        "TRESEN_ATTACHMENTS__S3__ENDPOINT_URL": s3.url,
        "TRESEN_ATTACHMENTS__S3__BUCKET": bucket,
        "TRESEN_ATTACHMENTS__S3__PREFIX": "relay-one/",
        "TRESEN_ATTACHMENTS__S3__PATH_STYLE": "true",
        "TRESEN_ATTACHMENTS__S3__ACCESS_KEY_ID": S3_KEYS["access_key_id"],
        "TRESEN_ATTACHMENTS__S3__SECRET_ACCESS_KEY": S3_KEYS["secret_access_key"],
    }


def sqlite(tmp_path: Path) -> Backend:
    return Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")


async def test_a_relay_process_keeps_blobs_in_the_bucket(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    relay = RelayProcess(sqlite(tmp_path), tmp_path / "relay", **s3_env(s3_server, bucket))
    await relay.start()
    try:
        async with httpx.AsyncClient(verify=tls_context(), base_url=relay.url, timeout=30) as http:
            phone = "+4915123400001"
            r = await http.post("/v1/registration/code", json={"phone": phone})
            assert r.status_code == 202, r.text
            code = read_last_code(relay.sms_file, phone)
            r = await http.post("/v1/registration/verify", json={"phone": phone, "code": code})
            auth = {"Authorization": f"Bearer {r.json()['token']}"}

            blob = os.urandom(9 * 1_048_576 + 123)  # one whole part and a short last one
            r = await http.post(
                "/v1/attachments", json={"kind": "document", "size": len(blob)}, headers=auth
            )
            attachment_id = r.json()["id"]
            for start, end in ((0, 300_000), (300_000, len(blob))):
                r = await http.patch(
                    f"/v1/attachments/{attachment_id}",
                    content=blob[start:end],
                    headers={**auth, "Upload-Offset": str(start)},
                )
                assert r.json() == {"offset": end, "complete": end == len(blob)}, r.text

            r = await http.get(f"/v1/attachments/{attachment_id}", headers=auth)
            assert r.content == blob
            r = await http.get(
                f"/v1/attachments/{attachment_id}", headers={**auth, "Range": "bytes=5-9"}
            )
            assert (r.status_code, r.content) == (206, blob[5:10])

            # The bucket holds the ciphertext as sent, under the prefix and the random id.
            assert s3_server.held(bucket) == [f"relay-one/{attachment_id}"]
            stored = s3_server.client().get_object(Bucket=bucket, Key=f"relay-one/{attachment_id}")
            assert stored["Body"].read() == blob

            r = await http.delete(f"/v1/attachments/{attachment_id}", headers=auth)
            assert r.status_code == 204
            assert s3_server.held(bucket) == []
    finally:
        relay.stop()
    log = relay.log_file.read_text()
    assert f"bucket={bucket}" in log  # positive control: the storage is named in the log
    assert S3_KEYS["secret_access_key"] not in log
    assert S3_KEYS["access_key_id"] not in log


@pytest.mark.parametrize("reachable", [True, False])
async def test_a_relay_without_its_bucket_does_not_start(
    s3_server: S3Server, tmp_path: Path, reachable: bool
) -> None:
    env = s3_env(s3_server, "no-such-bucket")
    if not reachable:
        # A port nothing listens on once the probe socket is closed.
        env["TRESEN_ATTACHMENTS__S3__ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    relay = RelayProcess(sqlite(tmp_path), tmp_path / "relay", **env)
    with pytest.raises(RuntimeError) as failed:
        await relay.start()
    log = str(failed.value)
    assert "attachment storage unavailable: S3 bucket 'no-such-bucket'" in log
    assert ("does not exist" if reachable else "cannot be reached") in log
    assert S3_KEYS["secret_access_key"] not in log


def test_s3_storage_needs_a_bucket_and_both_keys() -> None:
    with pytest.raises(ValidationError, match=r"set attachments\.s3\.bucket"):
        Settings(attachments={"storage": "s3"})
    with pytest.raises(ValidationError, match="access_key_id and secret_access_key"):
        Settings(attachments={"storage": "s3", "s3": {"bucket": "b", "access_key_id": "k"}})
    with pytest.raises(ValidationError):
        Settings(attachments={"storage": "s3", "s3": {"bucket": "b", "part_bytes": 1_048_576}})
    settings = Settings(attachments={"storage": "s3", "s3": {"bucket": "b", **S3_KEYS}})
    assert S3_KEYS["secret_access_key"] not in repr(settings)

"""The relay's HTTP API as the client sees it (an injectable ``httpx`` transport)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import quote

import httpx

from tresen.core.errors import ErrorCode
from tresen.core.http import tls_context
from tresen.crypto.olm import SignedKey
from tresen.wire import relay as wire

__all__ = ["DirectoryDevice", "RelayApi", "RelayError"]


class RelayError(Exception):
    """A rejection by the relay, with its stable numeric code."""

    def __init__(self, code: int, message: str, details: dict[str, Any] | None = None) -> None:
        problems = (details or {}).get("problems")
        if isinstance(problems, list) and problems:
            message_text = (
                message
                + " ("
                + "; ".join(
                    f"{p.get('field')}: {p.get('problem')}" for p in problems if isinstance(p, dict)
                )
                + ")"
            )
        else:
            message_text = message
        super().__init__(f"{code}: {message_text}")
        self.code = code
        self.message = message
        self.details = details or {}


class DirectoryDevice:
    __slots__ = ("curve25519", "device_id", "ed25519", "one_time_key", "registration_id")

    def __init__(
        self,
        device_id: int,
        registration_id: int,
        curve25519: str,
        ed25519: str,
        one_time_key: tuple[SignedKey, bool] | None = None,
    ) -> None:
        self.device_id = device_id
        self.registration_id = registration_id
        self.curve25519 = curve25519
        self.ed25519 = ed25519
        self.one_time_key = one_time_key


def _device(entry: dict[str, Any]) -> DirectoryDevice:
    key = entry.get("one_time_key")
    return DirectoryDevice(
        entry["device_id"],
        entry["registration_id"],
        entry["identity_keys"]["curve25519"],
        entry["identity_keys"]["ed25519"],
        None
        if key is None
        else (SignedKey(key["key_id"], key["public_key"], key["signature"]), key["fallback"]),
    )


def _raise_for(response: httpx.Response) -> NoReturn:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        raise RelayError(response.status_code, response.text[:200]) from None
    details = error.get("details") or {}
    if "offset" not in details and "Upload-Offset" in response.headers:
        details = {**details, "offset": response.headers["Upload-Offset"]}
    raise RelayError(error["code"], error["message"], details)


class RelayApi:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.AsyncClient(
            base_url=self.base_url, transport=transport, timeout=timeout_s, verify=tls_context()
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        response = await self._http.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            _raise_for(response)
        return None if response.status_code == 204 else response.json()

    # --- registration ------------------------------------------------------------------------

    async def request_code(self, phone: str) -> int:
        body = await self._call("POST", "/v1/registration/code", json={"phone": phone})
        return int(body["expires_in_s"])

    async def verify_code(self, phone: str, code: str, device_name: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._call(
            "POST",
            "/v1/registration/verify",
            json={"phone": phone, "code": code, "device_name": device_name},
        )
        return body

    async def me(self) -> dict[str, Any]:
        body: dict[str, Any] = await self._call("GET", "/v1/me")
        return body

    async def export_me(self) -> dict[str, Any]:
        """What the relay holds about this account (``GET /v1/me/export``)."""
        body: dict[str, Any] = await self._call("GET", "/v1/me/export")
        return body

    async def delete_me(self) -> None:
        """Delete this account at the relay (``DELETE /v1/me``)."""
        await self._call("DELETE", "/v1/me")

    async def lookup_phone(self, phone: str) -> dict[str, str]:
        body: dict[str, str] = await self._call("GET", "/v1/accounts", params={"phone": phone})
        return body

    async def lookup_account(self, account_id: str) -> dict[str, str]:
        body: dict[str, str] = await self._call("GET", f"/v1/accounts/{account_id}")
        return body

    # --- keys ------------------------------------------------------------------------------

    async def upload_keys(
        self,
        *,
        identity: tuple[str, str] | None = None,
        one_time_keys: list[SignedKey] | None = None,
        fallback_key: SignedKey | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if identity is not None:
            body["identity_keys"] = {"curve25519": identity[0], "ed25519": identity[1]}
        if one_time_keys:
            body["one_time_keys"] = [_key(k) for k in one_time_keys]
        if fallback_key is not None:
            body["fallback_key"] = _key(fallback_key)
        result: dict[str, Any] = await self._call("PUT", "/v1/keys", json=body)
        return result

    async def directory(self, account_id: str) -> list[DirectoryDevice]:
        body = await self._call("GET", f"/v1/keys/{account_id}")
        return [_device(d) for d in body["devices"]]

    async def directory_with_proof(
        self, account_id: str, since: int | None
    ) -> tuple[list[DirectoryDevice], dict[str, Any] | None]:
        """The account's devices and the key log's proofs of them (``None``: the relay keeps
        no log), with a consistency proof from the log size ``since``."""
        params: dict[str, Any] = {"transparency": "true"}
        if since is not None:
            params["transparency_since"] = since
        body = await self._call("GET", f"/v1/keys/{account_id}", params=params)
        return [_device(d) for d in body["devices"]], body.get("transparency")

    async def key_log_consistency(self, first: int, second: int) -> list[str]:
        body = await self._call(
            "GET", "/v1/transparency/consistency", params={"first": first, "second": second}
        )
        return list(body["proof"])

    async def key_log_epochs(self, after: int, limit: int) -> list[dict[str, Any]]:
        body = await self._call(
            "GET", "/v1/transparency/epochs", params={"after": after, "limit": limit}
        )
        return list(body["epochs"])

    async def certificate_in_log(self, serial: int) -> dict[str, Any] | None:
        """Where certificate ``serial`` is in the key log, with its inclusion proof (``None``:
        the relay keeps no log)."""
        try:
            body: dict[str, Any] = await self._call(
                "GET", f"/v1/transparency/certificates/{serial}"
            )
        except RelayError as exc:
            if exc.code == ErrorCode.NO_EPOCH:
                return None
            raise
        return body

    async def key_log_latest(self) -> dict[str, Any]:
        body: dict[str, Any] = await self._call("GET", "/v1/transparency/epochs/latest")
        return body

    async def claim(self, account_id: str, device_ids: list[int]) -> list[DirectoryDevice]:
        body = await self._call(
            "POST", f"/v1/keys/{account_id}/claim", json={"device_ids": device_ids}
        )
        return [_device(d) for d in body["devices"]]

    async def claim_many(
        self, account_ids: list[str], *, transparency_since: int | None = None
    ) -> tuple[dict[str, list[DirectoryDevice]], list[str], dict[str, dict[str, Any]]]:
        """A key of every device of each of up to 64 accounts; also the accounts that do not
        exist, and the key log's proofs of each account's devices (where the relay keeps a
        log)."""
        request: dict[str, Any] = {"accounts": account_ids, "transparency": True}
        if transparency_since is not None:
            request["transparency_since"] = transparency_since
        body = await self._call("POST", "/v1/keys/claim", json=request)
        found = {a["account_id"]: [_device(d) for d in a["devices"]] for a in body["accounts"]}
        proofs = {
            a["account_id"]: a["transparency"] for a in body["accounts"] if a.get("transparency")
        }
        return found, list(body["unknown"]), proofs

    # --- mailbox (HTTP fallback) -----------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> dict[str, Any]:
        body = dict(frame)
        body["per_device"] = [
            {**c, "body": base64.b64encode(c["body"]).decode()} for c in frame["per_device"]
        ]
        result: dict[str, Any] = await self._call("POST", "/v1/messages", json=body)
        return result

    async def resend(self, frame: wire.Resend) -> dict[str, Any]:
        body = {
            "client_msg_id": frame.client_msg_id,
            "device_id": frame.device_id,
            "type": frame.type,
            "body": base64.b64encode(frame.body).decode(),
            "registration_id": frame.registration_id,
        }
        result: dict[str, Any] = await self._call(
            "POST", f"/v1/messages/{frame.message_id}/resend", json=body
        )
        return result

    async def receipts(self, message_ids: list[str]) -> int:
        body = await self._call("POST", "/v1/receipts", json={"message_ids": message_ids})
        return int(body["routed"])

    # --- businesses and the operator -------------------------------------------------------

    async def operator_keys(self) -> dict[str, Any]:
        body: dict[str, Any] = await self._call("GET", "/v1/operator/keys")
        return body

    async def revoked_certificates(self) -> dict[str, str]:
        body: dict[str, str] = await self._call("GET", "/v1/certificates/revoked")
        return body

    async def business(self, account_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._call("GET", f"/v1/businesses/{account_id}")
        return body

    async def search_businesses(
        self, query: str, category: str | None, limit: int
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"q": query, "limit": limit}
        if category:
            params["category"] = category
        body = await self._call("GET", "/v1/businesses", params=params)
        return list(body["businesses"])

    async def save_business_profile(self, profile: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = await self._call("PUT", "/v1/business/profile", json=profile)
        return body

    async def set_business_picture(self, data: bytes, content_type: str) -> None:
        """The business's profile picture: a JPEG or PNG (the relay checks type and size)."""
        await self._call(
            "PUT",
            "/v1/business/profile/picture",
            content=data,
            headers={"Content-Type": content_type},
        )

    async def remove_business_picture(self) -> None:
        await self._call("DELETE", "/v1/business/profile/picture")

    async def own_business_profile(self) -> dict[str, Any]:
        body: dict[str, Any] = await self._call("GET", "/v1/business/profile")
        return body

    async def request_verification(self, note: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._call(
            "POST", "/v1/business/verification", json={"note": note}
        )
        return body

    # --- templates ---------------------------------------------------------------------------

    async def submit_template(self, template: dict[str, Any]) -> dict[str, Any]:
        """Submit a template in the Cloud API shape; ``{"id", "status", "category"}``."""
        body: dict[str, Any] = await self._call(
            "POST", "/v1/business/message_templates", json=template
        )
        return body

    async def templates(self, **params: Any) -> dict[str, Any]:
        """This business's templates (``status``, ``name``, ``after``, ``limit``)."""
        body: dict[str, Any] = await self._call(
            "GET", "/v1/business/message_templates", params=params
        )
        return body

    async def delete_template(self, name: str, template_id: str | None = None) -> dict[str, Any]:
        params = {"name": name} if template_id is None else {"name": name, "hsm_id": template_id}
        body: dict[str, Any] = await self._call(
            "DELETE", "/v1/business/message_templates", params=params
        )
        return body

    async def signed_template(self, template_id: int) -> dict[str, Any]:
        """The operator-signed form of an approved template: ``{"id", "body", "signature"}``."""
        body: dict[str, Any] = await self._call("GET", f"/v1/templates/{template_id}")
        return body

    async def report(
        self,
        account_id: str,
        reason: str,
        message_id: str | None = None,
        detail: str = "",
        *,
        block: bool = False,
    ) -> dict[str, Any]:
        """Report an account to the operator (it counts against a business's quality)."""
        request: dict[str, Any] = {"account_id": account_id, "reason": reason}
        if message_id is not None:
            request["message_id"] = message_id
        if detail:
            request["detail"] = detail
        if block:
            request["block"] = True
        body: dict[str, Any] = await self._call("POST", "/v1/reports", json=request) or {}
        return body

    async def block(self, account_id: str) -> bool:
        body = await self._call("POST", "/v1/blocks", json={"account_id": account_id})
        return bool(body["new"])

    async def unblock(self, account_id: str) -> None:
        await self._call("DELETE", f"/v1/blocks/{account_id}")

    async def blocked(self) -> list[str]:
        body = await self._call("GET", "/v1/blocks")
        return [str(b["account_id"]) for b in body["blocked"]]

    async def quality(self) -> dict[str, Any]:
        body: dict[str, Any] = await self._call("GET", "/v1/business/quality")
        return body

    async def rate_card(self) -> list[dict[str, Any]]:
        """The prices per delivered template that apply to this business."""
        body = await self._call("GET", "/v1/business/rate-card")
        return list(body["rates"])

    async def own_statement(
        self, month: str, *, after: str | None = None, limit: int = 500
    ) -> dict[str, Any]:
        """One page of this business's statement of ``month`` (``YYYY-MM``, UTC)."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        body: dict[str, Any] = await self._call(
            "GET", f"/v1/business/statements/{quote(month, safe='')}", params=params
        )
        return body

    # --- consent ---------------------------------------------------------------------------

    async def submit_consents(self, statements: list[dict[str, str]]) -> list[dict[str, Any]]:
        body = await self._call("POST", "/v1/consents", json={"statements": statements})
        return list(body["consents"])

    async def consents(self) -> list[dict[str, Any]]:
        body = await self._call("GET", "/v1/consents")
        return list(body["businesses"])

    async def consent_records(self, business: str, customer: str, history: int) -> dict[str, Any]:
        body: dict[str, Any] = await self._call(
            "GET", f"/v1/consents/{business}/{customer}", params={"history": history}
        )
        return body

    async def attest_consent(self, attestation: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = await self._call(
            "POST", "/v1/consents/attestations", json=attestation
        )
        return body

    # --- attachments (opaque encrypted blobs) ---------------------------------------------

    async def create_attachment(self, kind: str, size: int) -> dict[str, Any]:
        body: dict[str, Any] = await self._call(
            "POST", "/v1/attachments", json={"kind": kind, "size": size}
        )
        return body

    async def append_attachment(self, blob_id: str, offset: int, piece: bytes) -> dict[str, Any]:
        body: dict[str, Any] = await self._call(
            "PATCH",
            f"/v1/attachments/{blob_id}",
            headers={
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
            content=piece,
        )
        return body

    async def attachment_upload(self, blob_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._call("GET", f"/v1/attachments/{blob_id}/upload")
        return body

    async def delete_attachment(self, blob_id: str) -> None:
        await self._call("DELETE", f"/v1/attachments/{blob_id}")

    async def download_attachment(
        self, blob_id: str, start: int, sink: Callable[[bytes], None]
    ) -> None:
        """Hand the blob's bytes from ``start`` on to ``sink`` as they arrive (streamed)."""
        headers = {"Range": f"bytes={start}-"} if start else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        async with self._http.stream("GET", f"/v1/attachments/{blob_id}", headers=headers) as r:
            if r.status_code >= 400:
                await r.aread()
                _raise_for(r)
            if start and r.status_code != 206:
                raise RelayError(r.status_code, "the relay did not resume the download")
            async for block in r.aiter_bytes():
                sink(block)


def _key(key: SignedKey) -> dict[str, str]:
    return {"key_id": key.key_id, "public_key": key.public_key, "signature": key.signature}

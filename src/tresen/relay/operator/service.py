"""The operator's rules: the signing key and its rotation, certificates and their renewal,
revocations, operator tokens, and the administrative actions on businesses (verify, reject,
revoke, suspend).

Every administrative action is one transaction that changes its rows and writes its
``admin_audit`` row, so the audit log never misses or invents an action.

Verification states of a business profile (``business_profiles.verification``):
``unverified`` → (the business asks) ``pending`` → ``verified`` | ``rejected``; ``verified`` →
``revoked`` (by the operator) or ``pending`` (a rename or new device keys, set by the business
directory, which also calls :meth:`OperatorService.revoke_for_change`). A verified business has
at most one *current* certificate: the newest that is unrevoked, unexpired and signed by a key
that has not retired. Only a ``verified`` business's current certificate is served.

Certificates are renewed before they expire: a periodic task, started with the signing key,
re-issues the certificate of every verified, unsuspended business that expires within
``certificate_renew_before_days`` (:meth:`OperatorService.renew_due_certificates`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.ids import AccountId
from tresen.core.logging import get_logger
from tresen.core.settings import Settings
from tresen.crypto.certificates import (
    BusinessCertificate,
    OperatorKey,
    PublishedKey,
    SignedCertificate,
    SignedRevocationList,
    decode_certificate,
    key_fingerprint,
)
from tresen.relay.accounts.phone import normalize_phone
from tresen.relay.accounts.service import hash_token
from tresen.relay.businesses.repo import RequestState
from tresen.relay.businesses.service import refuse_confusable
from tresen.relay.operator import repo
from tresen.relay.operator.keys import KeyEncryptionKey, OperatorKeyError, load_kek
from tresen.relay.transparency.repo import queue_certificate
from tresen.wire.business import Verification

__all__ = [
    "DAY_MS",
    "TOKEN_PREFIX",
    "BusinessSummary",
    "CertificateRecord",
    "OperatorKeyError",
    "OperatorPrincipal",
    "OperatorService",
    "PublishedKeys",
    "Renewal",
    "RenewalRun",
    "RequestState",
    "Rotation",
    "Verification",
    "certificate_summary",
]

log = get_logger("tresen.relay.operator")

DAY_MS = 24 * 3600 * 1000
TOKEN_PREFIX = "tresen_op_"  # noqa: S105 - a marker that tells the token kind, not a secret
SYSTEM = "system"
_TOKEN_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


@dataclass(frozen=True, slots=True)
class OperatorPrincipal:
    """The operator (token name) behind an admin request; written into the audit log."""

    name: str


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    serial: int
    account_id: AccountId
    key_id: str
    issued_ms: int
    expires_ms: int
    revoked_ms: int | None
    revoke_reason: str | None
    certificate: BusinessCertificate
    signed: SignedCertificate

    @classmethod
    def of(cls, row: repo.CertificateRow) -> CertificateRecord:
        return cls(
            serial=row.serial,
            account_id=row.account_id,
            key_id=row.key_id,
            issued_ms=row.issued_ms,
            expires_ms=row.expires_ms,
            revoked_ms=row.revoked_ms,
            revoke_reason=row.revoke_reason,
            certificate=decode_certificate(row.body),
            signed=SignedCertificate(row.body, row.signature),
        )

    def status(self, now_ms: int, key_retires_ms: int | None) -> str:
        if self.revoked_ms is not None:
            return "revoked"
        if now_ms >= self.expires_ms:
            return "expired"
        if key_retires_ms is not None and now_ms >= key_retires_ms:
            return "key retired"
        return "valid"


@dataclass(frozen=True, slots=True)
class PublishedKeys:
    current_key_id: str
    fingerprint: str
    keys: list[PublishedKey]


@dataclass(frozen=True, slots=True)
class Rotation:
    key_id: str
    fingerprint: str
    previous_key_id: str
    previous_retires_ms: int
    reissued: list[int]


@dataclass(frozen=True, slots=True)
class Renewal:
    """A certificate re-issued before its expiry; ``replaces`` stays valid until its own."""

    account_id: AccountId
    serial: int
    replaces: int
    key_id: str
    expires_ms: int


@dataclass(frozen=True, slots=True)
class RenewalRun:
    renewed: list[Renewal]
    skipped: dict[AccountId, str]
    """Businesses that were due but not renewed, with the reason."""


@dataclass(frozen=True, slots=True)
class BusinessSummary:
    business: repo.BusinessRow
    devices: list[tuple[int, str]]
    requests: list[repo.RequestRow]
    certificates: list[tuple[CertificateRecord, str]]
    """Every certificate ever issued to the business, with its status now."""
    current_serial: int | None
    audit: list[repo.AuditRow]


def _binding(cert: BusinessCertificate) -> tuple[str, str, str, list[str]]:
    return (cert.account_id, cert.phone, cert.display_name, cert.device_keys)


class OperatorService:
    def __init__(self, db: Database, clock: Clock, settings: Settings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self._kek: KeyEncryptionKey | None = None
        self._unsealed: dict[str, OperatorKey] = {}
        self._renewer: asyncio.Task[None] | None = None

    @property
    def certificate_lifetime_ms(self) -> int:
        return self.settings.certificate_lifetime_days * DAY_MS

    # --- the signing key ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the signing key, creating the first one if there is none, and start renewing
        certificates every ``certificate_renew_interval_s``.

        Raises :class:`OperatorKeyError` when the key-encryption key is missing or is not the
        one the stored key was sealed with: the relay must not start without its key.
        """
        async with self.db.read() as conn:
            exists = await repo.current_operator_key(conn) is not None
        try:
            self._kek = load_kek(self.settings, keys_exist=exists)
            async with self.db.write() as conn:
                await repo.lock_operator_keys(conn)
                row = await repo.current_operator_key(conn)
                if row is None:
                    key = OperatorKey.generate()
                    now = self.clock.now_ms()
                    await repo.insert_operator_key(
                        conn,
                        repo.OperatorKeyRow(
                            key_id=key.key_id,
                            public_key=key.public_key,
                            private_sealed=self._kek.seal(key),
                            endorsement=None,
                            created_ms=now,
                            signs_from_ms=now,
                            retires_ms=None,
                        ),
                    )
                    self._unsealed[key.key_id] = key
                    log.info("operator signing key created", key_id=key.key_id)
                else:
                    key = self._open(row)
        except OperatorKeyError as exc:
            log.error("operator signing key unavailable", reason=str(exc))
            raise
        log.info("operator signing key", key_id=key.key_id, fingerprint=key.fingerprint())
        if self.settings.certificate_renew_before_days and self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_periodically())

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    def _open(self, row: repo.OperatorKeyRow) -> OperatorKey:
        key = self._unsealed.get(row.key_id)
        if key is None:
            if self._kek is None:
                raise OperatorKeyError("the operator service has not been started")
            key = self._kek.unseal(row.key_id, row.public_key, row.private_sealed)
            self._unsealed[row.key_id] = key
        return key

    async def _signing_key(self, conn: AsyncConnection) -> OperatorKey:
        # Read every time: another relay process over the same database may have rotated.
        row = await repo.current_operator_key(conn)
        if row is None:
            raise OperatorKeyError("there is no operator signing key; start the relay first")
        return self._open(row)

    async def sign_document(
        self, prefix: bytes, make_body: Callable[[str], bytes], *, conn: AsyncConnection
    ) -> tuple[bytes, str, str]:
        """Sign ``prefix + make_body(key_id)`` with the current key inside ``conn``'s write
        transaction; returns the body, the key id and the signature.

        The body is built for the key that signs it, so it can name that key (verifiers pick
        the key by the id in the body, as with certificates). Like certificates, documents
        are signed under the shared key lock, never with a key a rotation is replacing.
        """
        if prefix.startswith((b"tresen-cert-", b"tresen-revocations-", b"tresen-operator-key-")):
            raise ValueError("that prefix belongs to the operator's own signed formats")
        await repo.lock_operator_keys(conn, shared=True)
        key = await self._signing_key(conn)
        body = make_body(key.key_id)
        return body, key.key_id, key.sign(prefix + body)

    async def published_keys(self) -> PublishedKeys:
        async with self.db.read() as conn:
            rows = await repo.list_operator_keys(conn)
            current = await repo.current_operator_key(conn)
        if current is None:
            raise OperatorKeyError("there is no operator signing key; start the relay first")
        return PublishedKeys(
            current_key_id=current.key_id,
            fingerprint=key_fingerprint(current.public_key),
            keys=[
                PublishedKey(r.key_id, r.public_key, r.endorsement, r.signs_from_ms, r.retires_ms)
                for r in rows
            ],
        )

    async def stored_keys(self) -> list[repo.OperatorKeyRow]:
        """Every operator key, oldest first (public parts are what matter to callers)."""
        async with self.db.read() as conn:
            return await repo.list_operator_keys(conn)

    async def rotate(self, operator: OperatorPrincipal, overlap_days: int) -> Rotation:
        """A new signing key, endorsed by the current one, which retires after the overlap.

        Certificates signed by the old key stay valid until it retires; every verified
        business's current certificate is re-issued with the new key (same binding, same
        expiry) in the same transaction, so clients that follow the rotation find a
        certificate by the new key at once.
        """
        now = self.clock.now_ms()
        retires = now + overlap_days * DAY_MS
        new = OperatorKey.generate()
        reissued: list[int] = []
        async with self.db.write() as conn:
            await repo.lock_operator_keys(conn)
            old = await self._signing_key(conn)
            assert self._kek is not None
            await repo.insert_operator_key(
                conn,
                repo.OperatorKeyRow(
                    key_id=new.key_id,
                    public_key=new.public_key,
                    private_sealed=self._kek.seal(new),
                    endorsement=old.endorse(new.public_key, now),
                    created_ms=now,
                    signs_from_ms=now,
                    retires_ms=None,
                ),
            )
            await repo.retire_operator_key(conn, old.key_id, retires)
            for row in await repo.reissuable_certificates(conn, now):
                cert = decode_certificate(row.body)
                record = await self._issue(
                    conn,
                    new,
                    account_id=row.account_id,
                    phone=cert.phone,
                    display_name=cert.display_name,
                    device_keys=cert.device_keys,
                    issued_ms=now,
                    expires_ms=row.expires_ms,
                )
                reissued.append(record.serial)
            await repo.add_audit(
                conn,
                at_ms=now,
                operator=operator.name,
                action="rotate_key",
                account_id=None,
                details={
                    "key_id": new.key_id,
                    "previous_key_id": old.key_id,
                    "previous_retires_ms": retires,
                    "overlap_days": overlap_days,
                    "reissued": len(reissued),
                },
            )
        self._unsealed[new.key_id] = new
        log.info(
            "operator key rotated",
            key_id=new.key_id,
            fingerprint=new.fingerprint(),
            previous_key_id=old.key_id,
            previous_retires_ms=retires,
            reissued=len(reissued),
        )
        return Rotation(new.key_id, new.fingerprint(), old.key_id, retires, reissued)

    # --- renewal ------------------------------------------------------------------------------

    async def renew_due_certificates(self, operator: OperatorPrincipal | None = None) -> RenewalRun:
        """Re-issue the certificate of every verified, unsuspended business whose current
        certificates all expire within ``certificate_renew_before_days``.

        The new certificate has a new serial, is signed by the current key, binds what the
        old one binds and is valid for a whole lifetime from now. The old one is not revoked:
        clients holding it keep a valid tick until it expires. Each business is renewed in a
        transaction of its own with its audit row (by ``operator``, else ``system``); a run
        asked for by an operator also audits the run itself.
        """
        window_ms = self.settings.certificate_renew_before_days * DAY_MS
        renewed: list[Renewal] = []
        skipped: dict[AccountId, str] = {}
        if window_ms:
            now = self.clock.now_ms()
            async with self.db.read() as conn:
                due = await repo.certificates_due(conn, now, now + window_ms)
            by = SYSTEM if operator is None else operator.name
            for account_id in due:
                try:
                    renewal = await self._renew(account_id, window_ms, by)
                except Exception:
                    # One business must not hold up the others; the next run tries again.
                    log.exception("certificate renewal failed", account_id=account_id)
                    skipped[account_id] = "failed; see the relay log"
                    continue
                if isinstance(renewal, Renewal):
                    renewed.append(renewal)
                elif renewal is not None:
                    skipped[account_id] = renewal
        if operator is not None:
            now = self.clock.now_ms()
            async with self.db.write() as conn:
                await repo.add_audit(
                    conn,
                    at_ms=now,
                    operator=operator.name,
                    action="renew_certificates",
                    account_id=None,
                    details={
                        "reissued": [r.serial for r in renewed],
                        "skipped": {str(k): v for k, v in skipped.items()},
                    },
                )
        if renewed or skipped:
            log.info("certificates renewed", renewed=len(renewed), skipped=len(skipped))
        return RenewalRun(renewed, skipped)

    async def _renew(self, account_id: AccountId, window_ms: int, by: str) -> Renewal | str | None:
        """The renewal, or why a due business was not renewed, or ``None`` when it is no
        longer due (another process renewed it, or it changed meanwhile)."""
        async with self.db.write() as conn:
            # The profile first, then the keys: the order verify and the directory use.
            found = await repo.business(conn, account_id, for_update=True)
            if (
                found is None
                or found.verification != Verification.VERIFIED
                or found.suspended_ms is not None
            ):
                return None
            await repo.lock_operator_keys(conn, shared=True)
            now = self.clock.now_ms()
            current = await repo.current_certificates(conn, account_id, now)
            if not current or max(c.expires_ms for c in current) > now + window_ms:
                return None
            old = current[-1]
            cert = decode_certificate(old.body)
            device_keys = sorted({key for _, key in await repo.device_keys(conn, account_id)})
            if (cert.phone, cert.display_name, list(cert.device_keys)) != (
                found.phone,
                found.display_name,
                device_keys,
            ):
                # The relay signs again only what the operator verified and is still true.
                log.warning("certificate not renewed: its binding changed", account_id=account_id)
                return "the business's phone, name or device keys differ from its certificate"
            key = await self._signing_key(conn)
            record = await self._issue(
                conn,
                key,
                account_id=account_id,
                phone=cert.phone,
                display_name=cert.display_name,
                device_keys=cert.device_keys,
                issued_ms=now,
                expires_ms=now + self.certificate_lifetime_ms,
            )
            await repo.add_audit(
                conn,
                at_ms=now,
                operator=by,
                action="renew_certificate",
                account_id=account_id,
                details={
                    "serial": record.serial,
                    "replaces": old.serial,
                    "replaced_expires_ms": old.expires_ms,
                    "key_id": key.key_id,
                    "expires_ms": record.expires_ms,
                },
            )
        log.info(
            "certificate renewed", account_id=account_id, serial=record.serial, replaces=old.serial
        )
        return Renewal(account_id, record.serial, old.serial, key.key_id, record.expires_ms)

    async def _renew_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.certificate_renew_interval_s)
            try:
                await self.renew_due_certificates()
            except Exception:
                log.exception("renewing certificates failed")

    # --- operator tokens ---------------------------------------------------------------------

    async def create_token(self, name: str, *, by: str) -> str:
        """A new operator token named ``name``; only its hash is stored, so this is the only
        time it can be shown."""
        if not _TOKEN_NAME.fullmatch(name):
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "a token name is 1-64 characters of A-Z a-z 0-9 . _ @ -",
                field="name",
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now_ms()
        try:
            async with self.db.write() as conn:
                await repo.insert_token(conn, name, hash_token(token), now)
                await repo.add_audit(
                    conn,
                    at_ms=now,
                    operator=by,
                    action="token_created",
                    account_id=None,
                    details={"name": name},
                )
        except IntegrityError:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                f"an operator token named {name!r} exists already (names are never reused)",
                field="name",
            ) from None
        return token

    async def revoke_token(self, name: str, *, by: str) -> None:
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            if not await repo.revoke_token(conn, name, now):
                existing = await repo.token_by_name(conn, name)
                raise TresenError(
                    ErrorCode.INVALID_PARAMETER,
                    f"no operator token named {name!r}"
                    if existing is None
                    else f"the operator token {name!r} is already revoked",
                    field="name",
                )
            await repo.add_audit(
                conn,
                at_ms=now,
                operator=by,
                action="token_revoked",
                account_id=None,
                details={"name": name},
            )

    async def list_tokens(self) -> list[repo.TokenRow]:
        async with self.db.read() as conn:
            return await repo.list_tokens(conn)

    async def authenticate(self, token: str | None) -> OperatorPrincipal:
        """The operator behind an admin bearer token; device tokens never match."""
        if not token:
            raise TresenError(ErrorCode.INVALID_TOKEN, "missing operator token")
        digest = hash_token(token)
        async with self.db.read() as conn:
            row = await repo.token_by_hash(conn, digest)
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            raise TresenError(ErrorCode.INVALID_TOKEN, "invalid operator token")
        if row.revoked_ms is not None:
            raise TresenError(ErrorCode.INVALID_TOKEN, "this operator token was revoked")
        return OperatorPrincipal(row.name)

    # --- certificates as clients see them ----------------------------------------------------

    async def current_certificate(self, account_id: AccountId) -> CertificateRecord | None:
        now = self.clock.now_ms()
        async with self.db.read() as conn:
            found = await repo.business(conn, account_id)
            if found is None or found.verification != Verification.VERIFIED:
                return None
            current = await repo.current_certificates(conn, account_id, now)
        return CertificateRecord.of(current[-1]) if current else None

    async def certificate_json(self, account_id: AccountId) -> dict[str, str] | None:
        """The business's current signed certificate in its JSON form, for the directory."""
        record = await self.current_certificate(account_id)
        return None if record is None else record.signed.to_json()

    async def revocation_list(self) -> SignedRevocationList:
        """The revoked, unexpired serials, signed now with the current key."""
        now = self.clock.now_ms()
        async with self.db.read() as conn:
            serials = await repo.revoked_serials(conn, now)
            key = await self._signing_key(conn)
        return key.sign_revocations(now, serials)

    # --- administration ----------------------------------------------------------------------

    async def lookup_phone(self, raw_phone: str) -> repo.AccountRow:
        phone = normalize_phone(raw_phone)
        async with self.db.read() as conn:
            found = await repo.account_by_phone(conn, phone)
        if found is None:
            raise TresenError(
                ErrorCode.UNDELIVERABLE, "no account is registered for this number", phone=phone
            )
        return found

    async def verification_requests(
        self, state: RequestState | None, limit: int
    ) -> list[repo.RequestRow]:
        async with self.db.read() as conn:
            return await repo.list_requests(conn, None if state is None else str(state), limit)

    async def business_summary(
        self, account_id: AccountId, audit_limit: int = 50
    ) -> BusinessSummary:
        now = self.clock.now_ms()
        async with self.db.read() as conn:
            found = await self._business(conn, account_id)
            devices = await repo.device_keys(conn, account_id)
            requests = await repo.requests_of(conn, account_id)
            rows = await repo.certificates_of(conn, account_id)
            current = await repo.current_certificates(conn, account_id, now)
            keys = {k.key_id: k.retires_ms for k in await repo.list_operator_keys(conn)}
            audit = await repo.audit_entries(conn, account_id, audit_limit)
        records = [CertificateRecord.of(r) for r in rows if r.body]
        current_serial = (
            current[-1].serial if current and found.verification == Verification.VERIFIED else None
        )
        return BusinessSummary(
            business=found,
            devices=devices,
            requests=requests,
            certificates=[(r, r.status(now, keys.get(r.key_id))) for r in records],
            current_serial=current_serial,
            audit=audit,
        )

    async def audit(self, account_id: AccountId | None, limit: int) -> list[repo.AuditRow]:
        async with self.db.read() as conn:
            return await repo.audit_entries(conn, account_id, limit)

    async def verify(
        self, operator: OperatorPrincipal, account_id: AccountId
    ) -> tuple[CertificateRecord, int | None]:
        """Certify the business as it is now: account, phone, display name and the current
        Ed25519 identity keys of all its devices. Approves its pending request, if any.

        Returns the certificate and the id of the approved request. Earlier certificates
        that bind something else (an old name, old device keys) are revoked as superseded.
        Refused (NAME_CONFUSABLE) while another verified business has a name with the same
        skeleton.
        """
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            found = await self._business(conn, account_id, for_update=True)
            # Two businesses may share a name while neither is verified; the tick goes to one.
            await refuse_confusable(conn, account_id, found.name_skeleton)
            device_keys = sorted({key for _, key in await repo.device_keys(conn, account_id)})
            if not device_keys:
                raise TresenError(
                    ErrorCode.IDENTITY_KEYS_MISSING,
                    "the business has no device with identity keys to certify",
                    account_id=account_id,
                )
            await repo.lock_operator_keys(conn, shared=True)
            key = await self._signing_key(conn)
            request = await repo.pending_request(conn, account_id)
            if request is not None:
                await repo.decide_request(
                    conn,
                    request.id,
                    RequestState.APPROVED.value,
                    reason=None,
                    now_ms=now,
                    decided_by=operator.name,
                )
            record = await self._issue(
                conn,
                key,
                account_id=account_id,
                phone=found.phone,
                display_name=found.display_name,
                device_keys=device_keys,
                issued_ms=now,
                expires_ms=now + self.certificate_lifetime_ms,
            )
            superseded = [
                row.serial
                for row in await repo.certificates_of(conn, account_id)
                if row.serial != record.serial
                and row.revoked_ms is None
                and row.expires_ms > now
                and _binding(decode_certificate(row.body)) != _binding(record.certificate)
            ]
            await repo.revoke_certificates(conn, superseded, now, "superseded")
            await repo.set_verification(conn, account_id, Verification.VERIFIED.value, now)
            await repo.add_audit(
                conn,
                at_ms=now,
                operator=operator.name,
                action="verify",
                account_id=account_id,
                details={
                    "serial": record.serial,
                    "key_id": key.key_id,
                    "request_id": None if request is None else request.id,
                    "display_name": found.display_name,
                    "device_keys": len(device_keys),
                    "expires_ms": record.expires_ms,
                    "superseded": superseded,
                },
            )
        log.info(
            "business verified",
            account_id=account_id,
            serial=record.serial,
            operator=operator.name,
        )
        return record, None if request is None else request.id

    async def reject(
        self, operator: OperatorPrincipal, account_id: AccountId, reason: str
    ) -> tuple[int, list[int]]:
        """Reject the pending request with a reason the business is told. Any certificate
        still unrevoked is revoked with it. Returns the request id and revoked serials."""
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            await self._business(conn, account_id, for_update=True)
            await repo.lock_operator_keys(conn, shared=True)
            request = await repo.pending_request(conn, account_id)
            if request is None:
                raise TresenError(
                    ErrorCode.NO_PENDING_REQUEST,
                    "this business has no pending verification request",
                    account_id=account_id,
                )
            await repo.decide_request(
                conn,
                request.id,
                RequestState.REJECTED.value,
                reason=reason,
                now_ms=now,
                decided_by=operator.name,
            )
            revoked = await repo.unrevoked_serials(conn, account_id, now)
            await repo.revoke_certificates(conn, revoked, now, f"verification rejected: {reason}")
            await repo.set_verification(conn, account_id, Verification.REJECTED.value, now)
            await repo.add_audit(
                conn,
                at_ms=now,
                operator=operator.name,
                action="reject",
                account_id=account_id,
                details={"request_id": request.id, "reason": reason, "revoked": revoked},
            )
        log.info("verification rejected", account_id=account_id, operator=operator.name)
        return request.id, revoked

    async def revoke(
        self, operator: OperatorPrincipal, account_id: AccountId, reason: str
    ) -> list[int]:
        """Revoke the business's certificates: they appear on the revocation list."""
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            await self._business(conn, account_id, for_update=True)
            # Shared with other issuers, exclusive against a rotation, which could otherwise
            # re-issue a certificate this revocation does not see.
            await repo.lock_operator_keys(conn, shared=True)
            serials = await repo.unrevoked_serials(conn, account_id, now)
            if not serials:
                raise TresenError(
                    ErrorCode.NO_CURRENT_CERTIFICATE,
                    "this business has no certificate to revoke",
                    account_id=account_id,
                )
            await repo.revoke_certificates(conn, serials, now, reason)
            await repo.set_verification(conn, account_id, Verification.REVOKED.value, now)
            await repo.add_audit(
                conn,
                at_ms=now,
                operator=operator.name,
                action="revoke",
                account_id=account_id,
                details={"serials": serials, "reason": reason},
            )
        log.info("certificates revoked", account_id=account_id, serials=serials)
        return serials

    async def revoke_for_change(
        self, account_id: AccountId, reason: str, *, conn: AsyncConnection | None = None
    ) -> list[int]:
        """Revoke the certificates of a business whose name or device keys changed.

        Called by the business directory when a verified business renames or changes device
        keys; pass its ``conn`` to make the revocation part of that change's transaction. The
        directory sets the verification state (``pending``); this only revokes and audits.
        """
        if conn is None:
            async with self.db.write() as own:
                return await self._revoke_for_change(own, account_id, reason)
        return await self._revoke_for_change(conn, account_id, reason)

    async def _revoke_for_change(
        self, conn: AsyncConnection, account_id: AccountId, reason: str
    ) -> list[int]:
        await repo.lock_operator_keys(conn, shared=True)
        now = self.clock.now_ms()
        serials = await repo.unrevoked_serials(conn, account_id, now)
        if serials:
            await repo.revoke_certificates(conn, serials, now, reason)
            await repo.add_audit(
                conn,
                at_ms=now,
                operator=SYSTEM,
                action="revoke_for_change",
                account_id=account_id,
                details={"serials": serials, "reason": reason},
            )
        return serials

    async def suspend(self, operator: OperatorPrincipal, account_id: AccountId, reason: str) -> int:
        """Suspend the business (it cannot send while suspended); returns the time."""
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            found = await self._business(conn, account_id, for_update=True)
            if found.suspended_ms is not None:
                raise TresenError(
                    ErrorCode.ALREADY_SUSPENDED,
                    "this business is already suspended",
                    account_id=account_id,
                    suspended_ms=found.suspended_ms,
                )
            await repo.set_suspension(conn, account_id, now, reason, now)
            await repo.add_audit(
                conn,
                at_ms=now,
                operator=operator.name,
                action="suspend",
                account_id=account_id,
                details={"reason": reason},
            )
        log.info("business suspended", account_id=account_id, operator=operator.name)
        return now

    async def reinstate(self, operator: OperatorPrincipal, account_id: AccountId) -> None:
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            found = await self._business(conn, account_id, for_update=True)
            if found.suspended_ms is None:
                raise TresenError(
                    ErrorCode.NOT_SUSPENDED,
                    "this business is not suspended",
                    account_id=account_id,
                )
            await repo.set_suspension(conn, account_id, None, None, now)
            await repo.add_audit(
                conn,
                at_ms=now,
                operator=operator.name,
                action="reinstate",
                account_id=account_id,
                details={
                    "suspended_ms": found.suspended_ms,
                    "suspend_reason": found.suspend_reason,
                },
            )
        log.info("business reinstated", account_id=account_id, operator=operator.name)

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    async def _business(
        conn: AsyncConnection, account_id: AccountId, *, for_update: bool = False
    ) -> repo.BusinessRow:
        found = await repo.business(conn, account_id, for_update=for_update)
        if found is None:
            raise TresenError(
                ErrorCode.NOT_A_BUSINESS,
                "no business profile for this account",
                account_id=account_id,
            )
        return found

    async def _issue(
        self,
        conn: AsyncConnection,
        key: OperatorKey,
        *,
        account_id: AccountId,
        phone: str,
        display_name: str,
        device_keys: Sequence[str],
        issued_ms: int,
        expires_ms: int,
    ) -> CertificateRecord:
        serial = await repo.allocate_certificate(
            conn, account_id, key.key_id, issued_ms, expires_ms
        )
        cert = BusinessCertificate(
            serial=serial,
            account_id=account_id,
            phone=phone,
            display_name=display_name,
            device_keys=sorted(set(device_keys)),
            issued_ms=issued_ms,
            expires_ms=expires_ms,
            key_id=key.key_id,
        )
        signed = key.sign_certificate(cert)
        await repo.store_certificate(conn, serial, signed.body, signed.signature)
        # Every certificate issued is logged in the next epoch, so one shown to a single
        # client only cannot stay hidden from the business and the auditors.
        await queue_certificate(
            conn, account_id, serial, hashlib.sha256(signed.body).digest(), issued_ms
        )
        return CertificateRecord(
            serial=serial,
            account_id=account_id,
            key_id=key.key_id,
            issued_ms=issued_ms,
            expires_ms=expires_ms,
            revoked_ms=None,
            revoke_reason=None,
            certificate=cert,
            signed=signed,
        )


def certificate_summary(record: CertificateRecord) -> dict[str, Any]:
    """The decoded fields of a certificate, for operators (clients verify the body)."""
    cert = record.certificate
    return {
        "serial": record.serial,
        "key_id": record.key_id,
        "account_id": cert.account_id,
        "phone": cert.phone,
        "display_name": cert.display_name,
        "device_keys": list(cert.device_keys),
        "issued_ms": record.issued_ms,
        "expires_ms": record.expires_ms,
        "revoked_ms": record.revoked_ms,
        "revoke_reason": record.revoke_reason,
    }

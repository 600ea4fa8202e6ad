"""Consent: who agreed to hear from which business, in which scope, and the proof of it.

A customer's device submits statements it signed (``crypto/consent.py``); the relay accepts
one only from the device that signed it, with that device's current identity key, for a
business that exists, dated near the relay's clock and newer than the stored statement. A
business may attest a customer's opt-in for the utility scope, with evidence, if the operator
accepts attested consent; it can never attest marketing, nor overrule what the customer
signed. Every change is written with its history entry in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.ids import AccountId
from tresen.core.logging import get_logger
from tresen.core.policy import PolicySettings
from tresen.crypto.consent import (
    ConsentScope,
    ConsentState,
    ConsentStatement,
    ForgedConsent,
    SignedConsent,
    decode_statement,
    verify_statement,
)
from tresen.relay.accounts import repo as accounts_repo
from tresen.relay.accounts.service import Principal
from tresen.relay.consent import repo
from tresen.relay.consent.repo import ConsentRow
from tresen.relay.keys import repo as keys_repo

__all__ = [
    "CLOCK_SKEW_MS",
    "EVIDENCE_MAX",
    "MAX_STATEMENTS",
    "BusinessConsents",
    "ConsentRecord",
    "ConsentService",
    "ConsentSource",
    "PairConsents",
]

log = get_logger("tresen.relay.consent")

# A statement is dated by the customer's device; ten minutes either way allow for a phone's
# clock drift while keeping an old signed opt-in from being replayed much later.
CLOCK_SKEW_MS = 10 * 60 * 1000
EVIDENCE_MAX = 1024
MAX_STATEMENTS = 8


class ConsentSource:
    CUSTOMER = "customer"
    BUSINESS = "business"


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """A stored consent with what a verifier needs: for a signed one, the key that signed it
    (named in the statement) and the time the customer decided."""

    row: ConsentRow
    business_name: str | None
    decided_ms: int | None
    device_ed25519: str | None


@dataclass(frozen=True, slots=True)
class BusinessConsents:
    """One line of a customer's dashboard: a business and its consents by scope."""

    business_account: AccountId
    display_name: str | None
    records: list[ConsentRecord]


@dataclass(frozen=True, slots=True)
class PairConsents:
    business_account: AccountId
    customer_account: AccountId
    display_name: str | None
    records: list[ConsentRecord]
    history: list[ConsentRecord]


def _invalid(message: str, reason: str, **details: object) -> TresenError:
    return TresenError(ErrorCode.INVALID_CONSENT, message, reason=reason, **details)


def _record(row: ConsentRow, name: str | None) -> ConsentRecord:
    if row.source == ConsentSource.CUSTOMER and row.statement is not None:
        statement = decode_statement(row.statement)  # checked when it was stored
        return ConsentRecord(row, name, statement.at_ms, statement.device_ed25519)
    return ConsentRecord(row, name, row.evidence_ms, None)


class ConsentService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        policy: PolicySettings,
        *,
        clock_skew_ms: int = CLOCK_SKEW_MS,
    ) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy
        self.clock_skew_ms = clock_skew_ms

    # --- the customer's statements -----------------------------------------------------------

    async def submit(
        self, principal: Principal, signed: Sequence[SignedConsent]
    ) -> list[ConsentRecord]:
        """Store statements the calling device signed; all of them or none."""
        now = self.clock.now_ms()
        statements = [self._precheck(principal, i, s, now) for i, s in enumerate(signed)]
        pairs = [(st.business_account, st.scope) for st in statements]
        if len(set(pairs)) != len(pairs):
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "one statement per business and scope in a request",
                field="statements",
            )
        customer = principal.account_id
        async with self.db.write() as conn:
            # Locked so the key cannot be replaced between this check and the commit.
            device = await keys_repo.device_identity(conn, principal.device_pk, for_update=True)
            if device is None or device.identity is None:
                raise _invalid(
                    "this device has no identity keys to sign with; upload them first",
                    "no_identity_keys",
                )
            key = device.identity.ed25519
            phone = await accounts_repo.account_phone(conn, customer)
            for i, (s, statement) in enumerate(zip(signed, statements, strict=True)):
                if statement.device_ed25519 != key:
                    raise _invalid(
                        "the statement is not signed with this device's current identity key",
                        "not_current_key",
                        index=i,
                    )
                try:
                    verify_statement(s, key)
                except ForgedConsent:
                    raise _invalid(
                        "the signature does not verify with this device's identity key",
                        "bad_signature",
                        index=i,
                    ) from None
                if statement.customer_phone != phone:
                    raise _invalid(
                        "the statement names another phone number than this account's",
                        "wrong_phone",
                        index=i,
                    )
            businesses = sorted({AccountId(st.business_account) for st in statements})
            names = await repo.business_names(conn, businesses)
            for business in businesses:
                if business not in names:
                    raise TresenError(
                        ErrorCode.NOT_A_BUSINESS,
                        "consent can only be given to a business",
                        business_account=business,
                    )
                await repo.lock_pair(conn, business, customer)
            stored = {b: await repo.current(conn, b, customer) for b in businesses}
            rows = []
            for i, (s, statement) in enumerate(zip(signed, statements, strict=True)):
                business = AccountId(statement.business_account)
                before = stored[business].get(statement.scope)
                _refuse_stale(before, statement, i)
                row = ConsentRow(
                    business_account=business,
                    customer_account=customer,
                    scope=str(statement.scope),
                    state=str(statement.state),
                    source=ConsentSource.CUSTOMER,
                    statement=s.body,
                    signature=s.signature,
                    device_id=statement.device_id,
                    evidence=None,
                    evidence_ms=None,
                    updated_ms=now,
                )
                await repo.put(conn, row, existed=before is not None)
                rows.append(row)
        for row in rows:
            log.info(
                "consent changed",
                business=row.business_account,
                customer=row.customer_account,
                scope=row.scope,
                state=row.state,
                source=row.source,
            )
        return [_record(row, names.get(row.business_account)) for row in rows]

    def _precheck(
        self, principal: Principal, index: int, signed: SignedConsent, now: int
    ) -> ConsentStatement:
        """What can be checked without the database."""
        try:
            statement = decode_statement(signed.body)
        except ForgedConsent as exc:
            raise _invalid(str(exc), "malformed", index=index) from None
        if (
            statement.customer_account != principal.account_id
            or statement.device_id != principal.device_id
        ):
            raise _invalid(
                "a statement is accepted only from the customer device that signed it",
                "not_the_signer",
                index=index,
            )
        if statement.business_account == principal.account_id:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "an account cannot consent to itself",
                field="business_account",
                index=index,
            )
        if abs(statement.at_ms - now) > self.clock_skew_ms:
            raise _invalid(
                "the statement's time is too far from the relay's clock; check the device time",
                "clock_skew",
                index=index,
                now_ms=now,
                max_skew_ms=self.clock_skew_ms,
            )
        return statement

    # --- the business's attestation -----------------------------------------------------------

    async def attest(
        self,
        principal: Principal,
        customer: AccountId,
        scope: str,
        evidence: str,
        evidence_ms: int,
    ) -> tuple[ConsentRecord, bool]:
        """Record that ``customer`` opted in to the business's utility messages, on the
        business's word and evidence. Returns the consent now on record and whether it
        changed: a customer's own signed opt-in stays as it is."""
        business = principal.account_id
        if scope != ConsentScope.UTILITY:
            raise TresenError(
                ErrorCode.ATTESTED_CONSENT_REFUSED,
                "marketing consent needs the customer's own signed opt-in",
                reason="marketing",
            )
        if not self.policy.accept_attested_consent:
            raise TresenError(
                ErrorCode.ATTESTED_CONSENT_REFUSED,
                "this relay does not accept business-attested consent; "
                "the customer must opt in from the app",
                reason="not_accepted",
            )
        evidence = evidence.strip()
        if not evidence or len(evidence) > EVIDENCE_MAX:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                f"evidence must be 1 to {EVIDENCE_MAX} characters",
                field="evidence",
            )
        now = self.clock.now_ms()
        if evidence_ms > now + self.clock_skew_ms:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "the evidence time lies in the future",
                field="evidence_ms",
                now_ms=now,
            )
        if customer == business:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "a business cannot attest its own consent",
                field="customer",
            )
        async with self.db.write() as conn:
            name = (await repo.business_names(conn, [business])).get(business)
            if name is None:
                raise TresenError(
                    ErrorCode.NOT_A_BUSINESS,
                    "only a business can attest consent; save a business profile first",
                )
            if await accounts_repo.account_phone(conn, customer) is None:
                raise TresenError(ErrorCode.UNDELIVERABLE, "no such customer", account_id=customer)
            await repo.lock_pair(conn, business, customer)
            before = (await repo.current(conn, business, customer)).get(scope)
            if before is not None and before.source == ConsentSource.CUSTOMER:
                # The customer's own word stands: a business cannot overrule an opt-out,
                # and a signed opt-in is better proof than the business's.
                if before.state == ConsentState.OPTED_OUT:
                    raise TresenError(
                        ErrorCode.ATTESTED_CONSENT_REFUSED,
                        "the customer opted out; only the customer can opt in again",
                        reason="customer_opted_out",
                    )
                return _record(before, name), False
            row = ConsentRow(
                business_account=business,
                customer_account=customer,
                scope=scope,
                state=ConsentState.OPTED_IN,
                source=ConsentSource.BUSINESS,
                statement=None,
                signature=None,
                device_id=None,
                evidence=evidence,
                evidence_ms=evidence_ms,
                updated_ms=now,
            )
            await repo.put(conn, row, existed=before is not None)
        log.info(
            "consent changed",
            business=business,
            customer=customer,
            scope=scope,
            state=row.state,
            source=row.source,
        )
        return _record(row, name), True

    # --- reading -------------------------------------------------------------------------------

    async def dashboard(self, customer: AccountId) -> list[BusinessConsents]:
        """Every business with a consent of ``customer`` on record, in any state."""
        async with self.db.read() as conn:
            rows = await repo.for_customer(conn, customer)
            names = await repo.business_names(conn, [r.business_account for r in rows])
        by_business: dict[AccountId, list[ConsentRecord]] = {}
        for row in rows:
            by_business.setdefault(row.business_account, []).append(
                _record(row, names.get(row.business_account))
            )
        lines = [BusinessConsents(b, names.get(b), records) for b, records in by_business.items()]
        return sorted(
            lines, key=lambda line: ((line.display_name or "").casefold(), line.business_account)
        )

    async def pair(
        self,
        business: AccountId,
        customer: AccountId,
        *,
        reader: AccountId | None,
        history_limit: int,
    ) -> PairConsents:
        """The pair's current records and history. ``reader`` is the calling account, which
        must be the business or the customer; ``None`` is the operator."""
        if reader is not None and reader not in (business, customer):
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "only the business and the customer can read their consents",
                reason="not_a_party",
            )
        async with self.db.read() as conn:
            current = await repo.current(conn, business, customer)
            logged = await repo.history(conn, business, customer, history_limit)
            name = (await repo.business_names(conn, [business])).get(business)
        records = [_record(current[s], name) for s in sorted(current)]
        return PairConsents(
            business, customer, name, records, [_record(entry.row, name) for entry in logged]
        )


def _refuse_stale(before: ConsentRow | None, statement: ConsentStatement, index: int) -> None:
    """A customer statement replaces a business attestation whenever it comes; it replaces
    an earlier statement only if it is newer, so an old opt-in cannot be replayed over a
    revocation."""
    if before is None or before.source != ConsentSource.CUSTOMER or before.statement is None:
        return
    stored_at = decode_statement(before.statement).at_ms
    if statement.at_ms <= stored_at:
        raise _invalid(
            "a newer statement for this business and scope is on record",
            "stale",
            index=index,
            stored_at_ms=stored_at,
        )

"""Consent as a customer's device gives it: signed opt-ins and revocations per business and
scope, the dashboard of every business that may write, and the STOP/START keywords.

A statement is signed here, with this device's identity key, and the relay stores it only
from this device (``crypto/consent.py``, ``docs/protocol.md`` §11). The records the relay
returns can be checked offline with :meth:`ConsentRecord.verify`.

Keywords: a text to a business whose whole trimmed text is STOP, STOPP or ABMELDEN (any
case) revokes marketing; START or ANMELDEN opts in to marketing. Utility messages (order
updates, one-time codes) are left as they are: a customer who types STOP to a shop still
gets the code the shop sends at checkout; the dashboard revokes everything in one action.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from tresen.client.api import RelayApi, RelayError
from tresen.client.events import ConsentChanged
from tresen.client.store import LocalStore
from tresen.core.clock import Clock
from tresen.core.errors import ErrorCode
from tresen.crypto.consent import (
    ALL_SCOPES,
    ConsentScope,
    ConsentState,
    ConsentStatement,
    ForgedConsent,
    SignedConsent,
    new_statement,
    sign_statement,
    verify_statement,
)
from tresen.crypto.olm import DeviceIdentity

__all__ = [
    "ALL_SCOPES",
    "START_KEYWORDS",
    "STOP_KEYWORDS",
    "BusinessConsents",
    "ConsentBook",
    "ConsentRecord",
    "ConsentScope",
    "ConsentState",
    "KeywordAction",
    "PairRecords",
    "Signer",
    "confirmation_text",
    "failure_text",
    "keyword_action",
]

# Keyword → language of the confirmation the customer gets back.
STOP_KEYWORDS = {"STOP": "en", "STOPP": "de", "ABMELDEN": "de"}
START_KEYWORDS = {"START": "en", "ANMELDEN": "de"}
KEYWORD_SCOPES: tuple[ConsentScope, ...] = (ConsentScope.MARKETING,)

_LAST_AT = "consent_at_ms"


@dataclass(frozen=True, slots=True)
class KeywordAction:
    """What a keyword typed to a business asks for."""

    keyword: str
    state: ConsentState
    scopes: tuple[ConsentScope, ...]
    language: str


def keyword_action(text: str) -> KeywordAction | None:
    """The consent change ``text`` asks for, if its whole trimmed text is a keyword."""
    word = text.strip().upper()
    if word in STOP_KEYWORDS:
        return KeywordAction(word, ConsentState.OPTED_OUT, KEYWORD_SCOPES, STOP_KEYWORDS[word])
    if word in START_KEYWORDS:
        return KeywordAction(word, ConsentState.OPTED_IN, KEYWORD_SCOPES, START_KEYWORDS[word])
    return None


def confirmation_text(action: KeywordAction, business: str) -> str:
    """What the customer reads after typing a keyword to ``business`` (its display name)."""
    german = action.language == "de"
    if action.state is ConsentState.OPTED_OUT:
        if german:
            return (
                f"Sie erhalten keine Werbenachrichten mehr von {business}. "
                "Senden Sie ANMELDEN, um sie wieder zu erhalten."
            )
        return (
            f"You will no longer receive marketing messages from {business}. "
            "Send START to receive them again."
        )
    if german:
        return (
            f"Sie erhalten jetzt Werbenachrichten von {business}. "
            "Senden Sie ABMELDEN, um sie abzubestellen."
        )
    return f"You will now receive marketing messages from {business}. Send STOP to stop them."


def failure_text(action: KeywordAction, business: str) -> str:
    """What the customer reads when the keyword could not be recorded."""
    if action.language == "de":
        return (
            f"Ihre Nachricht {action.keyword} an {business} wurde gesendet, die Einstellung "
            "aber nicht gespeichert. Bitte versuchen Sie es erneut."
        )
    return (
        f"Your {action.keyword} was sent to {business}, but the setting could not be saved. "
        "Please try again."
    )


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """A consent as the relay keeps it. Signed by the customer's device (``source`` is
    ``customer``), or attested by the business with ``evidence``."""

    business_account: str
    business_name: str | None
    customer_account: str
    scope: str
    state: str
    source: str
    decided_ms: int | None
    updated_ms: int
    signed: SignedConsent | None
    device_id: int | None
    device_ed25519: str | None
    evidence: str | None
    evidence_ms: int | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConsentRecord:
        statement = data.get("statement")
        signature = data.get("signature")
        signed = (
            None
            if statement is None or signature is None
            else SignedConsent(base64.b64decode(statement), str(signature))
        )
        return cls(
            business_account=str(data["business_account"]),
            business_name=data.get("business_name"),
            customer_account=str(data["customer_account"]),
            scope=str(data["scope"]),
            state=str(data["state"]),
            source=str(data["source"]),
            decided_ms=data.get("decided_ms"),
            updated_ms=int(data["updated_ms"]),
            signed=signed,
            device_id=data.get("device_id"),
            device_ed25519=data.get("device_ed25519"),
            evidence=data.get("evidence"),
            evidence_ms=data.get("evidence_ms"),
        )

    @property
    def opted_in(self) -> bool:
        return self.state == ConsentState.OPTED_IN

    def verify(self, ed25519: str | None = None) -> ConsentStatement:
        """Check the customer's signature offline and that the statement says what this
        record says. ``ed25519`` is the key the verifier trusts for the customer's device
        (e.g. the one it pinned); without it, the key the statement names is used, which
        proves only that the statement is intact.

        Raises :class:`ForgedConsent` for an attested record (nothing is signed) or any
        mismatch."""
        if self.signed is None:
            raise ForgedConsent("an attested consent carries no customer signature")
        key = ed25519 or self.device_ed25519
        if key is None:
            raise ForgedConsent("no key to verify the statement with")
        statement = verify_statement(self.signed, key)
        said = (
            statement.business_account,
            statement.customer_account,
            str(statement.scope),
            str(statement.state),
            statement.device_id,
        )
        if said != (
            self.business_account,
            self.customer_account,
            self.scope,
            self.state,
            self.device_id,
        ):
            raise ForgedConsent("the signed statement does not say what the record says")
        return statement


@dataclass(frozen=True, slots=True)
class BusinessConsents:
    """A line of the consent dashboard: a business that may write to the customer."""

    account_id: str
    display_name: str | None
    consents: dict[str, ConsentRecord]

    def state(self, scope: str) -> str | None:
        record = self.consents.get(scope)
        return None if record is None else record.state

    @property
    def opted_in_scopes(self) -> tuple[str, ...]:
        return tuple(s for s in ALL_SCOPES if (r := self.consents.get(s)) and r.opted_in)


@dataclass(frozen=True, slots=True)
class PairRecords:
    """A business's and a customer's current records and their history (newest first)."""

    business_account: str
    customer_account: str
    display_name: str | None
    consents: dict[str, ConsentRecord]
    history: list[ConsentRecord]


@dataclass(frozen=True, slots=True)
class Signer:
    """The device that signs: the registered account, device and identity key."""

    account_id: str
    device_id: int
    phone: str
    identity: DeviceIdentity


class ConsentBook:
    """Signs and submits this device's consent, and reads what the relay keeps."""

    def __init__(
        self, api: RelayApi, clock: Clock, store: LocalStore, signer: Callable[[], Signer]
    ) -> None:
        self.api = api
        self.clock = clock
        self.store = store
        self._signer = signer

    async def change(
        self, business: str, scopes: Iterable[str], state: ConsentState
    ) -> list[ConsentRecord]:
        """Sign ``state`` for each scope and submit them together (all or none)."""
        wanted = tuple(dict.fromkeys(ConsentScope(s) for s in scopes))
        if not wanted:
            raise ValueError("name at least one scope")
        at_ms = max(self.clock.now_ms(), self._last_at() + 1)
        try:
            return await self._submit(business, wanted, state, at_ms)
        except RelayError as exc:
            stored = exc.details.get("stored_at_ms")
            if exc.code != ErrorCode.INVALID_CONSENT or exc.details.get("reason") != "stale":
                raise
            # Another device of this account signed later than this clock says: date this
            # one just after it (the relay still checks it against its own clock).
            if not isinstance(stored, int):
                raise
            return await self._submit(business, wanted, state, max(at_ms, stored + 1))

    async def _submit(
        self,
        business: str,
        scopes: tuple[ConsentScope, ...],
        state: ConsentState,
        at_ms: int,
    ) -> list[ConsentRecord]:
        signer = self._signer()
        signed = [
            sign_statement(
                signer.identity,
                new_statement(
                    business_account=business,
                    customer_account=signer.account_id,
                    customer_phone=signer.phone,
                    scope=scope,
                    state=state,
                    at_ms=at_ms,
                    device_id=signer.device_id,
                    device_ed25519=signer.identity.ed25519,
                ),
            )
            for scope in scopes
        ]
        stored = await self.api.submit_consents([s.to_json() for s in signed])
        self.store.set_meta(_LAST_AT, str(at_ms).encode())
        return [ConsentRecord.from_json(c) for c in stored]

    def _last_at(self) -> int:
        raw = self.store.get_meta(_LAST_AT)
        return 0 if raw is None else int(raw.decode())

    async def keyword(self, business: str, name: str, action: KeywordAction) -> ConsentChanged:
        """Carry out a keyword the customer typed to ``business`` (shown as ``name``)."""
        scopes = tuple(str(s) for s in action.scopes)
        try:
            records = await self.change(business, action.scopes, action.state)
        except (RelayError, httpx.HTTPError) as exc:
            return ConsentChanged(
                business,
                name,
                scopes,
                str(action.state),
                action.keyword,
                failure_text(action, name),
                failed=str(exc),
            )
        name = next((r.business_name for r in records if r.business_name), name)
        return ConsentChanged(
            business,
            name,
            scopes,
            str(action.state),
            action.keyword,
            confirmation_text(action, name),
        )

    async def dashboard(self) -> list[BusinessConsents]:
        lines = await self.api.consents()
        return [
            BusinessConsents(
                str(line["business_account"]),
                line.get("display_name"),
                {
                    r.scope: r
                    for r in (ConsentRecord.from_json(c) for c in line.get("consents", ()))
                },
            )
            for line in lines
        ]

    async def records(self, business: str, customer: str, history: int = 100) -> PairRecords:
        body = await self.api.consent_records(business, customer, history)
        current = [ConsentRecord.from_json(c) for c in body.get("consents", ())]
        return PairRecords(
            str(body["business_account"]),
            str(body["customer_account"]),
            body.get("display_name"),
            {r.scope: r for r in current},
            [ConsentRecord.from_json(c) for c in body.get("history", ())],
        )

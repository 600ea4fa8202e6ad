"""The documented shape of ``GET /v1/me/export``: one model per table the relay keeps about an
account (``docs/privacy.md`` names the tables; times are milliseconds since the epoch)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["ExportPublic"]


class ExportAccount(BaseModel):
    id: str
    phone: str
    created_ms: int
    last_device_id: int = Field(description="the counter of device ids, never reused")
    kind: str


class ExportDevice(BaseModel):
    account_id: str
    device_id: int
    registration_id: int
    name: str
    identity_curve25519: str | None
    identity_ed25519: str | None
    created_ms: int
    last_seen_ms: int


class ExportKeys(BaseModel):
    device_id: int
    one_time_keys: int = Field(description="public one-time keys waiting to be claimed")
    fallback_keys: int


class ExportMailbox(BaseModel):
    device_id: int
    queued: int = Field(description="ciphertexts and events waiting for this device")


class ExportMessage(BaseModel):
    """The routing record of one message (never its content: the relay has none)."""

    message_id: str
    sender_account: str
    client_msg_id: str
    recipient_account: str
    klass: int = Field(description="0 session, 1 template, 2 receipt, 3 system")
    server_ms: int
    expires_ms: int
    delivered_ms: int | None
    read_ms: int | None
    template_id: int | None
    resends: int


class _ConsentFields(BaseModel):
    business_account: str
    customer_account: str
    scope: str
    state: str
    source: str
    statement: str | None = Field(description="the signed statement, base64")
    signature: str | None
    device_id: int | None
    evidence: str | None
    evidence_ms: int | None


class ExportConsent(_ConsentFields):
    updated_ms: int


class ExportConsentChange(_ConsentFields):
    at_ms: int


class ExportBlock(BaseModel):
    blocker_account: str
    blocked_account: str
    created_ms: int


class ExportReport(BaseModel):
    """A block of a business or a report this account made."""

    business_account: str
    customer_account: str
    kind: str
    reason: str
    detail: str
    message_id: str | None
    template_id: int | None
    at_ms: int


class ExportWindow(BaseModel):
    business_account: str
    customer_account: str
    last_customer_ms: int


class ExportReach(BaseModel):
    business_account: str
    customer_account: str
    at_ms: int


class ExportRecipient(BaseModel):
    business_account: str
    customer_account: str
    delivered_ms: int


class ExportPricing(BaseModel):
    message_id: str
    business_account: str
    recipient_account: str
    template_id: int | None
    category: str
    billable: int
    pricing_type: str
    country: str
    price_micros: int
    currency: str
    server_ms: int


class ExportAttachment(BaseModel):
    id: str
    account_id: str
    kind: str
    size: int
    received: int
    created_ms: int
    completed_ms: int | None
    expires_ms: int


class ExportCharge(BaseModel):
    business_account: str
    message_id: str
    recipient_account: str
    template_id: int | None
    category: str
    country: str
    price_micros: int
    currency: str
    charged_ms: int


class ExportBudget(BaseModel):
    tat_ms: int = Field(description="when the lookup budget is full again")


class ExportCode(BaseModel):
    created_ms: int
    expires_ms: int


class ExportPublic(BaseModel):
    """Everything the relay holds about the caller's account. Lists hold at most
    ``row_limit`` rows each, newest first; ``truncated`` names the lists that had more."""

    format: str = Field(examples=["tresen.relay.export/1"])
    generated_ms: int
    row_limit: int
    truncated: list[str]
    account: ExportAccount
    devices: list[ExportDevice]
    keys: list[ExportKeys]
    mailbox: list[ExportMailbox]
    messages_sent: list[ExportMessage]
    messages_received: list[ExportMessage]
    consents: list[ExportConsent]
    consent_log: list[ExportConsentChange]
    blocks: list[ExportBlock] = Field(description="the accounts this account blocked")
    reports_and_blocks_made: list[ExportReport]
    service_windows: list[ExportWindow]
    reach: list[ExportReach]
    recipients: list[ExportRecipient]
    message_pricing: list[ExportPricing]
    attachments: list[ExportAttachment] = Field(description="blobs this account uploaded")
    ledger: list[ExportCharge] = Field(description="a business's charges")
    lookup_budget: ExportBudget | None
    pending_code: ExportCode | None = Field(description="a registration code not used yet")
    rate_events: int = Field(description="code requests and wrong codes counted for its number")

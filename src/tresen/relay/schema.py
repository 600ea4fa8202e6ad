"""Tables of the relay. Times are integer milliseconds since the Unix epoch (UTC).

The relay stores ciphertext and metadata only; no column ever holds message plaintext.
Migrations in ``tresen/relay/migrations`` create exactly these tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from tresen.core.db import NAMING_CONVENTION

__all__ = [
    "accounts",
    "admin_audit",
    "attachments",
    "blocks",
    "business_limits",
    "business_profiles",
    "certificates",
    "consent_log",
    "consents",
    "delivery_counts",
    "devices",
    "fallback_keys",
    "kt_accounts",
    "kt_certificates",
    "kt_epochs",
    "kt_log_nodes",
    "kt_map_nodes",
    "kt_pending_accounts",
    "kt_pending_certificates",
    "ledger",
    "ledger_months",
    "lookup_budgets",
    "mailbox",
    "message_pricing",
    "messages",
    "metadata",
    "one_time_keys",
    "operator_keys",
    "operator_tokens",
    "quality_events",
    "rate_cards",
    "rate_events",
    "reach",
    "recipients",
    "service_windows",
    "templates",
    "throttle_keys",
    "verification_codes",
    "verification_requests",
]

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
BigId = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("phone", String(20), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_device_id", Integer, nullable=False, server_default="0"),
    Column("kind", String(16), nullable=False, server_default="customer"),
)

devices = Table(
    "devices",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("account_id", String(32), ForeignKey("accounts.id"), nullable=False),
    Column("device_id", Integer, nullable=False),
    Column("registration_id", Integer, nullable=False),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("name", String(64), nullable=False, server_default=""),
    Column("identity_curve25519", String(64), nullable=True),
    Column("identity_ed25519", String(64), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger, nullable=False),
    UniqueConstraint("account_id", "device_id", name="uq_devices_account_device"),
)

verification_codes = Table(
    "verification_codes",
    metadata,
    Column("phone", String(20), primary_key=True),
    # Kept as sent so that a repeated request re-sends it: hashing a 6-digit code would not
    # hide it (a million guesses), its short life and the attempt limits protect it.
    Column("code", String(12), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    # The code it replaced stays valid until its own expiry, so a new request by anyone never
    # invalidates a code the owner is typing.
    Column("previous_code", String(12), nullable=True),
    Column("previous_expires_ms", BigInteger, nullable=True),
)

# Code requests and wrong codes, per bucket: an HMAC of "kind:pair:{phone}:{source}" or
# "kind:addr:{source}" under the key of the throttle window the event fell in (migration 0008),
# so the table never holds a phone number or an address. Deleted after the window.
rate_events = Table(
    "rate_events",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("bucket", String(96), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Index("ix_rate_events_bucket_at", "bucket", "at_ms"),
)

# The random key of each throttle window (``slot`` = time // the window's length): shared by
# the relay nodes, and deleted with the window's events, after which their buckets cannot be
# told apart from random (migration 0008).
throttle_keys = Table(
    "throttle_keys",
    metadata,
    Column("slot", BigInteger, primary_key=True, autoincrement=False),
    Column("key", LargeBinary(32), nullable=False),
)

# Each account's lookup budget as a theoretical arrival time (GCRA): one row per account,
# shared by its devices and kept across restarts.
lookup_budgets = Table(
    "lookup_budgets",
    metadata,
    Column("account_id", String(32), primary_key=True),
    Column("tat_ms", BigInteger, nullable=False),
)

one_time_keys = Table(
    "one_time_keys",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("device_pk", BigInteger, ForeignKey("devices.pk", ondelete="CASCADE"), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    UniqueConstraint("device_pk", "key_id", name="uq_one_time_keys_device_key"),
)

fallback_keys = Table(
    "fallback_keys",
    metadata,
    Column("device_pk", BigInteger, ForeignKey("devices.pk", ondelete="CASCADE"), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("uploaded_ms", BigInteger, nullable=False),
)

# One row per accepted send: idempotency on (sender device, client message id), and the
# route back to the sender for delivered and read events.
messages = Table(
    "messages",
    metadata,
    Column("message_id", String(32), primary_key=True),
    Column("sender_account", String(32), nullable=False),
    Column("sender_device_pk", BigInteger, nullable=False),
    Column("client_msg_id", String(64), nullable=False),
    Column("recipient_account", String(32), nullable=False),
    Column("klass", SmallInteger, nullable=False),
    Column("server_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("delivered_ms", BigInteger, nullable=True),
    Column("read_ms", BigInteger, nullable=True),
    # The template a template-class message was accepted as: a resend carries it again, whatever
    # the resending device says (migration 0006).
    Column("template_id", BigInteger, nullable=True),
    # How often its sender encrypted it again for a device that could not decrypt it (0006).
    Column("resends", Integer, nullable=False, server_default="0"),
    UniqueConstraint("sender_device_pk", "client_msg_id", name="uq_messages_sender_client_msg"),
    Index("ix_messages_expires", "expires_ms"),
    # Retention: received messages by age (migration 0008).
    Index("ix_messages_server", "server_ms"),
    # Room on each page for the delivered and read updates (migration 0011).
    postgresql_with={"fillfactor": 50},
)

# Per-device mailbox, delivered in ``seq`` order. ``kind`` 0 carries a ciphertext; the other
# kinds are relay events about a message this device's account sent (delivered, read).
mailbox = Table(
    "mailbox",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("device_pk", BigInteger, nullable=False),
    Column("kind", SmallInteger, nullable=False),
    Column("message_id", String(32), nullable=False),
    Column("peer_account", String(32), nullable=False),
    Column("peer_device", Integer, nullable=False),
    Column("klass", SmallInteger, nullable=False),
    Column("olm_type", SmallInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("server_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    # The template a template-class message was sent (and billed) as: the recipient's client
    # checks the ciphertext against it (migration 0004).
    Column("template_id", BigInteger, nullable=True),
    Index("ix_mailbox_device_seq", "device_pk", "seq"),
    Index("ix_mailbox_expires", "expires_ms"),
    # Retention: whether a message still has a copy waiting (migration 0008).
    Index("ix_mailbox_message", "message_id"),
    # Never reuse a seq, even when the table runs empty: delivery loops resume after one.
    sqlite_autoincrement=True,
)


# --- businesses, verification and operator administration (migration 0002) -------------------

business_profiles = Table(
    "business_profiles",
    metadata,
    Column("account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("display_name", String(100), nullable=False),
    # Lookalike-proof form of the display name (case, diacritics, confusables, spacing).
    Column("name_skeleton", String(200), nullable=False, index=True),
    Column("about", String(139), nullable=False, server_default=""),
    Column("description", String(512), nullable=False, server_default=""),
    Column("address", String(256), nullable=False, server_default=""),
    Column("email", String(128), nullable=False, server_default=""),
    Column("websites", Text, nullable=False, server_default="[]"),
    Column("category", String(32), nullable=False, server_default="OTHER"),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("hours", Text, nullable=False, server_default="{}"),
    Column("closed_dates", Text, nullable=False, server_default="[]"),
    Column("picture", LargeBinary, nullable=True),
    Column("picture_type", String(32), nullable=True),
    Column("verification", String(16), nullable=False, server_default="unverified"),
    Column("suspended_ms", BigInteger, nullable=True),
    Column("suspend_reason", String(512), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

verification_requests = Table(
    "verification_requests",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", String(32), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("note", String(512), nullable=False, server_default=""),
    Column("reason", String(512), nullable=True),
    Column("requested_ms", BigInteger, nullable=False),
    Column("decided_ms", BigInteger, nullable=True),
    Column("decided_by", String(64), nullable=True),
)

operator_keys = Table(
    "operator_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("public_key", String(64), nullable=False),
    Column("private_sealed", LargeBinary, nullable=False),
    # The previous key's signature over this key, so clients can follow a rotation.
    Column("endorsement", String(128), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("signs_from_ms", BigInteger, nullable=False),
    Column("retires_ms", BigInteger, nullable=True),
)

certificates = Table(
    "certificates",
    metadata,
    Column("serial", BigId, primary_key=True, autoincrement=True),
    Column("account_id", String(32), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("body", LargeBinary, nullable=False),
    Column("signature", String(128), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("issued_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger, nullable=True),
    Column("revoke_reason", String(512), nullable=True),
    sqlite_autoincrement=True,
)

operator_tokens = Table(
    "operator_tokens",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger, nullable=True),
)

admin_audit = Table(
    "admin_audit",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("operator", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("account_id", String(32), nullable=True, index=True),
    Column("details", Text, nullable=False, server_default="{}"),
)


# --- platform rules: blocks, reports, windows, consent, templates, tiers, billing (0003) ------

# Pricing facts of a send, fixed when the relay accepts it and billed when it is delivered.
message_pricing = Table(
    "message_pricing",
    metadata,
    Column("message_id", String(32), primary_key=True),
    Column("business_account", String(32), nullable=False),
    Column("recipient_account", String(32), nullable=False),
    Column("template_id", BigInteger, nullable=True),
    # marketing, utility, authentication, authentication_international, service
    Column("category", String(32), nullable=False),
    Column("billable", SmallInteger, nullable=False),
    # regular, free_customer_service, free_entry_point
    Column("pricing_type", String(32), nullable=False),
    Column("country", String(2), nullable=False),
    Column("price_micros", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("server_ms", BigInteger, nullable=False),
    Index("ix_message_pricing_server_ms", "server_ms"),
)

# A customer (blocker) blocked an account; present while the block lasts.
blocks = Table(
    "blocks",
    metadata,
    Column("blocker_account", String(32), primary_key=True),
    Column("blocked_account", String(32), primary_key=True),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_blocks_blocked", "blocked_account"),
)

# What lowers a business's quality: each block and report, with the template it followed.
quality_events = Table(
    "quality_events",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("business_account", String(32), nullable=False),
    Column("customer_account", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # block, report
    Column("reason", String(32), nullable=False, server_default=""),
    Column("detail", String(512), nullable=False, server_default=""),
    Column("message_id", String(32), nullable=True),
    Column("template_id", BigInteger, nullable=True),
    Column("at_ms", BigInteger, nullable=False),
    # 1 if it moves the rating: from a recent recipient, once per customer per quality period
    # (migration 0005); the others are kept for the operator.
    Column("counted", SmallInteger, nullable=False, server_default="1"),
    Index("ix_quality_events_business_at", "business_account", "at_ms"),
    Index("ix_quality_events_template_at", "template_id", "at_ms"),
    Index("ix_quality_events_business_customer", "business_account", "customer_account", "at_ms"),
)

# The last business message each customer received (first delivery): whose blocks and
# reports count towards the business's quality.
recipients = Table(
    "recipients",
    metadata,
    Column("business_account", String(32), primary_key=True),
    Column("customer_account", String(32), primary_key=True),
    Column("delivered_ms", BigInteger, nullable=False),
)

# Delivered messages per business, template (0: every message without one) and UTC day: the
# denominators of the business's and its templates' quality ratings (non-template messages
# since migration 0008).
delivery_counts = Table(
    "delivery_counts",
    metadata,
    Column("business_account", String(32), primary_key=True),
    Column("template_id", BigInteger, primary_key=True),  # 0 for messages without a template
    Column("day", Integer, primary_key=True),  # days since the epoch, UTC
    Column("delivered", BigInteger, nullable=False),
)

# The customer-service window of a (business, customer) pair: the customer's last message.
service_windows = Table(
    "service_windows",
    metadata,
    Column("business_account", String(32), primary_key=True),
    Column("customer_account", String(32), primary_key=True),
    Column("last_customer_ms", BigInteger, nullable=False),
)

# The last business-initiated message (outside a window) to each customer: tier usage.
reach = Table(
    "reach",
    metadata,
    Column("business_account", String(32), primary_key=True),
    Column("customer_account", String(32), primary_key=True),
    Column("at_ms", BigInteger, nullable=False),
    Index("ix_reach_business_at", "business_account", "at_ms"),
)

# Per-business messaging state: tier step, its last evaluation, a raised throughput.
business_limits = Table(
    "business_limits",
    metadata,
    Column("business_account", String(32), primary_key=True),
    Column("tier", SmallInteger, nullable=False),  # index into the tier ladder
    Column("evaluated_ms", BigInteger, nullable=False),
    Column("throughput_mps", Integer, nullable=True),
    Column("updated_ms", BigInteger, nullable=False),
)

# The current consent of a customer for one business and scope (utility, marketing), with the
# signed statement (customer) or the attestation (business) that set it.
consents = Table(
    "consents",
    metadata,
    Column("business_account", String(32), primary_key=True),
    Column("customer_account", String(32), primary_key=True),
    Column("scope", String(16), primary_key=True),
    Column("state", String(16), nullable=False),  # opted_in, opted_out
    Column("source", String(16), nullable=False),  # customer, business
    Column("statement", LargeBinary, nullable=True),
    Column("signature", String(128), nullable=True),
    Column("device_id", Integer, nullable=True),
    Column("evidence", String(1024), nullable=True),
    Column("evidence_ms", BigInteger, nullable=True),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_consents_customer", "customer_account"),
)

# Every consent change ever made, append-only.
consent_log = Table(
    "consent_log",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("business_account", String(32), nullable=False),
    Column("customer_account", String(32), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("statement", LargeBinary, nullable=True),
    Column("signature", String(128), nullable=True),
    Column("device_id", Integer, nullable=True),
    Column("evidence", String(1024), nullable=True),
    Column("evidence_ms", BigInteger, nullable=True),
    Column("at_ms", BigInteger, nullable=False),
    Index("ix_consent_log_pair", "business_account", "customer_account"),
)

# Message templates in the Cloud API shape; approved ones carry the operator's signature.
templates = Table(
    "templates",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("business_account", String(32), nullable=False),
    Column("name", String(512), nullable=False),
    Column("language", String(16), nullable=False),
    Column("category", String(16), nullable=False),  # MARKETING, UTILITY, AUTHENTICATION
    Column("parameter_format", String(16), nullable=False, server_default="POSITIONAL"),
    Column("components", Text, nullable=False),
    Column("status", String(24), nullable=False),
    Column("rejected_reason", String(512), nullable=True),
    Column("quality", String(8), nullable=False, server_default="UNKNOWN"),
    Column("pauses", SmallInteger, nullable=False, server_default="0"),
    Column("paused_until_ms", BigInteger, nullable=True),
    Column("signed_body", LargeBinary, nullable=True),
    Column("signature", String(128), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    UniqueConstraint("business_account", "name", "language", name="uq_templates_name_language"),
    sqlite_autoincrement=True,
)

# Prices per category and recipient country; business_account '' is the operator's default
# card, any other row a confidential override for that business. Prices in micro-units.
rate_cards = Table(
    "rate_cards",
    metadata,
    Column("business_account", String(32), primary_key=True),
    Column("category", String(32), primary_key=True),
    Column("country", String(2), primary_key=True),  # ISO 3166-1 alpha-2, or '*' for any
    Column("price_micros", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# Charges, append-only: one row per delivered billable message, never two (unique message).
ledger = Table(
    "ledger",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("business_account", String(32), nullable=False),
    Column("message_id", String(32), nullable=False, unique=True),
    Column("recipient_account", String(32), nullable=False),
    Column("template_id", BigInteger, nullable=True),
    Column("category", String(32), nullable=False),
    Column("country", String(2), nullable=False),
    Column("price_micros", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("charged_ms", BigInteger, nullable=False),
    Index("ix_ledger_business_charged", "business_account", "charged_ms"),
    # Retention: charges by age (migration 0008).
    Index("ix_ledger_charged", "charged_ms"),
    sqlite_autoincrement=True,
)

# A month's charges once their line items were given up (``retention.ledger_dispute_days``
# after the month's statement became final): what the statement's totals show (0008).
ledger_months = Table(
    "ledger_months",
    metadata,
    Column("business_account", String(32), primary_key=True),
    Column("month_ms", BigInteger, primary_key=True, autoincrement=False),  # its first ms, UTC
    Column("category", String(32), primary_key=True),
    Column("country", String(2), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
)

# Encrypted attachments: opaque ciphertext in the blob store (relay/attachments), one row per
# blob. The id is random (it is the capability to download); the relay knows only the
# ciphertext's length, never a file name, type or plaintext size.
attachments = Table(
    "attachments",
    metadata,
    Column("id", String(43), primary_key=True),
    Column("device_pk", BigInteger, nullable=False),  # the uploader
    Column("account_id", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # media, document
    Column("size", BigInteger, nullable=False),
    Column("received", BigInteger, nullable=False, server_default="0"),  # flushed bytes
    Column("created_ms", BigInteger, nullable=False),
    Column("completed_ms", BigInteger, nullable=True),
    Column("expires_ms", BigInteger, nullable=False),
    Index("ix_attachments_device", "device_pk", "expires_ms"),
    Index("ix_attachments_expires", "expires_ms"),
)

# --- key transparency (relay/transparency; crypto/transparency.py has the structures) --------

# Perfect subtrees of the append-only log: (level, index) covers leaves
# [index * 2^level, (index + 1) * 2^level). Written once, never changed.
kt_log_nodes = Table(
    "kt_log_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("hash", LargeBinary(32), nullable=False),
)

# Nodes of the map (account key -> latest device leaf): ``pos`` is the depth and the path's
# bits; a leaf carries its key and value.
kt_map_nodes = Table(
    "kt_map_nodes",
    metadata,
    Column("pos", LargeBinary(34), primary_key=True),
    Column("hash", LargeBinary(32), nullable=False),
    Column("leaf_key", LargeBinary(32), nullable=True),
    Column("leaf_value", LargeBinary(40), nullable=True),
)

# Each account's latest device leaf as logged (what a lookup answers with).
kt_accounts = Table(
    "kt_accounts",
    metadata,
    Column("account_id", String(32), primary_key=True),
    Column("leaf_idx", BigInteger, nullable=False),
    Column("leaf", LargeBinary, nullable=False),
)

# Where each certificate the operator issued was logged.
kt_certificates = Table(
    "kt_certificates",
    metadata,
    Column("serial", BigInteger, primary_key=True, autoincrement=False),
    Column("account_id", String(32), nullable=False),
    Column("leaf_idx", BigInteger, nullable=False),
    Column("leaf", LargeBinary, nullable=False),
)

kt_epochs = Table(
    "kt_epochs",
    metadata,
    Column("epoch", BigInteger, primary_key=True, autoincrement=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("published_ms", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("signature", String(128), nullable=False),
)

# Changes not yet in an epoch, written in the transaction that makes them: an account whose
# device set changed (once, however often), a certificate issued.
kt_pending_accounts = Table(
    "kt_pending_accounts",
    metadata,
    Column("account_id", String(32), primary_key=True),
    Column("queued_ms", BigInteger, nullable=False),
)

kt_pending_certificates = Table(
    "kt_pending_certificates",
    metadata,
    Column("serial", BigInteger, primary_key=True, autoincrement=False),
    Column("account_id", String(32), nullable=False),
    Column("digest", LargeBinary(32), nullable=False),
    Column("queued_ms", BigInteger, nullable=False),
)

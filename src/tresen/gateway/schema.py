"""Tables of a business gateway. Times are integer milliseconds since the Unix epoch (UTC).

Unlike the relay's, this database holds plaintext: the business's own conversations, on the
business's own machines. Migrations in ``tresen/gateway/migrations`` create exactly these
tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from tresen.core.db import NAMING_CONVENTION

__all__ = [
    "activity",
    "agent_sessions",
    "agent_tokens",
    "agents",
    "api_tokens",
    "assignment_settings",
    "audit_log",
    "automation_settings",
    "bot_actions",
    "bot_intents",
    "bot_log",
    "bot_state",
    "campaign_recipients",
    "campaigns",
    "contacts",
    "conversation_labels",
    "conversations",
    "delivery_receipts",
    "early_statuses",
    "labels",
    "login_failures",
    "media",
    "media_blobs",
    "message_statuses",
    "messages",
    "meta",
    "metadata",
    "quick_replies",
    "subscriber_imports",
    "subscriber_lists",
    "subscribers",
    "template_states",
    "webhook_events",
    "webhook_subscriptions",
]

metadata = MetaData(naming_convention=NAMING_CONVENTION)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)
"""Small facts of this gateway (the API app secret, sealed; whether templates were seen)."""

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("hint", String(16), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_used_ms", BigInteger),
    Column("revoked_ms", BigInteger),
)
"""Bearer tokens of the Cloud API: only their SHA-256 is kept, and a short hint to tell them
apart in listings."""

contacts = Table(
    "contacts",
    metadata,
    Column("account_id", String(32), primary_key=True),
    Column("phone", String(20)),
    Column("wa_id", String(20), index=True),
    Column("user_id", String(40), nullable=False, unique=True),
    Column("profile_name", String(128)),
    Column("last_inbound_ms", BigInteger),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_message_ms", BigInteger),
    Index("ix_contacts_last_message", "last_message_ms", "account_id"),
)
"""The customers this business talks to: relay account, phone (``wa_id`` is its digits) and
the business-scoped user id (``user_id``, ``CC.digits``) the Cloud API's BSUIDs stand for.
``last_message_ms`` is the time of the latest message in or out, kept by the database's own
triggers (migration 0004) for the inbox's list."""

messages = Table(
    "messages",
    metadata,
    Column("wamid", String(80), primary_key=True),
    Column("relay_message_id", String(32), unique=True),
    Column("contact", String(32), nullable=False),
    Column("direction", String(3), nullable=False),
    Column("origin", String(8), nullable=False),
    Column("type", String(24), nullable=False),
    Column("content", Text, nullable=False),
    Column("context_wamid", String(80)),
    Column("status", String(12), nullable=False),
    Column("error_code", Integer),
    Column("error", Text),
    Column("pricing", Text),
    Column("callback_data", String(512)),
    Column("template_name", String(512)),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_messages_contact_created", "contact", "created_ms"),
    Index("ix_messages_contact_direction_created", "contact", "direction", "created_ms"),
    Index("ix_messages_created", "created_ms"),
)
"""Every message of every conversation, in (``direction``) and out: ``content`` is the Cloud
API object of its ``type`` as JSON; ``status`` is ``received`` (then ``read``) for inbound and
``sent`` → ``delivered`` → ``read`` for outbound. ``origin`` is ``customer``, ``api`` (sent
through this gateway: its statuses become webhooks) or ``device`` (sent by another device of
the business). Its words are indexed for search by the database itself (migration 0004: an FTS5
table ``message_search`` on SQLite, a generated ``search`` column on PostgreSQL)."""

message_statuses = Table(
    "message_statuses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("wamid", String(80), nullable=False, index=True),
    Column("status", String(12), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    UniqueConstraint("wamid", "status"),
)
"""When each outbound message reached each status (one row per status)."""

early_statuses = Table(
    "early_statuses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("relay_message_id", String(32), nullable=False, index=True),
    Column("status", String(12), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("pricing", Text),
    Column("error_code", Integer),
    Column("error", String(512)),
)
"""Statuses that arrived before the message they name was stored (a receipt can overtake the
send's own bookkeeping); applied when the message is stored."""

template_states = Table(
    "template_states",
    metadata,
    Column("template_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(512), nullable=False),
    Column("language", String(15), nullable=False),
    Column("category", String(24), nullable=False),
    Column("status", String(24), nullable=False),
    Column("reason", String(64)),
    Column("updated_ms", BigInteger, nullable=False),
)
"""The last status seen of each of the business's templates at the relay: a change becomes a
``message_template_status_update`` webhook, also after the gateway was down."""

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", String(2048), nullable=False, unique=True),
    Column("verify_token", String(256), nullable=False),
    Column("app_secret", LargeBinary, nullable=False),
    Column("fields", String(512), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("removed_ms", BigInteger),
)
"""Where events go: the callback URL, the verify token of its handshake, the app secret that
signs each POST (sealed with the gateway's key) and the comma-separated fields wanted."""

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("subscription_id", Integer, nullable=False),
    Column("conversation", String(64), nullable=False),
    Column("field", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("state", String(12), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("delivered_ms", BigInteger),
    Column("last_error", String(512)),
    Index("ix_webhook_events_pending", "state", "subscription_id", "conversation", "id"),
    Index("ix_webhook_events_due", "state", "next_attempt_ms"),
)
"""The transactional outbox: one row per event and subscription, written in the transaction
that made the change. ``body`` is the exact JSON POSTed (and signed) on every attempt;
``state`` is ``pending``, ``delivered`` or ``dead``; events of one ``conversation`` go out in
``id`` order."""

agents = Table(
    "agents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("disabled_ms", BigInteger),
    Column("language", String(8)),
    Column("away_ms", BigInteger),
    Column("open_limit", Integer),
    Column("assigned_turn", BigInteger),
)
"""The people of the team inbox: ``role`` is owner, admin or agent; the password is kept only
as an argon2id hash; a disabled agent keeps their name on what they did, and cannot sign in.
An agent is away since ``away_ms`` (``NULL``: available); ``open_limit`` overrides the
business's limit of open conversations assigned automatically; ``assigned_turn`` orders the
agents by their last automatic assignment (the lowest goes next)."""

agent_sessions = Table(
    "agent_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("agent_id", Integer, nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Index("ix_agent_sessions_agent_id", "agent_id"),
)
"""Signed-in browsers: only the SHA-256 of the session cookie is kept, with the session's
CSRF token."""

login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(160), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("window_start_ms", BigInteger, nullable=False),
)
"""Failed sign-ins per user name and per address, counted over a window (throttling)."""

conversations = Table(
    "conversations",
    metadata,
    Column("contact", String(32), primary_key=True),
    Column("status", String(12), nullable=False),
    Column("assignee", Integer),
    Column("snoozed_until_ms", BigInteger),
    Column("status_ms", BigInteger),
    Column("read_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_conversations_assignee", "assignee"),
)
"""The inbox's view of each customer's conversation: ``status`` is open, pending, snoozed,
resolved or bot (the bot answers it), set at ``status_ms``; ``assignee`` the agent answering
it; messages after ``read_ms`` are unread. A contact without a row is an open, unassigned
conversation nobody read. A snoozed conversation opens again at ``snoozed_until_ms``, and a
pending, snoozed or resolved one when the customer writes again; the bot keeps answering one
of status bot until it hands it over."""

activity = Table(
    "activity",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact", String(32), nullable=False),
    Column("agent_id", Integer),
    Column("kind", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Index("ix_activity_contact_at", "contact", "at_ms"),
    Index("ix_activity_kind_at", "kind", "at_ms"),
)
"""What the team did in each conversation, in order: ``kind`` is note (a private note, which
never leaves the gateway), reply, assign, status, label, unlabel, or opened (the customer wrote
into a new or resolved conversation); ``detail`` its text or new value. ``agent_id`` is
``NULL`` for what the inbox did by itself (an automatic assignment, an opening). Reports are
computed from these rows alone."""

quick_replies = Table(
    "quick_replies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("shortcut", String(32), nullable=False, unique=True),
    Column("text", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)
"""Canned answers: typing ``/shortcut`` as a reply sends its text."""

labels = Table(
    "labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(32), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
)
"""Labels the team puts on conversations (e.g. refund, vip)."""

conversation_labels = Table(
    "conversation_labels",
    metadata,
    Column("contact", String(32), primary_key=True),
    Column("label_id", Integer, primary_key=True),
    Index("ix_conversation_labels_label_id", "label_id"),
)
"""Which conversation carries which label."""

assignment_settings = Table(
    "assignment_settings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("enabled", Integer, nullable=False),
    Column("default_limit", Integer, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
"""Automatic assignment for the business (one row, ``id`` 1; none: off, with the default
limit): whether it is on, and how many open conversations it gives an agent at most."""

agent_tokens = Table(
    "agent_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("hint", String(16), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_used_ms", BigInteger),
    Column("revoked_ms", BigInteger),
    Index("ix_agent_tokens_agent_id", "agent_id"),
)
"""Personal access tokens of the inbox's JSON API: each acts as its agent, with the agent's
role. Only the SHA-256 is kept, and a short hint to tell them apart in listings."""

automation_settings = Table(
    "automation_settings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("config", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
"""The business's automation (one row, ``id`` 1; none: everything off): greeting and away
messages, which bot answers first (none, the FAQ bot, or the business's own bot), its
thresholds, texts and hand-over rules, as JSON. Secrets are not in it (see ``meta``)."""

bot_intents = Table(
    "bot_intents",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("enabled", Integer, nullable=False),
    Column("spec", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
"""The FAQ bot's intents: example phrasings, the title of its "did you mean" button and the
answer, as JSON (``spec``), in the order the business lists them."""

bot_actions = Table(
    "bot_actions",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("spec", Text, nullable=False),
    Column("headers", LargeBinary, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
"""HTTP calls into the business's own systems that intents answer from: the request and the
answer as JSON (``spec``), and the request's headers (tokens) sealed with the gateway's key."""

bot_state = Table(
    "bot_state",
    metadata,
    Column("contact", String(32), primary_key=True),
    Column("language", String(2)),
    Column("misunderstood", Integer, nullable=False),
    Column("waiting", Text),
    Column("took_ms", BigInteger),
    Column("greeted_ms", BigInteger),
    Column("away_ms", BigInteger),
    Column("updated_ms", BigInteger, nullable=False),
)
"""What automation remembers of each customer: the language they write, misunderstood messages
in a row, the question the bot waits to be answered (``waiting``: an action's missing
parameter, as JSON), when the bot last took the conversation, and when the greeting and the
away message were last sent."""

bot_log = Table(
    "bot_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("intent", String(40)),
    Column("score", Integer),
    Column("detail", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("dismissed_ms", BigInteger),
    Index("ix_bot_log_kind_at", "kind", "at_ms"),
    Index("ix_bot_log_contact_at", "contact", "at_ms"),
)
"""What automation did, for the reports: ``kind`` is took (the bot took a conversation),
answered, suggested, unanswered (``detail``: the customer's question, kept until the business
dismisses it or turns it into an example), action, action_failed, handoff (``detail``: the
reason), greeting or away. ``score`` is the match's confidence in percent."""

media = Table(
    "media",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("origin", String(8), nullable=False),
    Column("mime_type", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("file_size", BigInteger, nullable=False),
    Column("filename", String(255)),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False, index=True),
)
"""The business's media (the Cloud API's media ids): files uploaded through the API
(``origin`` ``upload``) or received from customers (``inbound``), kept in plaintext under the
data folder's ``media/`` until ``expires_ms``. ``sha256`` is the hex digest of the file."""

media_blobs = Table(
    "media_blobs",
    metadata,
    Column("blob_id", String(64), primary_key=True),
    Column("media_id", String(20), nullable=False, index=True),
    Column("created_ms", BigInteger, nullable=False),
)
"""The relay's encrypted blobs made from a media (one per message that sent it): deleted at
the relay when the business deletes the media, or when it expires."""

subscriber_lists = Table(
    "subscriber_lists",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("keyword", String(30), unique=True),
    Column("purpose", String(12), nullable=False),
    Column("description", String(500), nullable=False),
    Column("confirmation", String(1024), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)
"""Newsletters and other lists customers subscribe to: ``purpose`` marketing (offers,
newsletters: only with the customer's own signed opt-in) or utility (notifications such as
flight updates: a business may attest the customer's consent). ``keyword`` (upper case, e.g. NEWS):
a customer who writes ``START NEWS`` is asked to confirm (double opt-in); ``confirmation`` is
the text that asks."""

subscribers = Table(
    "subscribers",
    metadata,
    Column("list_id", Integer, primary_key=True),
    Column("account_id", String(32), primary_key=True),
    Column("phone", String(20), nullable=False),
    Column("state", String(12), nullable=False),
    Column("source", String(8), nullable=False),
    Column("attributes", Text, nullable=False),
    Column("evidence", String(1024)),
    Column("reason", String(256)),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_subscribers_list_state", "list_id", "state"),
)
"""Who is on which list: ``state`` pending (asked to confirm), subscribed or unsubscribed;
``source`` keyword, link or import; ``attributes`` a JSON object of the subscriber's fields
(from a CSV import or set later), for segments and per-recipient parameters; ``evidence``
what an import said about the subscriber's consent; ``reason`` why the state last changed
(e.g. the customer's STOP, or consent withdrawn in their app); ``updated_ms`` when, which for
a pending subscriber is when they were asked to confirm."""

subscriber_imports = Table(
    "subscriber_imports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("list_id", Integer, nullable=False),
    Column("by", String(100), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("accepted", Integer, nullable=False),
    Column("refused", Integer, nullable=False),
    Column("counts", Text, nullable=False),
    Column("rows", Text, nullable=False),
    Index("ix_subscriber_imports_list", "list_id", "id"),
)
"""The CSV imports of a list, newest kept (a bounded number per list): who imported and
when, how many rows were accepted and refused, ``counts`` (JSON) the accepted rows by the
state they got, and ``rows`` (JSON) the report of each row, refused rows first when a large
file's report is cut short; each row's reason is kept as its code, English text and values,
so that it can be shown in any language."""

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("template_name", String(512), nullable=False),
    Column("language", String(15), nullable=False),
    Column("category", String(16), nullable=False),
    Column("audience", Text, nullable=False),
    Column("parameters", Text, nullable=False),
    Column("schedule", Text, nullable=False),
    Column("state", String(12), nullable=False),
    Column("reason", String(256)),
    Column("start_ms", BigInteger),
    Column("resume_ms", BigInteger),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("finished_ms", BigInteger),
    Column("figures", Text),
    Index("ix_campaigns_state", "state"),
)
"""A template sent to an audience: ``audience`` (JSON: a list and/or labels and attribute
conditions), ``parameters`` (JSON: the template's parameters, with ``{{attribute}}`` taken
from each recipient), ``schedule`` (JSON: when, how spread out, quiet hours); ``state`` draft,
scheduled, running, paused, waiting (for the tier's budget), done or cancelled; ``resume_ms``
when a waiting campaign (or one in its quiet hours) goes on. ``figures`` (JSON) is set when
retention reduced a finished campaign's recipients: their counts by state, how many were sent,
delivered, read and replied to, and the billable deliveries by country; the campaign's
results are read from it from then on."""

campaign_recipients = Table(
    "campaign_recipients",
    metadata,
    Column("campaign_id", Integer, primary_key=True),
    Column("account_id", String(32), primary_key=True),
    Column("phone", String(20), nullable=False),
    Column("parameters", Text, nullable=False),
    Column("state", String(12), nullable=False),
    Column("reason", String(256)),
    Column("error_code", Integer),
    Column("client_msg_id", String(64), nullable=False),
    Column("wamid", String(64)),
    Column("due_ms", BigInteger),
    Column("sent_ms", BigInteger),
    Column("delivered_ms", BigInteger),
    Column("read_ms", BigInteger),
    Column("replied_ms", BigInteger),
    Column("pricing", Text),
    Index("ix_campaign_recipients_state", "campaign_id", "state"),
    Index("ix_campaign_recipients_wamid", "wamid"),
)
"""One row per recipient of a campaign, made when it starts: ``state`` queued, sent,
delivered, read, failed or opted_out (with ``reason`` and the Cloud API ``error_code``);
sending while the relay is asked.
``client_msg_id`` is fixed per campaign and recipient, so a send repeated after a crash is
the relay's duplicate, never a second message."""

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("subject", String(64)),
    Column("reason", String(512)),
    Column("details", Text, nullable=False),
    Index("ix_audit_log_at", "at_ms"),
)
"""The business's actions on its customers' personal data: ``actor`` is an agent
(``agent:{id}``), the command line (``cli:{user}``) or the gateway itself (``gateway``);
``action`` customer_erased, export_answered, subscribers_imported or contact_edited;
``subject`` a hash of the customer's account id (``gateway/customers/audit.py``: it proves
which customer when asked with the id, and names nobody by itself); ``details`` JSON counts."""

delivery_receipts = Table(
    "delivery_receipts",
    metadata,
    Column("message_id", String(32), primary_key=True),
    Column("customer_account", String(32), nullable=False),
    Column("device_id", BigInteger, nullable=False),
    Column("device_ed25519", String(64), nullable=False),
    Column("template_id", String(20), nullable=False),
    Column("delivered_ms", BigInteger, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Index("ix_delivery_receipts_received", "received_ms"),
)
"""A customer's device signed that it received the business's template message
``message_id`` (the relay's id), checked by the gateway's device before it is kept: the
evidence ``tresen gateway billing verify`` holds the operator's statement against
(``gateway/billing``). One per message (the first device's; further devices of the customer
add nothing). ``device_ed25519`` is the key that signed it, so that it can be checked again
offline; ``delivered_ms`` the customer device's clock, ``received_ms`` the gateway's. Kept
``retention.delivery_receipt_days`` after it arrived, also after the customer is erased
(evidence for a bill, as docs/privacy.md says)."""

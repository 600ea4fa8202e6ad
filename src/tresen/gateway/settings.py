"""Settings of a business gateway, from ``TRESEN_GATEWAY_*`` variables and an optional TOML file.

Precedence, highest first: command-line options, environment variables, the TOML file
(``--config`` or ``TRESEN_GATEWAY_CONFIG``), defaults. Nested groups use ``__``:
``TRESEN_GATEWAY_WEBHOOKS__GIVE_UP_S=3600``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path
from typing import Any, ClassVar, Literal

import phonenumbers
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import SettingsConfigDict

from tresen.core.settings import FileSettings, MetricsSettings, load_from

__all__ = [
    "ApiLimits",
    "GatewaySettings",
    "InboxSettings",
    "MediaSettings",
    "RetentionSettings",
    "WebhookSettings",
    "load_gateway_settings",
]

DAY_S = 24 * 3600


class WebhookSettings(BaseModel):
    """How events are delivered to subscribers."""

    retry_initial_s: float = Field(default=1.0, gt=0, description="first retry after")
    retry_factor: float = Field(default=2.0, ge=1)
    retry_max_s: float = Field(default=900.0, gt=0, description="longest wait between tries")
    give_up_s: float = Field(
        default=DAY_S,
        gt=0,
        description="an event still failing this long after it was made "
        "goes to the dead-letter list",
    )
    timeout_s: float = Field(default=10.0, gt=0, description="per POST")
    concurrency: int = Field(default=64, ge=1, description="POSTs in flight")
    batch: int = Field(default=500, ge=1, description="events read per round")
    max_subscriptions: int = Field(default=10, ge=1)
    poll_s: float = Field(default=5.0, gt=0, description="look for due events at least this often")
    keep_delivered_s: float | None = Field(
        default=7 * DAY_S,
        gt=0,
        description="delete delivered events (they hold message content) after this long; "
        "null keeps them until `tresen gateway webhooks prune`",
    )


class ApiLimits(BaseModel):
    """Sizes and rates of the Cloud API the gateway serves."""

    max_request_bytes: int = Field(default=256 * 1024, ge=1024)
    requests_per_second: float = Field(default=2_000.0, gt=0, description="per token")
    request_burst: int = Field(default=4_000, ge=1)
    max_tokens: int = Field(default=100, ge=1)
    max_page: int = Field(default=100, ge=1, description="items per list page")


class InboxSettings(BaseModel):
    """The team inbox's sign-in (sessions and throttling) and its live pages."""

    session_max_s: int = Field(default=12 * 3600, ge=60, description="a session ends after")
    session_idle_s: int = Field(default=2 * 3600, ge=60, description="or unused for this long")
    max_failures: int = Field(default=5, ge=1, description="failed sign-ins per name or address")
    throttle_window_s: int = Field(default=900, ge=1, description="counted over this long")
    secure_cookies: bool = Field(
        default=True,
        description="mark the session cookie Secure (browsers keep sending it to "
        "http://127.0.0.1 and localhost; turn off only for other plain-HTTP hosts)",
    )
    max_agents: int = Field(default=500, ge=1)
    api_requests_per_second: float = Field(
        default=20.0, gt=0, description="the inbox's JSON API, per agent token or session"
    )
    api_request_burst: int = Field(default=200, ge=1)
    live_streams_per_agent: int = Field(
        default=8, ge=1, le=100, description="live pages (event streams) open per agent"
    )
    live_streams: int = Field(default=1000, ge=1, le=10_000, description="and in all")
    live_heartbeat_s: float = Field(
        default=15, gt=0, le=300, description="a comment on an idle stream this often"
    )
    live_session_check_s: float = Field(
        default=30, gt=0, le=600, description="a stream re-checks (and touches) its session"
    )
    live_stream_max_s: float = Field(
        default=3600, gt=0, description="a stream ends after this long (the page reconnects)"
    )


class MediaSettings(BaseModel):
    """Media the business uploads, receives or sends by link (the Cloud API's media)."""

    lifetime_s: int = Field(
        default=30 * DAY_S, ge=60, description="an uploaded or received file is kept this long"
    )
    download_url_s: int = Field(
        default=300, ge=10, le=3600, description="a media URL (GET /{media_id}) works this long"
    )
    link_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="fetching a `link` takes at most this long"
    )
    link_redirects: int = Field(default=3, ge=0, le=10, description="redirects followed")
    link_allowed_networks: list[str] = Field(
        default_factory=list,
        description="networks (CIDR) a `link` may point into although they are loopback, "
        "private, link-local or reserved; empty: none (no server-side request forgery)",
    )
    sweep_s: float = Field(default=3600.0, gt=0, description="expired media are deleted this often")

    @field_validator("link_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"not a network in CIDR form (127.0.0.1/32): {network}") from exc
        return value


class CampaignSettings(BaseModel):
    """How campaigns are paced beyond what the relay tells (its throughput and tier)."""

    device_rate_per_s: float = Field(
        default=200.0,
        gt=0,
        description="the relay's per-device send rate (limits.send_rate_per_device): a "
        "campaign never sends faster, whatever the business's throughput",
    )
    quality_every_s: float = Field(
        default=60.0, gt=0, description="the tier and throughput are read again this often"
    )
    max_wait_s: float = Field(
        default=5.0, gt=0, description="the runner looks at the clock again at least this often"
    )


class RetentionSettings(BaseModel):
    """How long the gateway keeps what its rules no longer need (docs/privacy.md, the
    gateway's section), and the task that deletes or reduces it. Delivered webhook events
    have their own period (``webhooks.keep_delivered_s``); failed sign-ins are kept for
    ``inbox.throttle_window_s``, expired sessions until the next run."""

    interval_s: float = Field(
        default=3600.0, gt=0, le=DAY_S, description="run the retention task this often"
    )
    chunk_rows: int = Field(
        default=1000, ge=10, le=100_000, description="rows one retention transaction changes"
    )
    dead_webhook_days: int | None = Field(
        default=30,
        ge=1,
        le=3650,
        description="dead webhook events (they hold message content) are deleted this long "
        "after they were made; null keeps them until `tresen gateway webhooks prune --dead`",
    )
    early_status_days: int = Field(
        default=7,
        ge=1,
        le=365,
        description="a status whose message was never recorded is deleted this long after "
        "it arrived",
    )
    import_report_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="an import's per-row report (the numbers as written) is cleared this "
        "long after the import; its counts stay",
    )
    unsubscribed_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="an unsubscribed subscriber loses their attributes and consent evidence "
        "this long after they left; number, state, reason and time stay (the opt-out)",
    )
    campaign_detail_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="a finished campaign's per-recipient rows are reduced to its figures "
        "this long after it ended",
    )
    bot_log_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="automation's log (other than unanswered questions) is deleted this long "
        "after it was written; the automation report covers no further back",
    )
    device_payload_days: int = Field(
        default=7,
        ge=1,
        le=365,
        description="the device store's sealed copy of each message is cleared this long "
        "after the relay accepted it (the gateway's `messages` keeps its own); the message "
        "id stays to recognise a repeated delivery",
    )
    delivery_receipt_days: int = Field(
        default=180,
        ge=45,
        le=3650,
        description="a customer's signed delivery receipt is deleted this long after it "
        "arrived: long enough to check the month's statement while the relay still lists its "
        "line items (the month plus the relay's retention.ledger_dispute_days, 90 by default)",
    )
    conversation_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="erase a resolved conversation (its customer, as `tresen gateway "
        "customers erase` does) after this long without a message or activity; null (the "
        "default) keeps the business's record",
    )


class GatewaySettings(FileSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRESEN_GATEWAY_", env_nested_delimiter="__", extra="forbid"
    )
    config_env: ClassVar[str] = "TRESEN_GATEWAY_CONFIG"

    data_dir: Path = Path("tresen-gateway")
    database_url: str | None = None
    database_schema: str | None = Field(
        default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="PostgreSQL schema"
    )
    relay_url: str = "http://127.0.0.1:8470"
    phone: str | None = Field(default=None, description="the business's number, E.164")
    key_file: Path | None = Field(
        default=None, description="32-byte storage key; default: key in the data folder"
    )
    waba_id: str | None = Field(
        default=None, pattern=r"^[1-9][0-9]{0,18}$", description="default: derived from phone"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8480, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "NORMAL"
    template_poll_s: float = Field(
        default=30.0, gt=0, description="how often template reviews are looked for"
    )
    app_secret: str | None = Field(
        default=None,
        min_length=8,
        description="signs webhooks of subscriptions made through the API (subscribed_apps); "
        "default: created on first start, shown by `tresen gateway webhooks secret`",
    )
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    api: ApiLimits = Field(default_factory=ApiLimits)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    campaigns: CampaignSettings = Field(default_factory=CampaignSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parsed = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException as exc:
            raise ValueError(f"not a phone number in E.164 form (+4930…): {value}") from exc
        if not phonenumbers.is_possible_number(parsed):
            raise ValueError(f"not a possible phone number: {value}")
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'gateway.db').resolve()}"

    @property
    def resolved_key_file(self) -> Path:
        return self.key_file or self.data_dir / "key"

    @property
    def media_dir(self) -> Path:
        """Where the business's media files live (plaintext: the business's own domain)."""
        return self.data_dir / "media"

    @property
    def device_dir(self) -> Path:
        """Where the gateway's device (keys, sessions) lives: always a local folder."""
        return self.data_dir / "device"

    @property
    def phone_number_id(self) -> str:
        """The Cloud API ``phone_number_id`` of this gateway: the number's digits."""
        if self.phone is None:
            raise ValueError("the gateway has no business phone configured")
        return self.phone.lstrip("+")

    @property
    def resolved_waba_id(self) -> str:
        """The Cloud API ``waba_id``: configured, or 15 digits derived from the phone."""
        if self.waba_id:
            return self.waba_id
        digest = hashlib.sha256(f"waba:{self.phone_number_id}".encode()).digest()
        return str(10**14 + int.from_bytes(digest[:8], "big") % (9 * 10**14))


def load_gateway_settings(config_file: Path | None = None, **overrides: Any) -> GatewaySettings:
    """Settings from the environment and ``config_file``, with ``overrides`` on top."""
    return load_from(GatewaySettings, config_file, **overrides)

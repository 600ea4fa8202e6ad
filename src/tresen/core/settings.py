"""Settings from ``TRESEN_*`` environment variables and an optional TOML file.

Precedence, highest first: explicit overrides (command-line options), environment variables,
the TOML file (``--config`` or ``TRESEN_CONFIG``), defaults. Nested groups use ``__`` in
environment names: ``TRESEN_LIMITS__MAX_FRAME_BYTES=65536``.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tresen.core.policy import PolicySettings

__all__ = [
    "AttachmentLimits",
    "FileSettings",
    "Limits",
    "MetricsSettings",
    "RetentionSettings",
    "S3Settings",
    "Settings",
    "TransparencySettings",
    "is_loopback",
    "load_from",
    "load_settings",
]

DAY_S = 24 * 3600
MIB = 1_048_576
GIB = 1024 * MIB


class S3Settings(BaseModel):
    """An S3-compatible bucket for the blobs of encrypted attachments
    (``attachments.storage = "s3"``). Without keys, the usual AWS sources are used (the
    ``AWS_*`` environment variables, a shared credentials file, an instance profile)."""

    endpoint_url: str | None = Field(
        default=None,
        examples=["https://s3.eu-central-1.amazonaws.com", "http://127.0.0.1:9000"],
        description="the S3 API's base URL; default: AWS for the region",
    )
    bucket: str = Field(default="", description="an existing bucket; the relay never creates one")
    region: str = "us-east-1"
    prefix: str = Field(
        default="attachments/",
        pattern=r"^[A-Za-z0-9!_.*'()/-]{0,200}$",
        description="what every key starts with, before the blob's id",
    )
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    path_style: bool = Field(
        default=False,
        description="bucket in the path (http://host/bucket/key), as most self-hosted "
        "S3-compatible servers need; else in the host name",
    )
    # A part is what one upload in progress buffers (on disk beyond a small part in memory)
    # before sending it. S3 wants at least 5 MiB for every part but the last.
    part_bytes: int = Field(default=8 * MIB, ge=5 * MIB, le=512 * MIB)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> S3Settings:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key, or neither")
        return self


class AttachmentLimits(BaseModel):
    """The blob store of encrypted attachments (``/v1/attachments``): sizes per kind, what
    one device may hold, and how long blobs live. Sizes count ciphertext bytes."""

    max_media_bytes: int = Field(default=16 * MIB, ge=1, description="images, audio, video")
    max_document_bytes: int = Field(default=100 * MIB, ge=1)
    # A customer's device: a family's photos and voice notes for a month.
    quota_bytes: int = Field(
        default=2 * GIB, ge=1, description="stored plus reserved bytes per customer device"
    )
    max_unfinished: int = Field(default=32, ge=1, description="unfinished uploads per device")
    creations_per_minute: int = Field(default=60, ge=1, description="new uploads per device")
    # A business's device sends documents to every customer (an airline's boarding passes:
    # 10,000+ PDFs of ~50 KB within minutes), so its limits are those of a mass sender.
    business_quota_bytes: int = Field(default=50 * GIB, ge=1)
    business_max_unfinished: int = Field(default=20_000, ge=1)
    business_creations_per_minute: int = Field(default=120_000, ge=1)
    upload_ttl_s: int = Field(
        default=DAY_S, ge=60, description="an unfinished upload expires this long after creation"
    )
    ttl_s: int = Field(
        default=30 * DAY_S, ge=60, description="a complete blob expires this long after completion"
    )
    sweep_interval_s: float = Field(
        default=600.0, gt=0, description="delete expired blobs (files and rows) this often"
    )
    storage: Literal["filesystem", "s3"] = Field(
        default="filesystem",
        description="where blobs are kept: files under the data folder, or an S3-compatible "
        "bucket (attachments.s3)",
    )
    s3: S3Settings = Field(default_factory=S3Settings)

    @model_validator(mode="after")
    def _s3_has_a_bucket(self) -> AttachmentLimits:
        if self.storage == "s3" and not self.s3.bucket:
            raise ValueError("attachments.storage is s3: set attachments.s3.bucket")
        return self


class Limits(BaseModel):
    """Every size, count and rate the relay enforces."""

    max_frame_bytes: int = Field(default=1_048_576, ge=1024)
    max_ciphertext_bytes: int = Field(default=65_536, ge=256)
    max_devices_per_account: int = Field(default=8, ge=1)
    max_queue_per_device: int = Field(default=10_000, ge=1)
    send_rate_per_device: float = Field(default=200.0, gt=0, description="sends per second")
    send_burst_per_device: int = Field(default=400, ge=1)
    max_acks_per_frame: int = Field(default=1024, ge=1)
    max_resends_per_message: int = Field(
        default=5,
        ge=0,
        description="times the sender may encrypt one message again for a device of its "
        "recipient that could not decrypt it (0: never)",
    )
    max_receipt_ids_per_frame: int = Field(default=256, ge=1)
    max_fetch_batch: int = Field(default=500, ge=1)
    inflight_per_connection: int = Field(default=512, ge=1)
    pipeline_per_connection: int = Field(default=64, ge=1, description="unanswered frames")
    delivery_poll_s: float = Field(
        default=5.0, gt=0, description="re-read a mailbox at least this often"
    )
    write_batch: int = Field(default=256, ge=1, description="operations per transaction")
    envelope_ttl_s: int = Field(default=30 * DAY_S, ge=60)
    purge_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="delete expired entries (and report undelivered messages failed) this often",
    )
    max_one_time_keys: int = Field(default=50, ge=1, le=50)
    one_time_keys_low: int = Field(default=10, ge=0)
    code_ttl_s: int = Field(default=600, ge=10)
    code_max_attempts: int = Field(default=5, ge=1)
    code_requests_per_number: int = Field(default=5, ge=1)
    code_requests_per_address: int = Field(default=20, ge=1)
    code_request_window_s: int = Field(default=3600, ge=1)
    lookups_per_hour: int = Field(
        default=3600, ge=1, description="phone/account lookups per account (all its devices)"
    )
    lookup_burst: int = Field(default=200, ge=1)
    exports_per_hour: int = Field(
        default=4, ge=1, description="copies of its data an account may ask for per hour"
    )
    export_rows: int = Field(
        default=1000, ge=1, le=100_000, description="rows per section of an account's export"
    )
    # Registration against abuse: code requests and wrong codes are counted per (number,
    # source) and per source, never per number alone, so nobody can lock a number's owner out.
    # code_requests_per_number and code_max_attempts above count per (number, source).
    code_request_backoff_s: int = Field(
        default=30,
        ge=0,
        description="wait after a number's first code request from a source, doubling with "
        "each further request in the window (0: no back-off)",
    )
    code_request_backoff_max_s: int = Field(default=900, ge=0)
    code_attempts_per_address: int = Field(
        default=30, ge=1, description="wrong codes from one source per code_request_window_s"
    )
    # What a slow or non-reading client may make the relay hold for it. Mailbox entries wait
    # for room (at most half the bytes, and the delivery window of inflight_per_connection
    # frames); the rest is for answers, of which at most pipeline_per_connection are pending
    # at a time, each a few hundred bytes. A reading client never comes near either bound.
    max_outbox_frames: int = Field(
        default=2048, ge=16, description="frames waiting to be written to one WebSocket"
    )
    max_outbox_bytes: int = Field(
        default=4 * 1_048_576,
        ge=65_536,
        description="bytes waiting to be written to one WebSocket; beyond: close 4008",
    )
    body_read_timeout_s: float = Field(
        default=30.0, gt=0, description="time to receive an HTTP request body; beyond: 408"
    )
    head_read_timeout_s: float = Field(
        default=10.0, gt=0, description="time to receive an HTTP request head; beyond: 408"
    )
    max_head_bytes: int = Field(
        default=16 * 1024, ge=1024, description="size of an HTTP request head; beyond: 431"
    )


class RetentionSettings(BaseModel):
    """How long the relay keeps metadata it no longer needs (docs/privacy.md), and the task
    that deletes it. Each period is the shortest that still lets its rule work; the rules'
    own periods (``policy.window_hours``, ``policy.quality_days``, the throttle's window)
    need no setting here."""

    interval_s: float = Field(
        default=600.0, gt=0, le=DAY_S, description="run the retention task this often"
    )
    chunk_rows: int = Field(
        default=1000, ge=10, le=100_000, description="rows one retention transaction deletes"
    )
    dedupe_window_s: int = Field(
        default=DAY_S,
        ge=60,
        le=30 * DAY_S,
        description="a received message's record (the answer to a retried send with the "
        "same client_msg_id, the route of its read receipt) is kept this long after the "
        "relay accepted it",
    )
    business_message_days: int = Field(
        default=7,
        ge=1,
        le=90,
        description="a received message between a business and a customer is kept this "
        "long after it was accepted: a customer's report may name it",
    )
    quality_detail_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="a block's or report's customer, message and written detail are erased "
        "this long after it was made (never before policy.quality_days); its kind, reason "
        "and day stay as the business's history",
    )
    consent_evidence_days: int = Field(
        default=3 * 365,
        ge=30,
        le=3650,
        description="an ended consent's statements and history are kept this long after it "
        "ended, as evidence for the business and for the customer",
    )
    ledger_dispute_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="a month's charges keep their line items this long after the month's "
        "statement is final; then only its totals remain",
    )


class ClusterSettings(BaseModel):
    """Several relay nodes on one PostgreSQL database tell each other what they must know
    over NATS (docs/operations.md, "Several relay nodes")."""

    nats_url: str | None = Field(
        default=None,
        examples=["nats://127.0.0.1:4222"],
        description="NATS server of the nodes; unset: this relay is the only node",
    )
    subject: str = Field(
        default="tresen",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="subject prefix shared by the nodes of one platform",
    )
    node_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="this node's name in the logs (default: random)",
    )


class MetricsSettings(BaseModel):
    """Prometheus metrics at ``/metrics`` (docs/operations.md, "Metrics"). They reveal how
    busy the platform is, so who may read them is a choice: a bearer token, or a listener of
    their own on an address only the scraper reaches. Without either, ``/metrics`` answers
    only on a server bound to a loopback address, and only requests that did not come
    through a reverse proxy."""

    enabled: bool = True
    token: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="scrapers send it as `Authorization: Bearer <token>`",
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="serve the metrics on this port of `metrics.host` instead of the API's "
        "port (which then has no /metrics)",
    )
    host: str = Field(default="127.0.0.1", description="address of the metrics port")
    sample_s: float = Field(
        default=15.0,
        ge=0.05,
        description="how often gauges that need a database query (queue depths, backlogs) "
        "are sampled; a scrape never queries the database",
    )


def is_loopback(host: str) -> bool:
    """True for an address (or ``localhost``) that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TransparencySettings(BaseModel):
    """Key transparency (docs/architecture.md, "Key transparency"): how often the relay
    publishes a signed epoch of its key log."""

    enabled: bool = Field(
        default=True, description="keep the log, publish epochs and answer with proofs"
    )
    interval_s: float = Field(
        default=10.0, gt=0, description="publish an epoch this often when changes wait"
    )
    max_pending: int = Field(
        default=10_000, ge=1, description="publish at once when this many changes wait"
    )
    max_batch: int = Field(
        default=100_000, ge=1, description="changes in one epoch at most (more: several)"
    )
    min_interval_s: float = Field(
        default=0.2,
        ge=0,
        description="a look-up of an account with unpublished changes publishes an epoch, "
        "but not sooner than this after the previous one",
    )
    heartbeat_s: float = Field(
        default=3600.0, gt=0, description="publish an epoch this often even without changes"
    )
    max_epochs_per_page: int = Field(default=1000, ge=1, le=10_000)


class FileSettings(BaseSettings):
    """Settings read from keyword arguments, the environment, then a TOML file named by
    :func:`load_from` or by the environment variable ``config_env``."""

    config_env: ClassVar[str] = "TRESEN_CONFIG"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get("path") or os.environ.get(cls.config_env)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


class Settings(FileSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRESEN_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Path("tresen-data")
    database_url: str | None = None
    database_schema: str | None = Field(
        default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="PostgreSQL schema"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"
    sms_sender: Literal["console", "file"] = "console"
    sms_file: Path | None = None
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    webapp_dir: Path | None = Field(
        default=None,
        description="the built customer web app that the relay serves at /app/ (default: the "
        "one `make web` builds into the relay's package)",
    )
    limits: Limits = Field(default_factory=Limits)
    attachments: AttachmentLimits = Field(default_factory=AttachmentLimits)
    # Requests are attributed to the socket peer unless it is one of these reverse proxies
    # (IPs or CIDRs); only then do X-Forwarded-For / Forwarded name the client. Empty: off.
    trusted_proxies: list[str] = Field(default_factory=list, examples=[["10.0.0.0/8"]])
    policy: PolicySettings = Field(default_factory=PolicySettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    transparency: TransparencySettings = Field(default_factory=TransparencySettings)
    # The operator's certificate signing key is stored sealed with this 32-byte
    # key-encryption key (64 hex digits or base64); without it, with a key file.
    operator_key: SecretStr | None = None
    operator_key_file: Path | None = Field(
        default=None, description="default: operator.key in the data folder (mode 0600)"
    )
    certificate_lifetime_days: int = Field(default=365, ge=1, le=3650)
    certificate_renew_before_days: int = Field(
        default=30,
        ge=0,
        le=3650,
        description="re-issue a verified business's certificate when it expires within this "
        "many days (0: never); less than certificate_lifetime_days",
    )
    certificate_renew_interval_s: float = Field(
        default=3600.0, gt=0, description="how often the relay looks for certificates to renew"
    )
    revocations_max_age_s: int = Field(
        default=DAY_S, ge=60, description="how old a revocation list clients still accept"
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or CIDR: {entry!r}") from None
        return value

    @model_validator(mode="after")
    def _nodes_share_a_server_database(self) -> Settings:
        if self.cluster.nats_url and not self.resolved_database_url.startswith("postgresql"):
            raise ValueError(
                "several relay nodes (cluster.nats_url) share one PostgreSQL database; "
                "set database_url to it"
            )
        return self

    @model_validator(mode="after")
    def _renewal_inside_lifetime(self) -> Settings:
        # A window as long as the lifetime would find every new certificate due at once.
        if self.certificate_renew_before_days >= self.certificate_lifetime_days:
            raise ValueError(
                f"certificate_renew_before_days ({self.certificate_renew_before_days}) must "
                f"be less than certificate_lifetime_days ({self.certificate_lifetime_days}); "
                "0 turns renewal off"
            )
        return self

    @property
    def resolved_operator_key_file(self) -> Path:
        return self.operator_key_file or self.data_dir / "operator.key"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'relay.db').resolve()}"


_CONFIG_FILE: dict[str, str] = {}


S = TypeVar("S", bound=FileSettings)


def load_from(cls: type[S], config_file: Path | None = None, **overrides: Any) -> S:
    """``cls`` from the environment and ``config_file``, with ``overrides`` (those not
    ``None``) on top."""
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"configuration file not found: {config_file}")
    _CONFIG_FILE.clear()
    if config_file is not None:
        _CONFIG_FILE["path"] = str(config_file)
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        _CONFIG_FILE.clear()


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """The relay's settings from the environment and ``config_file``, with ``overrides``."""
    return load_from(Settings, config_file, **overrides)

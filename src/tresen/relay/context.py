"""The relay's composition root: one object that owns the database, clock and services."""

from __future__ import annotations

from dataclasses import dataclass, field

from tresen.core.clock import Clock, SystemClock
from tresen.core.db import Database
from tresen.core.settings import Settings, is_loopback
from tresen.relay.accounts.personal_data import PersonalDataService
from tresen.relay.accounts.service import AccountService
from tresen.relay.accounts.sms import ConsoleSmsSender, FileSmsSender, SmsSender
from tresen.relay.attachments.s3 import S3BlobStorage
from tresen.relay.attachments.service import AttachmentService
from tresen.relay.attachments.storage import BlobStorage, FileBlobStorage
from tresen.relay.billing.service import BillingService
from tresen.relay.businesses.service import BusinessService
from tresen.relay.cluster import Notice, cluster_of
from tresen.relay.consent.service import ConsentService
from tresen.relay.keys.service import KeyService
from tresen.relay.mailbox.hub import Hub
from tresen.relay.mailbox.service import MailboxService
from tresen.relay.metrics import RelayMetrics
from tresen.relay.operator.service import OperatorService
from tresen.relay.policy.service import PolicyService
from tresen.relay.retention.service import Retention
from tresen.relay.templates.service import TemplateService
from tresen.relay.transparency.service import TransparencyService
from tresen.relay.webapp.files import BUNDLED_DIST
from tresen.relay.webapp.service import WebApp
from tresen.wire.relay import KeysLow

__all__ = [
    "ConsoleSmsRefused",
    "RelayContext",
    "build_context",
    "default_blob_storage",
    "default_sms_sender",
]


@dataclass
class RelayContext:
    settings: Settings
    db: Database
    clock: Clock
    accounts: AccountService
    keys: KeyService
    mailbox: MailboxService
    operator: OperatorService
    businesses: BusinessService
    consent: ConsentService
    policy: PolicyService
    billing: BillingService
    templates: TemplateService
    attachments: AttachmentService
    personal_data: PersonalDataService
    webapp: WebApp
    retention: Retention
    transparency: TransparencyService
    hub: Hub = field(default_factory=Hub)
    metrics: RelayMetrics = field(default_factory=RelayMetrics)

    async def close(self) -> None:
        await self.retention.close()
        await self.hub.cluster.close()
        await self.attachments.close()
        await self.transparency.close()
        await self.templates.close()
        await self.operator.close()
        await self.mailbox.close()
        await self.db.dispose()


class ConsoleSmsRefused(ValueError):
    """The ``console`` SMS sender on a relay that others can reach."""


def default_sms_sender(settings: Settings) -> SmsSender:
    if settings.sms_sender == "file":
        return FileSmsSender(settings.sms_file or settings.data_dir / "sms.jsonl")
    if not is_loopback(settings.host):
        # It writes every phone number with its code to the log: for development only.
        raise ConsoleSmsRefused(
            f'sms_sender = "console" logs phone numbers and codes and is for development '
            f"on a loopback address; this relay listens on {settings.host}: set sms_sender "
            f'(TRESEN_SMS_SENDER) to "file" with sms_file, or listen on 127.0.0.1'
        )
    return ConsoleSmsSender()


def default_blob_storage(settings: Settings) -> BlobStorage:
    """The storage ``attachments.storage`` names; its client connects in ``start()``."""
    if settings.attachments.storage == "s3":
        return S3BlobStorage(settings.attachments.s3)
    return FileBlobStorage(settings.data_dir / "attachments")


def build_context(
    settings: Settings,
    *,
    clock: Clock | None = None,
    sms: SmsSender | None = None,
    db: Database | None = None,
    blobs: BlobStorage | None = None,
) -> RelayContext:
    clock = clock or SystemClock()
    db = db or Database(
        settings.resolved_database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        schema=settings.database_schema,
    )
    limits = settings.limits
    cluster = settings.cluster
    hub = Hub(cluster_of(cluster.nats_url, cluster.subject, cluster.node_id))
    metrics = RelayMetrics()
    metrics.watch_connections(lambda: hub.connected)
    metrics.watch_cluster(lambda: (hub.cluster.published, hub.cluster.dropped))
    # Collaborators are passed to the constructors, so a service cannot exist half-wired.

    def forget_everywhere(account_id: str) -> None:
        policy.forget(account_id)
        if hub.cluster.shared:
            hub.cluster.tell(Notice("forget", hub.cluster.node_id, text=account_id))

    policy = PolicyService(db, clock, settings.policy, changed=forget_everywhere)

    hub.cluster.listen(lambda n: policy.forget(n.text) if n.kind == "forget" else None)
    operator = OperatorService(db, clock, settings)
    businesses = BusinessService(
        db,
        clock,
        certificate_for=operator.certificate_json,
        on_became_business=forget_everywhere,
        on_back_to_pending=lambda conn, account_id, reason: operator.revoke_for_change(
            account_id, reason, conn=conn
        ),
    )
    keys = KeyService(
        db,
        clock,
        limits,
        on_keys_low=lambda pk, n: hub.push(
            pk, KeysLow(one_time_keys=n, max_one_time_keys=limits.max_one_time_keys)
        ),
        on_identity_keys_changed=lambda account_id: businesses.on_verified_identity_changed(
            account_id, "device keys changed"
        ),
    )
    accounts = AccountService(
        db,
        clock,
        limits,
        sms or default_sms_sender(settings),
        on_device_removed=lambda account_id: businesses.on_verified_identity_changed(
            account_id, "a device was removed"
        ),
    )
    blob_store = blobs or default_blob_storage(settings)
    return RelayContext(
        settings=settings,
        db=db,
        clock=clock,
        accounts=accounts,
        keys=keys,
        mailbox=MailboxService(db, clock, limits, hub, policy, metrics=metrics),
        operator=operator,
        businesses=businesses,
        consent=ConsentService(db, clock, settings.policy),
        policy=policy,
        billing=BillingService(db, clock, policy),
        templates=TemplateService(db, clock, settings, operator),
        attachments=AttachmentService(
            db,
            clock,
            settings.attachments,
            blob_store,
        ),
        personal_data=PersonalDataService(
            db,
            clock,
            limits,
            delete_blob=blob_store.delete,
            on_account_deleted=forget_everywhere,
        ),
        webapp=WebApp(settings.webapp_dir or BUNDLED_DIST),
        retention=Retention(db, clock, settings),
        transparency=TransparencyService(db, clock, settings.transparency, operator),
        hub=hub,
        metrics=metrics,
    )

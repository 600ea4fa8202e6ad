"""The rules of message templates: submission, the operator's review and signature, the
signed form clients check, and pausing or disabling templates that customers report.

States (``templates.status``): a business submits → PENDING → the operator APPROVES (the
relay signs the canonical template with the operator key) or REJECTS with a reason;
``policy.template_auto_approve`` approves at once (development). Low quality pauses an
APPROVED template for ``policy.template_pause_hours[k]`` (k = pauses so far; it is APPROVED
again when the pause ends), and once those pauses are used up, DISABLES it. A business may
delete its templates (DELETED): their signed form stays readable, so messages still on their
way render, and their name returns after ``limits.envelope_ttl_s``, when no such message can
be left. A REJECTED template's name can be submitted again at once.

Every operator decision and every automatic pause, resumption or disabling writes an
``admin_audit`` row in its transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.ids import AccountId
from tresen.core.logging import get_logger
from tresen.core.settings import Settings
from tresen.relay.audit import add_audit
from tresen.relay.businesses import repo as businesses_repo
from tresen.relay.operator import repo as operator_repo
from tresen.relay.operator.service import OperatorPrincipal, OperatorService
from tresen.relay.templates import repo
from tresen.relay.templates.repo import TemplateRecord, TemplateRow
from tresen.relay.templates.validation import InvalidTemplate, validate_submission
from tresen.wire.templates import (
    TEMPLATE_PREFIX,
    SignedTemplate,
    SignedTemplateBody,
    TemplateQuality,
    TemplateStatus,
    decode_signed_body,
)

__all__ = [
    "AUTO_APPROVER",
    "QualityChange",
    "TemplateService",
    "TemplateView",
    "quality_rating",
]

log = get_logger("tresen.relay.templates")

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
SYSTEM = "system"
AUTO_APPROVER = "auto-approve"
QUALITY_INTERVAL_S = 600.0


@dataclass(frozen=True, slots=True)
class TemplateView:
    """A template as someone sees it now: ``status`` counts a pause that ended as over."""

    record: TemplateRecord
    status: TemplateStatus

    @property
    def row(self) -> TemplateRow:
        return self.record.row


@dataclass(frozen=True, slots=True)
class QualityChange:
    """What one quality evaluation changed about one template."""

    template_id: int
    business_account: AccountId
    name: str
    language: str
    previous_status: TemplateStatus
    status: TemplateStatus
    previous_quality: TemplateQuality
    quality: TemplateQuality
    paused_until_ms: int | None


def quality_rating(negative: int, delivered: int, settings: Settings) -> TemplateQuality:
    """GREEN/YELLOW/RED from blocks and reports per delivered message; at least
    ``quality_min_delivered`` deliveries count, so a few early reports do not turn a new
    template red at once. No signal at all is UNKNOWN."""
    policy = settings.policy
    if negative == 0 and delivered == 0:
        return TemplateQuality.UNKNOWN
    ratio = negative / max(delivered, policy.quality_min_delivered)
    if ratio >= policy.quality_red_ratio:
        return TemplateQuality.RED
    if ratio >= policy.quality_yellow_ratio:
        return TemplateQuality.YELLOW
    return TemplateQuality.GREEN


def _invalid(error: InvalidTemplate) -> TresenError:
    return TresenError(
        ErrorCode.INVALID_PARAMETER,
        "invalid template",
        problems=[p.to_dict() for p in error.problems],
    )


def _not_found(template_id: int | str) -> TresenError:
    return TresenError(
        ErrorCode.TEMPLATE_NOT_FOUND, "no such template", template_id=str(template_id)
    )


class TemplateService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: Settings,
        operator: OperatorService,
        *,
        quality_interval_s: float = QUALITY_INTERVAL_S,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.operator = operator
        self.quality_interval_s = quality_interval_s
        self._judge: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Evaluate template quality every ``quality_interval_s`` until :meth:`close`."""
        if self._judge is None:
            self._judge = asyncio.create_task(self._judge_periodically())

    async def close(self) -> None:
        if self._judge is not None:
            self._judge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._judge
            self._judge = None

    async def _judge_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.quality_interval_s)
            try:
                await self.evaluate_quality()
            except Exception:
                log.exception("evaluating template quality failed")

    def _view(self, record: TemplateRecord, now_ms: int) -> TemplateView:
        return TemplateView(record, record.row.status_at(now_ms))

    # --- the business's own templates --------------------------------------------------------

    async def submit(self, account_id: AccountId, raw: Any) -> TemplateView:
        """Store a new template (PENDING, or APPROVED and signed with auto-approval).

        Raises INVALID_PARAMETER naming every problem, NOT_A_BUSINESS for an account
        without a business profile, TEMPLATE_EXISTS when the name and language are taken.
        """
        try:
            submission = validate_submission(raw)
        except InvalidTemplate as exc:
            raise _invalid(exc) from None
        now = self.clock.now_ms()
        reserved_ms = self.settings.limits.envelope_ttl_s * 1000
        auto = self.settings.policy.template_auto_approve
        try:
            async with self.db.write() as conn:
                # One account's submissions take turns (PostgreSQL row lock).
                if await businesses_repo.lock_account(conn, account_id) != "business":
                    raise TresenError(
                        ErrorCode.NOT_A_BUSINESS,
                        "only businesses have templates; save a business profile first",
                    )
                for existing in await repo.find_by_name(
                    conn, account_id, submission.name, submission.language
                ):
                    free_again = existing.status is TemplateStatus.REJECTED or (
                        existing.status is TemplateStatus.DELETED
                        and now >= existing.updated_ms + reserved_ms
                    )
                    if not free_again:
                        raise TresenError(
                            ErrorCode.TEMPLATE_EXISTS,
                            f"a template named {submission.name!r} in {submission.language} "
                            + (
                                "was deleted; its name is free again 30 days after deletion"
                                if existing.status is TemplateStatus.DELETED
                                else "exists already"
                            ),
                            template_id=str(existing.id),
                            status=existing.status.value,
                        )
                    await repo.delete_template_row(conn, existing.id)
                template_id = await repo.insert_template(
                    conn,
                    business_account=account_id,
                    name=submission.name,
                    language=submission.language,
                    category=submission.category,
                    parameter_format=submission.parameter_format,
                    components=submission.components,
                    now_ms=now,
                )
                if auto:
                    await self._approve(conn, template_id, AUTO_APPROVER, now)
                record = await repo.record_by_id(conn, template_id)
        except IntegrityError:
            # The same name was submitted at the same moment (the unique constraint).
            raise TresenError(
                ErrorCode.TEMPLATE_EXISTS,
                f"a template named {submission.name!r} in {submission.language} exists already",
            ) from None
        assert record is not None
        log.info(
            "template submitted",
            account_id=account_id,
            template_id=template_id,
            category=submission.category.value,
            status=record.row.status.value,
        )
        return self._view(record, now)

    async def own_templates(
        self,
        account_id: AccountId,
        *,
        status: TemplateStatus | None = None,
        name: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[TemplateView]:
        """The business's templates by id; DELETED ones only when asked for by status."""
        now = self.clock.now_ms()
        wanted = _stored_statuses(status)
        async with self.db.read() as conn:
            records = await repo.list_templates(
                conn,
                business_account=account_id,
                statuses=wanted,
                name=name,
                after_id=after_id,
                limit=limit,
            )
        views = [self._view(r, now) for r in records]
        return [v for v in views if status is None or v.status is status]

    async def own_template(self, account_id: AccountId, template_id: int) -> TemplateView:
        """One of the business's templates; another business's id is "not found"."""
        async with self.db.read() as conn:
            record = await repo.record_by_id(conn, template_id)
        if record is None or record.row.business_account != account_id:
            raise _not_found(template_id)
        return self._view(record, self.clock.now_ms())

    async def delete_own(
        self, account_id: AccountId, name: str, template_id: int | None = None
    ) -> list[int]:
        """Delete the business's templates of that name (all languages, or only the one
        with ``template_id``); returns the ids deleted."""
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            found = [
                r
                for r in await repo.find_by_name(conn, account_id, name)
                if r.status is not TemplateStatus.DELETED
                and (template_id is None or r.id == template_id)
            ]
            if not found:
                raise TresenError(
                    ErrorCode.TEMPLATE_NOT_FOUND, f"no template named {name!r}", name=name
                )
            ids = [r.id for r in found]
            await repo.mark_deleted(conn, ids, now)
        log.info("templates deleted", account_id=account_id, template_ids=ids)
        return ids

    # --- the signed form, for every client ---------------------------------------------------

    async def signed(self, template_id: int) -> SignedTemplate:
        """The operator-signed form of a template that was approved (also when it is paused,
        disabled or deleted since: messages sent before still render).

        A form signed by a key that is no longer the current one is signed again with the
        current key, so clients never depend on a key that rotation retires.
        """
        async with self.db.read() as conn:
            record = await repo.record_by_id(conn, template_id)
            current = await operator_repo.current_operator_key(conn)
        if record is None or record.signed_body is None or record.signature is None:
            raise _not_found(template_id)
        body = decode_signed_body(record.signed_body)
        if current is None or body.key_id == current.key_id:
            return SignedTemplate(template_id, record.signed_body, record.signature)
        async with self.db.write() as conn:
            record = await repo.record_by_id(conn, template_id, lock=True)
            assert record is not None
            assert record.signed_body is not None
            old = decode_signed_body(record.signed_body)
            new_body, key_id, signature = await self.operator.sign_document(
                TEMPLATE_PREFIX,
                lambda key_id: msgspec.msgpack.encode(msgspec.structs.replace(old, key_id=key_id)),
                conn=conn,
            )
            if key_id != old.key_id:
                await repo.set_signed(
                    conn,
                    template_id,
                    body=new_body,
                    signature=signature,
                    status=None,
                    now_ms=self.clock.now_ms(),
                )
                log.info("template signed again", template_id=template_id, key_id=key_id)
                return SignedTemplate(template_id, new_body, signature)
        assert record.signature is not None
        return SignedTemplate(template_id, record.signed_body, record.signature)

    # --- the operator ------------------------------------------------------------------------

    async def for_operator(
        self,
        *,
        status: TemplateStatus | None,
        business_account: AccountId | None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[TemplateView]:
        """Templates of every business (or one), oldest first; ``None`` for every status."""
        now = self.clock.now_ms()
        async with self.db.read() as conn:
            records = await repo.list_templates(
                conn,
                business_account=business_account,
                statuses=None if status is None else _stored_statuses(status),
                name=None,
                after_id=after_id,
                limit=limit,
            )
        views = [self._view(r, now) for r in records]
        return [v for v in views if status is None or v.status is status]

    async def template(self, template_id: int) -> TemplateView:
        async with self.db.read() as conn:
            record = await repo.record_by_id(conn, template_id)
        if record is None:
            raise _not_found(template_id)
        return self._view(record, self.clock.now_ms())

    async def approve(self, operator: OperatorPrincipal, template_id: int) -> TemplateView:
        """Approve a PENDING template: sign its canonical form with the operator key."""
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            await self._pending(conn, template_id)
            await self._approve(conn, template_id, operator.name, now)
            record = await repo.record_by_id(conn, template_id)
        assert record is not None
        log.info("template approved", template_id=template_id, operator=operator.name)
        return self._view(record, now)

    async def reject(
        self, operator: OperatorPrincipal, template_id: int, reason: str
    ) -> TemplateView:
        """Reject a PENDING template; the business reads ``reason`` and may submit again."""
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            row = await self._pending(conn, template_id)
            await repo.set_status(
                conn, template_id, TemplateStatus.REJECTED, now, rejected_reason=reason
            )
            await add_audit(
                conn,
                at_ms=now,
                operator=operator.name,
                action="reject_template",
                account_id=row.business_account,
                details={
                    "template_id": template_id,
                    "name": row.name,
                    "language": row.language,
                    "reason": reason,
                },
            )
            record = await repo.record_by_id(conn, template_id)
        assert record is not None
        log.info("template rejected", template_id=template_id, operator=operator.name)
        return self._view(record, now)

    @staticmethod
    async def _pending(conn: AsyncConnection, template_id: int) -> TemplateRow:
        record = await repo.record_by_id(conn, template_id, lock=True)
        if record is None:
            raise _not_found(template_id)
        if record.row.status is not TemplateStatus.PENDING:
            raise TresenError(
                ErrorCode.NO_PENDING_REQUEST,
                f"template {template_id} is not waiting for review (it is "
                f"{record.row.status.value})",
                template_id=str(template_id),
                status=record.row.status.value,
            )
        return record.row

    async def _approve(self, conn: AsyncConnection, template_id: int, by: str, now_ms: int) -> None:
        record = await repo.record_by_id(conn, template_id)
        assert record is not None
        row = record.row

        def body_for(key_id: str) -> bytes:
            return msgspec.msgpack.encode(
                SignedTemplateBody(
                    key_id=key_id,
                    id=row.id,
                    business_account=row.business_account,
                    name=row.name,
                    language=row.language,
                    category=row.category,
                    parameter_format=row.parameter_format,
                    components=record.components,
                    approved_ms=now_ms,
                )
            )

        body, key_id, signature = await self.operator.sign_document(
            TEMPLATE_PREFIX, body_for, conn=conn
        )
        await repo.set_signed(
            conn,
            template_id,
            body=body,
            signature=signature,
            status=TemplateStatus.APPROVED,
            now_ms=now_ms,
        )
        await add_audit(
            conn,
            at_ms=now_ms,
            operator=by,
            action="approve_template",
            account_id=row.business_account,
            details={
                "template_id": template_id,
                "name": row.name,
                "language": row.language,
                "category": row.category.value,
                "key_id": key_id,
            },
        )

    # --- quality -----------------------------------------------------------------------------

    async def evaluate_quality(
        self, business_account: AccountId | None = None
    ) -> list[QualityChange]:
        """Rate the approved and paused templates (of one business, or all) from the blocks
        and reports naming them against their deliveries over ``policy.quality_days``.

        A template rated RED on the signals since its last pause ended is paused for
        ``policy.template_pause_hours[k]`` (k = pauses so far), or disabled once the pauses
        are used up; a pause that has ended is written as APPROVED. Returns the changes.
        """
        now = self.clock.now_ms()
        since = now - self.settings.policy.quality_days * DAY_MS
        async with self.db.read() as conn:
            rows = await repo.templates_to_judge(conn, business_account)
            ids = [r.id for r in rows]
            negatives = await repo.negative_counts(conn, ids, since)
            delivered = await repo.delivered_since(conn, ids, since // DAY_MS)
        changes = []
        for row in rows:
            quality = quality_rating(
                negatives.get(row.id, 0), delivered.get(row.id, 0), self.settings
            )
            change = await self._judge_one(row, quality, since, now)
            if change is not None:
                changes.append(change)
        return changes

    async def _judge_one(
        self, seen: TemplateRow, quality: TemplateQuality, since: int, now: int
    ) -> QualityChange | None:
        pause_hours = self.settings.policy.template_pause_hours
        async with self.db.write() as conn:
            record = await repo.record_by_id(conn, seen.id, lock=True)
            if record is None or record.row != seen:
                return None  # changed meanwhile; the next evaluation sees it anew
            row = record.row
            status = row.status_at(now)
            pauses, paused_until = row.pauses, row.paused_until_ms
            actions: list[tuple[str, dict[str, Any]]] = []
            if status is not row.status:
                actions.append(("resume_template", {"paused_until_ms": paused_until}))
            if status is TemplateStatus.APPROVED and quality is TemplateQuality.RED:
                # Only what happened since the last pause ended can pause it again.
                start = max(since, paused_until or 0)
                recent = quality_rating(
                    (await repo.negative_counts(conn, [row.id], start)).get(row.id, 0),
                    (await repo.delivered_since(conn, [row.id], start // DAY_MS)).get(row.id, 0),
                    self.settings,
                )
                if recent is TemplateQuality.RED:
                    if pauses < len(pause_hours):
                        paused_until = now + int(pause_hours[pauses] * HOUR_MS)
                        pauses += 1
                        status = TemplateStatus.PAUSED
                        actions.append(
                            ("pause_template", {"paused_until_ms": paused_until, "pause": pauses})
                        )
                    else:
                        status = TemplateStatus.DISABLED
                        actions.append(("disable_template", {"pauses": pauses}))
            if (status, quality, pauses, paused_until) == (
                row.status,
                row.quality,
                row.pauses,
                row.paused_until_ms,
            ):
                return None
            await repo.set_quality_state(
                conn,
                row.id,
                status=status,
                quality=quality,
                pauses=pauses,
                paused_until_ms=paused_until,
                now_ms=now,
            )
            for action, details in actions:
                await add_audit(
                    conn,
                    at_ms=now,
                    operator=SYSTEM,
                    action=action,
                    account_id=row.business_account,
                    details={
                        "template_id": row.id,
                        "name": row.name,
                        "language": row.language,
                        "quality": quality.value,
                        **details,
                    },
                )
        if actions or quality is not row.quality:
            log.info(
                "template quality",
                template_id=row.id,
                quality=quality.value,
                status=status.value,
                paused_until_ms=paused_until,
            )
        return QualityChange(
            template_id=row.id,
            business_account=row.business_account,
            name=row.name,
            language=row.language,
            previous_status=row.status,
            status=status,
            previous_quality=row.quality,
            quality=quality,
            paused_until_ms=paused_until if status is TemplateStatus.PAUSED else None,
        )


def _stored_statuses(status: TemplateStatus | None) -> set[TemplateStatus]:
    """The stored statuses a template shown with ``status`` may have (a PAUSED row whose
    pause ended shows as APPROVED); without a status, every one but DELETED."""
    if status is None:
        return set(TemplateStatus) - {TemplateStatus.DELETED}
    if status is TemplateStatus.APPROVED:
        return {TemplateStatus.APPROVED, TemplateStatus.PAUSED}
    return {status}

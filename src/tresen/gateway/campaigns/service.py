"""Campaign actions: create, start, pause, resume, cancel, preview the cost, test-send,
and read the results. The inbox's JSON API and the CLI call these."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.gateway.campaigns.audience import AudienceSource, resolve_audience
from tresen.gateway.campaigns.cost import CostPreview, preview_cost, price_countries
from tresen.gateway.campaigns.model import (
    ACTIVE,
    CampaignDraft,
    CampaignId,
    CampaignState,
    CampaignSummary,
    Recipient,
    RecipientState,
)
from tresen.gateway.campaigns.pacing import due_times
from tresen.gateway.campaigns.parameters import MissingAttribute, fill_components
from tresen.gateway.campaigns.repo import CampaignRepo, NewRecipient, RecipientRow, unresolved
from tresen.gateway.campaigns.runner import CampaignRunner
from tresen.gateway.campaigns.sending import Accepted, CampaignSender
from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.problems import Problem

__all__ = ["CampaignProblem", "Campaigns", "Results"]

Templates = Callable[[], Awaitable[list[dict[str, Any]]]]
RateCard = Callable[[], Awaitable[list[dict[str, Any]]]]
AccountOf = Callable[[str], Awaitable[str]]
"""The account id of a phone number (raises ``GraphError`` 131026 when none)."""
PhoneOf = Callable[[str], Awaitable[str | None]]

LOOKUPS_AT_ONCE = 16
"""Recipients' numbers looked up at the relay side by side when a campaign starts."""


class CampaignProblem(Problem, ValueError):
    """A campaign that cannot be made or changed as asked (the code and message say why)."""


@dataclass(frozen=True, slots=True)
class Results:
    counts: dict[str, int]
    sent: int
    delivered: int
    read: int
    replied: int
    opted_out: int
    failed: int
    cost_micros: int
    """Of the delivered messages the relay priced billable, at the card's prices."""
    currency: str | None

    def rate(self, part: int) -> float:
        return part / self.sent if self.sent else 0.0


class Campaigns:
    def __init__(
        self,
        db: Database,
        repo: CampaignRepo,
        runner: CampaignRunner,
        sender: CampaignSender,
        clock: Clock,
        *,
        templates: Templates,
        rate_card: RateCard,
        account_of: AccountOf,
        phone_of: PhoneOf,
        lists: AudienceSource | None = None,
    ) -> None:
        self.db = db
        self.repo = repo
        self.runner = runner
        self.sender = sender
        self.clock = clock
        self.templates = templates
        self.rate_card = rate_card
        self.account_of = account_of
        self.phone_of = phone_of
        self.lists = lists

    async def create(self, draft: CampaignDraft) -> CampaignId:
        """A draft campaign of an approved template (its category taken from it)."""
        for template in await self.templates():
            if (
                template.get("name") == draft.template_name
                and template.get("language") == draft.language
            ):
                if str(template.get("status", "")).upper() != "APPROVED":
                    raise CampaignProblem(
                        "template_not_approved",
                        "template {template} ({language}) is not approved",
                        template=draft.template_name,
                        language=draft.language,
                    )
                category = str(template.get("category", "MARKETING")).upper()
                return await self.repo.create(draft, category, self.clock.now_ms())
        raise CampaignProblem(
            "no_template",
            "no template {template} in {language}",
            template=draft.template_name,
            language=draft.language,
        )

    async def get(self, campaign_id: CampaignId) -> CampaignSummary:
        found = await self.repo.get(campaign_id)
        if found is None:
            raise CampaignProblem("no_campaign", "no campaign {campaign}", campaign=campaign_id)
        return found

    async def all(self) -> list[CampaignSummary]:
        return await self.repo.find()

    async def recipients(
        self, campaign_id: CampaignId, state: RecipientState | None = None
    ) -> list[RecipientRow]:
        return await self.repo.recipients(campaign_id, state)

    async def audience(self, campaign_id: CampaignId) -> list[Recipient]:
        campaign = await self.get(campaign_id)
        return await resolve_audience(campaign.audience, db=self.db, lists=self.lists)

    async def start(self, campaign_id: CampaignId) -> CampaignSummary:
        """Materialise the recipients (each with their parameters filled in, or failed with
        the reason) and hand the campaign to the runner."""
        campaign = await self.get(campaign_id)
        if campaign.state is not CampaignState.DRAFT:
            raise CampaignProblem(
                "not_a_draft",
                "campaign {campaign} is {state}, not a draft",
                campaign=campaign_id,
                state=str(campaign.state),
            )
        rows: dict[str, NewRecipient] = {}
        audience = await self.audience(campaign_id)
        # Numbers without an account are looked up at the relay: several at a time.
        for at in range(0, len(audience), LOOKUPS_AT_ONCE):
            chunk = audience[at : at + LOOKUPS_AT_ONCE]
            for row in await asyncio.gather(*(self._materialise(campaign, r) for r in chunk)):
                if row is not None and row.account_id not in rows:
                    rows[row.account_id] = row
        now = self.clock.now_ms()
        start_ms = max(now, campaign.schedule.start_ms or now)
        recipients = list(rows.values())
        due = due_times(start_ms, len(recipients), campaign.schedule.spread_s)
        state = CampaignState.SCHEDULED if start_ms > now else CampaignState.RUNNING
        if not await self.repo.start(campaign_id, start_ms, recipients, due, now, state=state):
            raise CampaignProblem(
                "started_already", "campaign {campaign} was started already", campaign=campaign_id
            )
        self.runner.wake()
        return await self.get(campaign_id)

    async def _materialise(
        self, campaign: CampaignSummary, recipient: Recipient
    ) -> NewRecipient | None:
        phone = recipient.phone
        account_id = recipient.account_id
        try:
            if account_id is None:
                assert phone is not None
                account_id = await self.account_of(phone)
            elif phone is None:
                phone = await self.phone_of(account_id)
        except GraphError as exc:
            if exc.code != 130429 or phone is None:
                return None  # not on this network: nobody to count
            # The relay's budget of look-ups is spent for now: the runner looks the number
            # up when its turn comes (a row keyed by the number until then).
            account_id = unresolved(phone)
        if phone is None:
            return None
        values = {"name": recipient.name or "", "phone": phone, **recipient.attributes}
        try:
            parameters = fill_components(campaign.components, values)
        except MissingAttribute as exc:
            return NewRecipient(
                account_id,
                phone,
                [],
                state=RecipientState.FAILED,
                reason=f"The recipient has no {exc.attribute}",
            )
        return NewRecipient(account_id, phone, parameters)

    async def pause(self, campaign_id: CampaignId) -> CampaignSummary:
        return await self._change(campaign_id, CampaignState.PAUSED, list(ACTIVE))

    async def resume(self, campaign_id: CampaignId) -> CampaignSummary:
        return await self._change(campaign_id, CampaignState.RUNNING, [CampaignState.PAUSED])

    async def cancel(self, campaign_id: CampaignId) -> CampaignSummary:
        return await self._change(
            campaign_id,
            CampaignState.CANCELLED,
            [CampaignState.DRAFT, CampaignState.PAUSED, *ACTIVE],
        )

    async def _change(
        self, campaign_id: CampaignId, to: CampaignState, only_from: list[CampaignState]
    ) -> CampaignSummary:
        if not await self.repo.change_state(
            campaign_id, to, self.clock.now_ms(), only_from=only_from
        ):
            campaign = await self.get(campaign_id)
            raise CampaignProblem(
                "wrong_state",
                "campaign {campaign} is {state}; cannot be {wanted}",
                campaign=campaign_id,
                state=str(campaign.state),
                wanted=str(to),
            )
        self.runner.wake()
        return await self.get(campaign_id)

    async def preview_cost(self, campaign_id: CampaignId) -> CostPreview:
        """What the campaign would cost if every message were delivered, at the business's
        rate card, by the template's category and each recipient's country."""
        campaign = await self.get(campaign_id)
        if campaign.state is CampaignState.DRAFT:
            phones = [r.phone for r in await self.audience(campaign_id)]
        else:
            phones = [
                r.phone
                for r in await self.repo.recipients(campaign_id)
                if r.state not in (RecipientState.FAILED, RecipientState.OPTED_OUT)
            ]
        return preview_cost(await self.rate_card(), campaign.category, phones)

    async def test_send(self, campaign_id: CampaignId, phone: str) -> Accepted:
        """The campaign's template to ``phone`` (e.g. the business's own test phone), with
        the parameters of a recipient without attributes."""
        campaign = await self.get(campaign_id)
        values = {"name": "", "phone": phone}
        try:
            components = fill_components(campaign.components, values)
        except MissingAttribute as exc:
            raise CampaignProblem(
                "test_needs_value",
                "a test send needs a value for {{{{{attribute}}}}}: send to a recipient",
                attribute=exc.attribute,
            ) from None
        return await self.sender.send_template(
            phone, campaign.template_name, campaign.language, components, client_msg_id=None
        )

    async def results(self, campaign_id: CampaignId) -> Results:
        campaign = await self.get(campaign_id)
        if campaign.figures is not None:
            return await self._kept_results(campaign.category, campaign.counts, campaign.figures)
        rows = await self.repo.recipients(campaign_id)
        sent = [r for r in rows if r.sent_ms is not None]
        rates = await self.rate_card()
        priced = [
            r.phone
            for r in sent
            if r.delivered_ms is not None and (r.pricing or {}).get("billable")
        ]
        cost = preview_cost(rates, campaign.category, priced)
        return Results(
            counts=campaign.counts,
            sent=len(sent),
            delivered=sum(1 for r in sent if r.delivered_ms is not None),
            read=sum(1 for r in sent if r.read_ms is not None),
            replied=sum(1 for r in sent if r.replied_ms is not None),
            opted_out=campaign.counts.get(str(RecipientState.OPTED_OUT), 0),
            failed=campaign.counts.get(str(RecipientState.FAILED), 0),
            cost_micros=cost.total_micros,
            currency=cost.currency,
        )

    async def _kept_results(
        self, category: str, counts: dict[str, int], figures: dict[str, Any]
    ) -> Results:
        """The results of a campaign whose recipients retention reduced to its figures."""
        billable: dict[str, int] = figures.get("billable", {})
        countries = [country for country, n in billable.items() for _ in range(int(n))]
        cost = price_countries(await self.rate_card(), category, countries)
        return Results(
            counts=counts,
            sent=int(figures["sent"]),
            delivered=int(figures["delivered"]),
            read=int(figures["read"]),
            replied=int(figures["replied"]),
            opted_out=counts.get(str(RecipientState.OPTED_OUT), 0),
            failed=counts.get(str(RecipientState.FAILED), 0),
            cost_micros=cost.total_micros,
            currency=cost.currency,
        )

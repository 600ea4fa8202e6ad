"""Campaigns: a template sent to an audience at the pace the relay's rules allow, exactly
once per recipient across crashes."""

from tresen.gateway.campaigns.audience import AudienceSource, CsvProblem, recipients_from_csv
from tresen.gateway.campaigns.cost import CostPreview
from tresen.gateway.campaigns.model import (
    AudienceSpec,
    CampaignDraft,
    CampaignId,
    CampaignState,
    CampaignSummary,
    Condition,
    Recipient,
    RecipientState,
    Schedule,
)
from tresen.gateway.campaigns.repo import CampaignRepo, RecipientRow
from tresen.gateway.campaigns.runner import CampaignRunner
from tresen.gateway.campaigns.sending import GatewaySender
from tresen.gateway.campaigns.service import CampaignProblem, Campaigns, Results
from tresen.gateway.campaigns.tracking import Tracking

__all__ = [
    "AudienceSource",
    "AudienceSpec",
    "CampaignDraft",
    "CampaignId",
    "CampaignProblem",
    "CampaignRepo",
    "CampaignRunner",
    "CampaignState",
    "CampaignSummary",
    "Campaigns",
    "Condition",
    "CostPreview",
    "CsvProblem",
    "GatewaySender",
    "Recipient",
    "RecipientRow",
    "RecipientState",
    "Results",
    "Schedule",
    "Tracking",
    "recipients_from_csv",
]

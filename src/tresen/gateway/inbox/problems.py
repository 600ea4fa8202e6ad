"""The refusals of the gateway's domains (campaigns, subscriber lists) as the inbox's pages
say them: in the agent's language, through the catalogue, where the JSON API says them in
English beside their code."""

from __future__ import annotations

from tresen.gateway.inbox.i18n import Refused
from tresen.gateway.problems import Problem

__all__ = ["refusal"]


def refusal(problem: Problem) -> Refused:
    """``problem`` as a refusal of the page, translated where it is shown."""
    return Refused(problem.text, **problem.values)

"""Subscriber lists: double opt-in by keyword, link and QR code, STOP and the consent
dashboard kept in step, CSV import with a report, and segments for campaigns.

The inbox's pages, the JSON API and the CLI call these; the campaign engine asks
:meth:`Segments.recipients` for an audience and :meth:`SubscriberLists.still_subscribed`
before each message.
"""

from __future__ import annotations

from tresen.gateway.subscribers.importing import (
    ImportRefused,
    ImportReport,
    ImportRow,
    SubscriberImport,
)
from tresen.gateway.subscribers.keywords import KeywordOptIn, subscribe_request
from tresen.gateway.subscribers.links import deep_link, qr_png, qr_svg
from tresen.gateway.subscribers.lists import SubscriberLists
from tresen.gateway.subscribers.model import (
    ListInvalid,
    ListNotFound,
    ListSpec,
    Purpose,
    Source,
    State,
    Subscriber,
    SubscriberList,
)
from tresen.gateway.subscribers.segments import (
    Audience,
    AudienceInvalid,
    Recipient,
    Segments,
    parse_audience,
)
from tresen.gateway.subscribers.service import Subscribers, build_subscribers

__all__ = [
    "Audience",
    "AudienceInvalid",
    "ImportRefused",
    "ImportReport",
    "ImportRow",
    "KeywordOptIn",
    "ListInvalid",
    "ListNotFound",
    "ListSpec",
    "Purpose",
    "Recipient",
    "Segments",
    "Source",
    "State",
    "Subscriber",
    "SubscriberImport",
    "SubscriberList",
    "SubscriberLists",
    "Subscribers",
    "build_subscribers",
    "deep_link",
    "parse_audience",
    "qr_png",
    "qr_svg",
    "subscribe_request",
]

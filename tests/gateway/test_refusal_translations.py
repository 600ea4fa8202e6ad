"""Every refusal of the campaign and subscriber list services, and every reason of an import's
row, has a stable code and a German translation for the inbox's pages; the English stays the
text the JSON API answers with."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

import tresen.gateway.campaigns as campaigns_package
import tresen.gateway.subscribers as subscribers_package
from tresen.gateway.campaigns import CampaignProblem, CsvProblem, recipients_from_csv
from tresen.gateway.inbox.i18n import catalogue, translator
from tresen.gateway.inbox.problems import refusal
from tresen.gateway.problems import Reason
from tresen.gateway.subscribers import AudienceInvalid, ListInvalid, ListSpec, Purpose
from tresen.gateway.subscribers.model import check_spec

# Where each kind of refusal has its English text among its arguments.
TEXT_AT = {
    "CampaignProblem": (2,),
    "CsvProblem": (2,),
    "AudienceInvalid": (2,),
    "ImportRefused": (2,),
    "ListInvalid": (3,),
    "Reason": (2,),
    "refused": (2,),
    "__init__": (2,),
}


def domain_texts() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in (campaigns_package, subscribers_package):
        folder = Path(package.__file__).parent
        for filename, _line, message, _comments, _context in extract_from_dir(
            str(folder), [("**.py", "python")], keywords=TEXT_AT
        ):
            if isinstance(message, str) and message:
                found.setdefault(message, f"{folder.name}/{filename}")
    return found


def test_every_refusal_of_the_services_has_a_german_translation() -> None:
    translated = {m.id: m.string for m in catalogue("de") if m.id and m.string}
    wanted = domain_texts()
    assert "not a phone number (write it like +4915112345678)" in wanted
    assert "no campaign {campaign}" in wanted
    assert "a list's name is 1 to {most} characters" in wanted
    missing = {text: where for text, where in wanted.items() if text not in translated}
    lines = "".join(f'\n#: {where}\nmsgid "{text}"\nmsgstr ""\n' for text, where in missing.items())
    assert not missing, f"add to locale/de/campaigns.po:{lines}"

    def holes(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    assert all(holes(text) == holes(translated[text]) for text in wanted)


def test_a_refusal_has_a_code_english_for_the_api_and_german_for_a_page() -> None:
    with pytest.raises(ListInvalid) as keyword:
        check_spec(ListSpec(name="News", purpose=Purpose.MARKETING, keyword="STOP"))
    assert (keyword.value.field, keyword.value.code) == ("keyword", "keyword_reserved")
    assert str(keyword.value) == "STOP already means something to every customer's app"
    german = refusal(keyword.value).sentence(translator("de"))
    assert german == "STOP bedeutet in der App jedes Kunden schon etwas."
    with pytest.raises(CsvProblem) as csv:
        recipients_from_csv("phone,name\n,Ana\n")
    assert csv.value.code == "csv_no_recipient"
    assert csv.value.values == {"line": 2}
    assert csv.value.reason.said(translator("de")) == (
        "Zeile 2: weder eine Telefonnummer noch eine Konto-ID"
    )
    problem = CampaignProblem("no_campaign", "no campaign {campaign}", campaign=7)
    assert str(problem) == "no campaign 7"
    assert refusal(problem).sentence(translator("en")) == "No campaign 7."
    assert isinstance(AudienceInvalid("audience_list", "x"), ValueError)


def test_a_reason_kept_in_the_database_reads_back_the_same() -> None:
    why = Reason("duplicate", "duplicate row (the same number as row {row})", {"row": 3})
    again = Reason.from_json(why.to_json())
    assert again == why
    assert str(again) == "duplicate row (the same number as row 3)"
    assert again.said(translator("de")) != str(again)

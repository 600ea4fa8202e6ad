"""The customer-facing texts both front ends show: status marks, message lines, business
profiles with their closed days, directory hits, errors. Pure functions: no relay, no
terminal."""

from __future__ import annotations

from datetime import date

import httpx
import pytest

from tresen.client.api import RelayError
from tresen.client.business import Business, BusinessProfile, BusinessSummary, Tick, TickState
from tresen.client.presentation import (
    APP_HINTS,
    WAITING_TEXT,
    LineKind,
    category_name,
    chat_lines,
    cli_hints,
    directory_line,
    error_text,
    message_line,
    profile_lines,
    relay_error_text,
    status_mark,
    time_text,
    transcript_line,
)
from tresen.client.store import MessageStatus, StoredMessage
from tresen.core.errors import ErrorCode
from tresen.wire.e2e import (
    Button,
    Interactive,
    InteractiveKind,
    Media,
    MediaKind,
    Reaction,
    Template,
    Text,
    encode_payload,
)

NOW = 1_767_225_600_000 + 9 * 3_600_000  # Thursday 2026-01-01, 10:00 in Berlin


def stored(
    message_id: str,
    text: str | None,
    status: MessageStatus,
    *,
    outgoing: bool = False,
    error: str | None = None,
    at_ms: int = NOW,
) -> StoredMessage:
    payload = None if text is None else encode_payload(Text(text=text))
    return StoredMessage(
        message_id, "chat", outgoing, "me" if outgoing else "them", 1, None, payload, status,
        at_ms, error,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "shown", "highlight", "problem"),
    [
        (MessageStatus.PENDING, "⏱ waiting for the network", False, False),
        (MessageStatus.SENT, "✓", False, False),
        (
            MessageStatus.WAITING,
            "⌛ resending — the recipient's device could not read it yet",
            False,
            False,
        ),
        (MessageStatus.DELIVERED, "✓✓", False, False),
        (MessageStatus.READ, "✓✓", True, False),
        (MessageStatus.FAILED, "✗ not delivered: expired before delivery", False, True),
    ],
)
def test_every_status_of_a_sent_message_has_its_mark(
    status: MessageStatus, shown: str, highlight: bool, problem: bool
) -> None:
    mark = status_mark(status, "expired before delivery")
    assert (str(mark), mark.highlight, mark.problem) == (shown, highlight, problem)
    line = message_line(
        stored("m1", "Hallo", status, outgoing=True, error="expired before delivery"), "Bob"
    )
    assert (line.kind, line.text, line.ticks) == (LineKind.MESSAGE, "Hallo", shown)


def test_a_failed_message_without_a_reason_still_says_so() -> None:
    assert str(status_mark(MessageStatus.FAILED)) == "✗ not delivered"


def test_received_messages_have_no_mark_and_a_waiting_one_no_text() -> None:
    seen = message_line(stored("m1", "Hallo", MessageStatus.SEEN), "Bob")
    assert (seen.text, seen.ticks) == ("Hallo", "")
    # This device could not decrypt it and asked for it again: no text yet, whatever it held.
    waiting = message_line(stored("m2", None, MessageStatus.WAITING), "Bob")
    assert (waiting.kind, waiting.text, waiting.ticks) == (LineKind.WAITING, WAITING_TEXT, "")
    assert WAITING_TEXT == "Waiting for this message. This may take a while."
    failed = message_line(stored("m3", None, MessageStatus.FAILED, error="bad mac"), "Bob")
    assert (failed.kind, failed.text) == (
        LineKind.FAILED,
        "⚠ A message from Bob could not be decrypted (bad mac).",
    )


def test_a_reaction_names_the_message_it_is_about() -> None:
    first = stored("m1", "Shall we meet at 8?", MessageStatus.SEEN)
    reaction = StoredMessage(
        "m2", "chat", False, "them", 1, None, encode_payload(Reaction(message_id="m1", emoji="👍")),
        MessageStatus.SEEN, NOW, None,
    )  # fmt: skip
    lines = chat_lines([first, reaction], "Bob", {})
    assert lines[1].text == "reacted 👍 to “Shall we meet at 8?”"


def test_transcript_lines_are_how_the_commands_print_a_chat() -> None:
    [theirs, mine] = chat_lines(
        [
            stored("m1", "Hallo\nwie geht's?", MessageStatus.SEEN),
            stored("m2", "Gut!", MessageStatus.PENDING, outgoing=True, at_ms=NOW + 5_000),
        ],
        "Alice",
        {},
    )
    at = time_text(NOW, NOW, seconds=True)
    assert transcript_line(theirs, "Alice", NOW) == f"{at} Alice → Hallo / wie geht's?"
    later = time_text(NOW + 5_000, NOW, seconds=True)
    assert (
        transcript_line(mine, "Alice", NOW)
        == f"{later} you → Alice Gut!  ⏱ waiting for the network"
    )


def test_times_show_the_day_only_when_it_is_not_today() -> None:
    assert len(time_text(NOW, NOW)) == len("10:00")
    assert len(time_text(NOW - 2 * 86_400_000, NOW)) == len("30.12. 10:00")


PROFILE = {
    "account_id": "acc-air",
    "display_name": "Tresen Air",
    "about": "Flights across Europe",
    "category": "TRAVEL",
    "timezone": "Europe/Berlin",
    "hours": {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
    "closed_dates": ["2025-12-24", "2026-01-06", "2026-01-01", "2026-04-03"],
    "certificate": None,
}


def test_the_profile_shows_closed_days_and_category_names() -> None:
    business = Business(
        BusinessProfile.from_json(PROFILE), "+4930555010000", Tick(TickState.VERIFIED), NOW
    )
    lines = profile_lines(business, NOW)
    assert lines[:3] == [
        "Tresen Air ✓ verified by the operator",
        "Flights across Europe",
        "Category: Travel and transportation",
    ]
    # Today (a holiday) and the coming closed days, in order; not those gone by.
    assert lines[-1] == "Closed on: Thu 01 Jan 2026, Tue 06 Jan 2026, Fri 03 Apr 2026"
    assert "Closed for the next days" not in lines
    assert lines[lines.index("Opening hours (Europe/Berlin):") + 1] == "Mon  09:00-17:00"
    assert "Account: acc-air" not in lines
    assert "Account: acc-air" in profile_lines(business, NOW, account=True)
    past = BusinessProfile.from_json({**PROFILE, "closed_dates": ["2025-12-24"]})
    assert not any(
        line.startswith("Closed on")
        for line in profile_lines(Business(past, "+49", Tick(TickState.NOT_VERIFIED), 0), NOW)
    )
    assert date(2026, 1, 1) in business.profile.closed_dates


def test_directory_hits_name_their_category_as_people_say_it() -> None:
    hit = BusinessSummary("acc-air", "Tresen Air", "Flights", "TRAVEL", Tick(TickState.VERIFIED))
    assert directory_line(hit) == "Tresen Air ✓ · Travel and transportation · Flights  (acc-air)"
    assert directory_line(hit, 2).startswith("2. Tresen Air ✓ · ")
    assert category_name("PROF_SERVICES") == "Professional services"
    assert category_name("SPACE_TRAVEL") == "Space travel"


def test_errors_name_the_front_ends_own_commands() -> None:
    blocked = RelayError(ErrorCode.BLOCKED_BY_YOU, "blocked")
    assert relay_error_text(blocked, "Alice", APP_HINTS) == (
        "you blocked Alice; type /unblock to write again"
    )
    assert relay_error_text(blocked, "+49151", cli_hints("+49151")) == (
        "you blocked +49151; run `tresen chat unblock +49151` to write again"
    )
    other = RelayError(150010, "phone number is not valid")
    assert error_text(other, "Alice", APP_HINTS) == (
        "the relay refused: phone number is not valid (code 150010)"
    )
    offline = error_text(httpx.ConnectError("connection refused"), "Alice", APP_HINTS)
    assert offline == "cannot reach the relay (connection refused); try again in a moment"
    assert error_text(ValueError("x"), "Alice", APP_HINTS) is None


def test_files_in_template_and_button_headers_are_numbered_like_other_files() -> None:
    def file(name: str, kind: MediaKind = MediaKind.DOCUMENT) -> Media:
        return Media(
            kind=kind,
            blob=bytes(40),
            key=bytes(32),
            sha256=bytes(32),
            size=40,
            plain_size=16,
            mime_type="application/pdf" if kind is MediaKind.DOCUMENT else "image/png",
            filename=name,
        )

    def received(message_id: str, payload: object) -> StoredMessage:
        return StoredMessage(
            message_id, "chat", False, "them", 1, None, encode_payload(payload), MessageStatus.SEEN,
            NOW, None,
        )  # fmt: skip

    boarding = Template(
        template_id="7", name="boarding_pass", language="en", header_media=file("pass.pdf")
    )
    offer = Interactive(
        type=InteractiveKind.BUTTON,
        body="Keep it?",
        buttons=[Button(id="y", title="Yes")],
        header_media=file("jacket.png", MediaKind.IMAGE),
    )
    lines = chat_lines(
        [
            received("m1", file("invoice.pdf")),
            received("m2", boarding),
            stored("m3", "thanks", MessageStatus.SEEN),
            received("m4", offer),
        ],
        "Tresen Air",
        {},
    )
    assert [(line.marker, line.attachment) for line in lines] == [
        ("file 1", 1),
        ("file 2", 2),
        (None, 0),
        ("file 3", 3),
    ]
    assert lines[1].text.startswith("📎 document · pass.pdf · 16 bytes")
    assert lines[3].text.splitlines()[0] == "📎 image · jacket.png · 16 bytes"
    assert "[1] Yes" in lines[3].text

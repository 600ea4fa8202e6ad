"""The thread and the composer as an agent uses them in the browser, and what the customer
gets: a reply quoting a message, a reaction, reply buttons and the answer chosen, and with the
window closed only templates, sent exactly as their preview showed them."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from gateway_support import RunningGateway, approved_template, customer, next_of, serve_gateway
from inbox_browser import FAST, PASSWORD, Browser, notice, thread_of
from support import Backend, MakeRelay, RunningRelay

from tresen.client.events import MessageEvent
from tresen.core.clock import ManualClock, SystemClock
from tresen.gateway.database import open_database
from tresen.gateway.ids import encode_wamid
from tresen.gateway.inbox.agents import Agents, Role
from tresen.gateway.inbox.render import Kind, Stored, arrange
from tresen.wire.e2e import Interactive, Reaction, Text


async def make_team(gw: RunningGateway) -> None:
    db = await open_database(gw.settings)
    try:
        agents = Agents(db, SystemClock(), hasher=FAST)
        await agents.create("cem", "Cem Yilmaz", Role.AGENT, PASSWORD)
    finally:
        await db.dispose()


@pytest.fixture
async def browser(gw: RunningGateway) -> AsyncIterator[Browser]:
    await make_team(gw)
    made = Browser(gw.url)
    await made.sign_in("cem")
    yield made
    await made.close()


def message_item(page: str, text: str) -> str:
    """The thread's list item of the message that shows ``text``."""
    for item in re.findall(r'<li class="(?:in|out)"[^>]*>(.*?)<span class="meta">\d', page, re.S):
        if text in item:
            return str(item)
    raise AssertionError(f"no message shows {text!r}:\n{page}")


async def test_reply_to_a_message_react_and_send_buttons(
    relay: RunningRelay, gw: RunningGateway, browser: Browser, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        asked = await alice.send_text(gw.gateway.phone, "Habt ihr Samstag offen?")
        await thread_of(browser, alice.account_id, "Habt ihr Samstag offen?")
        # Each message of the customer offers "Reply" while the window is open.
        page = await thread_of(browser, alice.account_id, ">Reply</a>")
        token = await browser.csrf(f"/inbox/c/{alice.account_id}")
        wamid = encode_wamid(asked.message_id)
        reply_link = f"/inbox/c/{alice.account_id}?reply={quote(wamid, safe='')}#text"
        assert html.escape(reply_link) in page

        # Reply: the quoted message is shown above the box, with a way back out of it.
        replying = await browser.get(reply_link.split("#")[0])
        assert "Replying to" in replying.text
        assert f'name="context" value="{wamid}"' in replying.text
        assert f'href="/inbox/c/{alice.account_id}#text">Cancel the reply' in replying.text
        sent = await browser.post(
            f"/inbox/c/{alice.account_id}/reply",
            {"csrf": token, "text": "Ja, bis 14 Uhr.", "context": wamid},
        )
        assert sent.status_code == 303
        answer = await next_of(alice, MessageEvent, 30)
        assert isinstance(answer.payload, Text)
        assert answer.payload.text == "Ja, bis 14 Uhr."
        assert answer.payload.context is not None
        assert answer.payload.context.message_id == asked.message_id
        shown = await thread_of(browser, alice.account_id, "Ja, bis 14 Uhr.")
        item = message_item(shown, "Ja, bis 14 Uhr.")
        assert "In reply to the customer" in item
        assert "Habt ihr Samstag offen?" in item

        # A quote of a message from another conversation is refused, and nothing is sent.
        stranger = await browser.post(
            f"/inbox/c/{alice.account_id}/reply",
            {"csrf": token, "text": "Huch", "context": "wamid.nonsense"},
        )
        assert "not in this conversation" in notice(stranger)

        # A reaction shows on the message it reacts to, not as a line of its own.
        reacted = await browser.post(
            f"/inbox/c/{alice.account_id}/react", {"csrf": token, "wamid": wamid, "emoji": "👍"}
        )
        assert notice(reacted) == "Reacted 👍."
        reaction = await next_of(alice, MessageEvent, 30)
        assert isinstance(reaction.payload, Reaction)
        assert (reaction.payload.message_id, reaction.payload.emoji) == (asked.message_id, "👍")
        shown = await thread_of(browser, alice.account_id, "👍 from you")
        assert "👍 from you" in message_item(shown, "Habt ihr Samstag offen?")
        assert "Reacted" not in shown
        odd = await browser.post(
            f"/inbox/c/{alice.account_id}/react", {"csrf": token, "wamid": wamid, "emoji": "💩"}
        )
        assert "reactions offered" in notice(odd)
        taken_back = await browser.post(
            f"/inbox/c/{alice.account_id}/react", {"csrf": token, "wamid": wamid, "emoji": ""}
        )
        assert notice(taken_back) == "Reaction taken back."
        removal = await next_of(alice, MessageEvent, 30)
        assert isinstance(removal.payload, Reaction)
        assert removal.payload.emoji == ""
        assert "from you" not in await thread_of(
            browser, alice.account_id, "Habt ihr Samstag offen?"
        )

        # Reply buttons; the customer's choice shows on the message and as the answer.
        buttons = await browser.post(
            f"/inbox/c/{alice.account_id}/buttons",
            {
                "csrf": token,
                "body": "Wann passt Ihnen die Abholung?",
                "button1": "Vormittags",
                "button2": "Nachmittags",
                "button3": "",
            },
        )
        assert notice(buttons) == "Sent with buttons."
        offered = await next_of(alice, MessageEvent, 30)
        assert isinstance(offered.payload, Interactive)
        assert offered.payload.body == "Wann passt Ihnen die Abholung?"
        assert [b.title for b in offered.payload.buttons] == ["Vormittags", "Nachmittags"]
        chosen_id = offered.payload.buttons[1].id
        await alice.answer(gw.gateway.phone, offered.message_id, chosen_id)
        shown = await thread_of(browser, alice.account_id, "Chose “Nachmittags”")
        question = message_item(shown, "Wann passt Ihnen die Abholung?")
        assert re.search(r'<li class="chosen">Nachmittags <strong>✓ chosen</strong>', question)
        assert 'class="chosen">Vormittags' not in question
        assert "In reply to you" in message_item(shown, "Chose “Nachmittags”")

        # The customer's reaction to the business's message shows on it.
        await alice.react(gw.gateway.phone, answer.message_id, "❤️")
        shown = await thread_of(browser, alice.account_id, "❤️ from the customer")
        assert "❤️ from the customer" in message_item(shown, "Ja, bis 14 Uhr.")

        too_many = await browser.post(
            f"/inbox/c/{alice.account_id}/buttons",
            {"csrf": token, "body": "Und?", "button1": "A" * 21},
        )
        assert "at most 20 characters" in notice(too_many)
        twice = await browser.post(
            f"/inbox/c/{alice.account_id}/buttons",
            {"csrf": token, "body": "Und?", "button1": "Ja", "button2": "Ja"},
        )
        assert "title of its own" in notice(twice)
        forged = await browser.post(
            f"/inbox/c/{alice.account_id}/react", {"wamid": wamid, "emoji": "👍"}
        )
        assert forged.status_code == 403
    finally:
        await alice.close()


def preview_lines(page: str) -> list[str]:
    """The template preview the page shows, as the lines of a plain rendering."""
    found = re.search(r'<div class="bubble template-preview" id="preview">(.*?)</div>', page, re.S)
    assert found is not None, page
    bubble = found.group(1)
    lines = [html.unescape(h) for h in re.findall(r'<strong class="header">(.*?)</strong>', bubble)]
    lines += [html.unescape(b) for b in re.findall(r'<span class="text">(.*?)</span>', bubble)]
    lines += [html.unescape(f) for f in re.findall(r'<small class="footer">(.*?)</small>', bubble)]
    for title, detail in re.findall(r"<li>(.*?)(?: <small>(.*?)</small>)?</li>", bubble):
        lines.append(f"[{html.unescape(title)}]" + (f" {html.unescape(detail)}" if detail else ""))
    return lines


async def test_with_the_window_closed_only_templates_are_offered_and_sent_as_previewed(
    make_relay: MakeRelay, backend: Backend, tmp_path: Path
) -> None:
    clock = ManualClock(SystemClock().now_ms())  # the customer's opt-in is signed at its own time
    async with (
        make_relay(clock=clock) as relay,
        serve_gateway(relay, backend, tmp_path, clock=clock) as gw,
    ):
        template_id = await approved_template(relay, gw)
        await make_team(gw)
        alice = await customer(relay, tmp_path / "alice")
        browser = Browser(gw.url)
        try:
            await alice.opt_in(gw.gateway.phone)  # to utility templates
            await alice.send_text(gw.gateway.phone, "Wo ist meine Bestellung?")
            await browser.sign_in("cem")
            open_page = await thread_of(browser, alice.account_id, "Wo ist meine Bestellung?")
            assert 'id="text"' in open_page
            clock.advance(hours=25)

            await browser.sign_in("cem")  # the session of yesterday has ended
            closed = await thread_of(browser, alice.account_id, "Wo ist meine Bestellung?")
            assert "The 24-hour window is closed" in closed
            assert 'id="text"' not in closed  # no free-form reply box
            assert "/buttons" not in closed  # no buttons either
            assert "/react" not in closed
            assert f'<option value="{template_id}">order_shipped (en_US)</option>' in closed

            # A free-form answer posted anyway is refused by the gateway, with its reason.
            token = await browser.csrf(f"/inbox/c/{alice.account_id}")
            refused = await browser.post(
                f"/inbox/c/{alice.account_id}/reply", {"csrf": token, "text": "Hallo?"}
            )
            assert "more than 24 hours have passed" in notice(refused)

            base = f"/inbox/c/{alice.account_id}/template"
            form = await browser.get(f"{base}?t={template_id}")
            assert form.status_code == 200
            for name in ("p.header.1", "p.body.1", "p.body.2", "p.button:0.1"):
                assert f'name="{name}"' in form.text
            assert 'id="preview"' not in form.text  # nothing to preview before the values

            empty = await browser.get(f"{base}?t={template_id}&preview=1")
            assert "The values do not fit the template" in empty.text
            assert 'id="preview"' not in empty.text

            values = {
                "p.header.1": "#4711",
                "p.body.1": "Alice",
                "p.body.2": "Montag",
                "p.button:0.1": "4711",
            }
            query = "&".join(f"{quote(k)}={quote(v)}" for k, v in values.items())
            previewed = await browser.get(f"{base}?t={template_id}&preview=1&{query}")
            assert previewed.status_code == 200
            lines = preview_lines(previewed.text)
            assert lines == [
                "Order #4711",
                "Hi Alice, your order ships on Montag.",
                "Reply STOP to opt out",
                "[Track] https://shop.example/o/4711",
            ]
            send_token = re.search(r'name="csrf" value="([^"]+)"', previewed.text)
            assert send_token is not None
            sent = await browser.post(
                base, {"csrf": send_token.group(1), "t": template_id, **values}
            )
            assert notice(sent) == "Template order_shipped sent."
            event = await next_of(alice, MessageEvent, 30)
            assert event.template is not None
            assert event.template.text() == "\n".join(lines)

            # The thread shows it as Alice sees it.
            shown = await thread_of(
                browser, alice.account_id, "Hi Alice, your order ships on Montag."
            )
            item = message_item(shown, "Hi Alice, your order ships on Montag.")
            assert "Order #4711" in item
            assert "https://shop.example/o/4711" in item

            for bad in ("abc", "99999999999999999999", "12345"):
                odd = await browser.get(f"{base}?t={bad}")
                assert odd.status_code == 200
                assert "There is no such approved template." in odd.text
            missing = await browser.post(base, {"csrf": token, "t": template_id})
            assert "do not fit the template" in notice(missing)
        finally:
            await browser.close()
            await alice.close()


def test_the_thread_folds_reactions_and_marks_a_list_rows_choice() -> None:
    """Pure rendering: a reaction taken back leaves nothing, the latest of each side counts,
    a list row picked is marked, and an unknown kind is a placeholder."""
    menu = {
        "type": "list",
        "body": {"text": "Which day?"},
        "action": {
            "button": "Days",
            "sections": [
                {
                    "rows": [
                        {"id": "mo", "title": "Monday"},
                        {"id": "tu", "title": "Tuesday", "description": "afternoon"},
                    ]
                }
            ],
        },
    }
    shown = arrange(
        [
            Stored("w1", False, "interactive", menu),
            Stored("w2", True, "reaction", {"message_id": "w1", "emoji": "😮"}),
            Stored("w3", True, "reaction", {"message_id": "w1", "emoji": "👍"}),
            Stored("w4", False, "reaction", {"message_id": "w1", "emoji": "🙏"}),
            Stored("w5", False, "reaction", {"message_id": "w1", "emoji": ""}),
            Stored(
                "w6",
                True,
                "interactive",
                {"type": "list_reply", "list_reply": {"id": "tu", "title": "Tuesday"}},
                "w1",
            ),
            Stored("w7", True, "image", {}),
        ]
    )
    assert [t.wamid for t in shown] == ["w1", "w6", "w7"]
    question, answer, picture = shown
    assert question.view.menu == "Days"
    assert [(o.title, o.detail, o.chosen) for o in question.view.options] == [
        ("Monday", None, False),
        ("Tuesday", "afternoon", True),
    ]
    assert [(r.emoji, r.by_customer) for r in question.reactions] == [("👍", True)]
    assert question.business_reaction == ""
    assert answer.view.chosen == "Tuesday"
    assert answer.quoted is not None
    assert answer.quoted.text == "Which day?"
    assert picture.view.kind is Kind.MEDIA
    assert picture.view.attached is not None
    assert picture.view.attached.kind == "image"


def test_reply_buttons_with_a_file_header_show_the_file_kind_as_their_header() -> None:
    offer = {
        "type": "button",
        "header": {"type": "image", "image": {"id": "123"}},
        "body": {"text": "Keep it?"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]},
    }
    (shown,) = arrange([Stored("w1", False, "interactive", offer)])
    assert shown.view.header == "[image]"
    assert [o.title for o in shown.view.options] == ["Yes"]

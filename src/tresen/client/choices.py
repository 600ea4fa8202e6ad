"""What a message offers to choose: the buttons or list rows of an interactive message, the
quick-reply buttons of a template message. Apps number them from 1, as they show them (the
plain-text forms below), and the customer picks one by its number, its id or its title."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tresen.wire.e2e import Interactive, InteractiveKind
from tresen.wire.templates import RenderedTemplate

__all__ = [
    "Choice",
    "describe_choices",
    "interactive_choices",
    "interactive_text",
    "pick",
    "quick_reply_choices",
    "template_text",
]


@dataclass(frozen=True, slots=True)
class Choice:
    number: int
    """1-based, in the order the message shows its options."""
    id: str
    """An interactive message's button or row id; a quick reply's button text."""
    title: str
    description: str | None = None
    section: str | None = None
    """A list row's section title."""
    button_index: int | None = None
    """A quick reply's index in the template's buttons (its ``button:N``)."""

    def label(self) -> str:
        """``1. Yes``, ``3. Evening · after 6 pm``: the choice as apps show it."""
        extra = f" · {self.description}" if self.description else ""
        return f"{self.number}. {self.title}{extra}"


def interactive_choices(payload: Interactive) -> list[Choice]:
    """The buttons, or the rows of all sections in order."""
    if payload.type == InteractiveKind.BUTTON:
        return [Choice(n, b.id, b.title) for n, b in enumerate(payload.buttons, start=1)]
    rows = [(section.title, row) for section in payload.sections for row in section.rows]
    return [
        Choice(n, row.id, row.title, row.description, section or None)
        for n, (section, row) in enumerate(rows, start=1)
    ]


def quick_reply_choices(rendered: RenderedTemplate) -> list[Choice]:
    """The QUICK_REPLY buttons of a template message; its other buttons (links, calls,
    codes) are no answers."""
    quick = [(i, b) for i, b in enumerate(rendered.buttons) if b.type == "QUICK_REPLY"]
    return [Choice(n, b.text, b.text, button_index=i) for n, (i, b) in enumerate(quick, start=1)]


def pick(choices: Sequence[Choice], option: str) -> Choice:
    """The choice ``option`` names: its id, else its number, else its title (any case).
    Raises ``ValueError`` listing the choices."""
    for choice in choices:
        if choice.id == option:
            return choice
    if option.isdigit() and 1 <= int(option) <= len(choices):
        return choices[int(option) - 1]
    wanted = option.casefold()
    for choice in choices:
        if choice.title.casefold() == wanted:
            return choice
    raise ValueError(f"“{option}” is not one of the choices: {describe_choices(choices)}")


def describe_choices(choices: Sequence[Choice]) -> str:
    if not choices:
        return "there are none"
    return ", ".join(
        f"{c.number} ({c.title})" if c.id == c.title else f"{c.number} ({c.id}: {c.title})"
        for c in choices
    )


def template_text(rendered: RenderedTemplate) -> str:
    """A template message as its signed template renders it, its quick replies numbered for
    choosing (their payloads are the business's, never shown)."""
    numbers = {c.button_index: c.number for c in quick_reply_choices(rendered)}
    lines = rendered.text().splitlines()
    first_button = len(lines) - len(rendered.buttons)
    for index, number in numbers.items():
        assert index is not None
        lines[first_button + index] = f"[{number}] {rendered.buttons[index].text}"
    return "\n".join(lines)


def interactive_text(payload: Interactive) -> str:
    """Header, body and footer, then the numbered buttons, or the list's menu label and its
    sections with their numbered rows."""
    lines = [text for text in (payload.header, payload.body, payload.footer) if text]
    choices = interactive_choices(payload)
    if payload.type == InteractiveKind.BUTTON:
        return "\n".join([*lines, *(f"[{c.number}] {c.title}" for c in choices)])
    lines.append(f"☰ {payload.button}")
    section: str | None = None
    for choice in choices:
        if choice.section and choice.section != section:
            lines.append(choice.section)
        section = choice.section
        extra = f" · {choice.description}" if choice.description else ""
        lines.append(f"  [{choice.number}] {choice.title}{extra}")
    return "\n".join(lines)

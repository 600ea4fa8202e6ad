"""The inbox's languages: English (the source strings) and German (``locale/de/*.po``).

Every sentence a person reads goes through a catalogue: templates call ``_("…")`` and
Python code marks its sentences with ``_`` or raises ``Refused("…", name=value)``, whose
text is a format string translated before its values are put in. An agent chooses their
language; before signing in, the browser's ``Accept-Language`` decides.
"""

from __future__ import annotations

import functools
import gettext
import io
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

__all__ = [
    "DEFAULT",
    "LANGUAGES",
    "N_",
    "Refused",
    "catalogue",
    "from_accept_language",
    "translations",
    "translator",
]

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"en": "English", "de": "Deutsch"}
DEFAULT = "en"


def N_(text: str) -> str:
    """Mark ``text`` for the catalogue where it is defined; it is translated where shown."""
    return text


# Words the pages show from values (statuses, filters, roles), translated where shown.
WORDS = (
    N_("open"),
    N_("pending"),
    N_("snoozed"),
    N_("resolved"),
    N_("bot"),
    N_("mine"),
    N_("unassigned"),
    N_("all"),
    N_("owner"),
    N_("admin"),
    N_("agent"),
)


class Refused(ValueError):
    """A refused change, with a sentence for the person who asked for it.

    ``text`` is the English sentence (lower-case start, no full stop) with ``{name}`` holes;
    ``str()`` gives it filled in, ``sentence(gettext)`` gives it translated."""

    def __init__(self, text: str, **values: Any) -> None:
        super().__init__(text.format(**values) if values else text)
        self.text = text
        self.values = values

    def sentence(self, gettext_: Any) -> str:
        said = str(gettext_(self.text))
        said = said.format(**self.values) if self.values else said
        return said[:1].upper() + said[1:] + "."


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of ``language`` (the source strings for English and the unknown)."""
    if language == DEFAULT or language not in LANGUAGES:
        return gettext.NullTranslations()
    catalog = catalogue(language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def catalogue(language: str) -> Catalog:
    """Every ``locale/<language>/*.po`` file of the inbox (one per room) in one catalogue."""
    merged = Catalog(locale=language)
    for path in sorted((LOCALE_DIR / language).glob("*.po")):
        with path.open("rb") as source:
            for message in read_po(source, locale=language):
                if message.id:
                    merged[message.id] = message
    return merged


def translator(language: str) -> Any:
    """``_`` for ``language``."""
    return translations(language).gettext


def from_accept_language(header: str) -> str:
    """The first of the inbox's languages the browser asks for, by weight; else English."""
    wanted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header[:512].split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        if weight > 0:
            wanted.append((-weight, index, tag.strip().lower().split("-")[0]))
    for _weight, _index, tag in sorted(wanted):
        if tag in LANGUAGES:
            return tag
    return DEFAULT

"""Every sentence of the inbox is in the German catalogue, and an agent reads the inbox in the
language they chose."""

from __future__ import annotations

import importlib
import pkgutil
import string
from pathlib import Path

from babel.messages.extract import extract_from_dir

import tresen.gateway.inbox as inbox_package
from tresen.gateway.inbox.i18n import Refused, catalogue, from_accept_language, translator

PACKAGE = Path(inbox_package.__file__).parent


def _refusals() -> dict[str, tuple[int]]:
    for module in pkgutil.iter_modules([str(PACKAGE)]):
        importlib.import_module(f"tresen.gateway.inbox.{module.name}")
    found: dict[str, tuple[int]] = {"Refused": (1,)}
    todo = [Refused]
    while todo:
        for sub in todo.pop().__subclasses__():
            found[sub.__name__] = (1,)
            todo.append(sub)
    return found


def source_strings() -> dict[str, str]:
    """Every marked string of the inbox (templates and Python), with where it is."""
    keywords: dict[str, object] = {"_": None, "gettext": None, "N_": None, **_refusals()}
    methods = [("templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    found: dict[str, str] = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
        str(PACKAGE), methods, keywords=keywords, options_map=options
    ):
        if isinstance(message, str) and message:
            found.setdefault(message, filename)
    return found


def test_every_sentence_of_the_inbox_has_a_german_translation() -> None:
    catalog = catalogue("de")
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    wanted = source_strings()
    assert len(wanted) > 100
    missing = {text: where for text, where in wanted.items() if text not in translated}
    lines = "".join(f'\n#: {where}\nmsgid "{text}"\nmsgstr ""\n' for text, where in missing.items())
    assert not missing, f"add to a catalogue in locale/de/ (one .po file per room):{lines}"


def test_a_translation_keeps_the_placeholders_of_its_source() -> None:
    catalog = catalogue("de")

    def holes(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    wrong = [m.id for m in catalog if m.id and m.string and holes(m.id) != holes(m.string)]
    assert not wrong


def test_german_is_german() -> None:
    _ = translator("de")
    assert _("Sign in") == "Anmelden"
    assert translator("en")("Sign in") == "Sign in"
    assert translator("xx")("Sign in") == "Sign in"


def test_the_browser_language_decides_before_signing_in() -> None:
    assert from_accept_language("de-DE,de;q=0.9,en;q=0.8") == "de"
    assert from_accept_language("fr-FR,en;q=0.5,de;q=0.7") == "de"
    assert from_accept_language("fr") == "en"
    assert from_accept_language("de;q=x") == "en"
    assert from_accept_language("") == "en"

"""Lookalike-proof business names: a skeleton in the spirit of Unicode UTS #39.

Two display names that a customer could take for one another have the same skeleton, so
"Lufthansa", "LUFTHANSA", "Lufthänsa", "Luft hansa", "Lufthans\u0430" (Cyrillic a) and
"Lufthansa" in fullwidth letters all become ``lufthansa``. The relay stores the skeleton of every
display name and refuses a name whose skeleton is that of a verified business (the rule
lives in ``service.py``). The match is exact: "Lufthansa Cargo" has another skeleton and is
allowed, because a longer name is visibly a different name; a rule on containment would
also lock out every honest "Lufthansa Fan Shop" and "Hotel Lufthansa".

Steps (UTS #39 §4 computes ``NFD → map confusables → NFD``; we widen it for names):

1. drop symbols that do not stand for one letter or digit (``™``, ``✓``, ``✈``), so
   decoration is no disguise; a symbol that is itself a confusable (``|`` for ``l``) stays;
2. NFKD, so compatibility forms (fullwidth, mathematical alphabets, the Roman
   numeral fifty for L, ligatures) become their plain letters;
3. drop combining marks (diacritics, variation selectors) and format characters
   (zero-width space/joiner, bidi marks, soft hyphen) and the invisible Hangul fillers;
4. map every character to its UTS #39 prototype (Cyrillic ``\u0430`` → ``a``, ``I`` → ``l``,
   ``0`` → ``O``, ``m`` → ``rn``), case-fold, then map the lookalikes that the Unicode table
   leaves out (``:data:`LOOKALIKES```, e.g. ``5`` → ``s``, ``i`` → ``l``); repeated until
   nothing changes, since case folding can produce a new confusable;
5. keep letters and digits only: whitespace and punctuation go.

The confusables table is Unicode's own ``confusables.txt`` (the UTS #39 data), as shipped by
the PyPI package ``confusable-homoglyphs``: the most used Python package carrying that file,
pure data, no native build. ICU's SpoofChecker (PyICU) computes the reference skeleton but
needs a C++ build against the system's ICU on every machine that installs Tresen, clients
included. The package stores the table as pairs in both directions; :func:`_prototypes`
recovers the UTS #39 direction (see there).
"""

from __future__ import annotations

import json
import unicodedata
from functools import cache
from importlib import resources

__all__ = ["LOOKALIKES", "MAX_SKELETON_CHARS", "name_skeleton"]

# The column that stores the skeleton (business_profiles.name_skeleton).
MAX_SKELETON_CHARS = 200

# Lookalikes of lower-case letters that Unicode's table does not list (it maps "0" and "1"
# already): digits and signs that read as letters in a name, and "w" → "vv", "d" → "cl"
# (as it maps "m" → "rn").
LOOKALIKES: dict[str, str] = {
    "i": "l",
    "2": "z",
    "3": "e",
    "4": "a",
    "5": "s",
    "6": "b",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
    "w": "vv",
    "d": "cl",
}

# Letters (category Lo) that render as nothing.
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")
_BIDI_MARKS = "\u200e\u200f"
_MAX_ROUNDS = 8


@cache
def _prototypes() -> dict[str, str]:
    """Source character → prototype string, as in UTS #39 ``confusables.txt``.

    The package lists, for each line ``source → prototype`` of Unicode's file, the prototype
    under the source and the source under the prototype. In Unicode's table a source maps to
    exactly one prototype and a prototype is never itself a source, so a character whose only
    entry leads to a string listed under several sources, or to more than one character, is a
    source. That leaves pairs where each side lists only the other; the package writes a
    line's source before its prototype (and a source occurs on one line only), so the earlier
    key is the source. The package wraps right-to-left characters in LRM marks; they go.
    """
    path = resources.files("confusable_homoglyphs").joinpath("confusables.json")
    raw: dict[str, list[dict[str, str]]] = json.loads(path.read_text(encoding="utf-8"))
    order: dict[str, int] = {}
    pairs: dict[str, list[str]] = {}
    for key, listed in raw.items():
        char = key.strip(_BIDI_MARKS)
        order.setdefault(char, len(order))
        pairs.setdefault(char, []).extend(e["c"].strip(_BIDI_MARKS) for e in listed)
    prototypes: dict[str, str] = {}
    for char, others in pairs.items():
        if len(char) != 1 or len(others) != 1:
            continue
        (target,) = others
        if len(target) > 1 or len(pairs.get(target, ())) > 1 or order[char] < order[target]:
            prototypes[char] = target
    return prototypes


def _drop_decoration(char: str, prototypes: dict[str, str]) -> bool:
    if not unicodedata.category(char).startswith("S") or char in prototypes:
        return False
    compat = unicodedata.normalize("NFKD", char)
    return not (len(compat) == 1 and compat.isalnum())


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in ("Mn", "Me", "Cf") or char in _FILLERS


def name_skeleton(display_name: str) -> str:
    """The lookalike-proof form of a name: equal for names a reader could mistake."""
    prototypes = _prototypes()
    text = "".join(c for c in display_name if not _drop_decoration(c, prototypes))
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not _invisible(c))
    for _ in range(_MAX_ROUNDS):
        mapped = "".join(prototypes.get(c, c) for c in text)
        mapped = unicodedata.normalize("NFKD", mapped).casefold()
        mapped = "".join(LOOKALIKES.get(c, c) for c in mapped if not _invisible(c))
        if mapped == text:
            break
        text = mapped
    return "".join(c for c in text if unicodedata.category(c)[0] in "LN")

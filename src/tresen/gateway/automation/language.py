"""Which of the bot's languages a customer writes in, guessed offline from their words.

Chat messages are short ("hallo", "wo bleibt mein paket", "is my flight on time"), so the
guess counts words typical of each language rather than letter statistics, which need
longer texts. Umlauts and ß count for German.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["LANGUAGES", "guess_language"]

LANGUAGES: Final = ("de", "en")

_MAX_CHARS = 1_000
_WORD = re.compile(r"[a-zäöüß]+(?:'[a-z]+)?")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Function words, greetings and frequent chat words; spellings without umlauts and common
# chat forms ("nen", "gibts", "pls") are included since customers write them.
_GERMAN: Final = _words(
    """
    aber alle als am an auch auf aus bei beim bekomme bekommen bin bis bitte bist brauche da
    danke dann das dass dem den denn der des die diese dieser doch dort du ein eine einem einen
    einer es euch euer eure eurem eurer euren fuer für geht gehts gerne gibt gibts gruess grüß
    guten hab habe haben habt hallo hast hat heute hier ich ihr ihre ihnen im in ist ja jetzt
    kann kannst kein keine koennte könnte kommt kostet leider mal man mehr mein meine meinem
    meinen meiner mich mir mit moechte möchte moin morgen muss nach nachricht ne nee nein nen
    nicht noch nochmal nur ob oder schon sehr sein seid servus sich sie sind so soll tag
    tschuess tschüss um und uns unser viel viele vom von vor wann war warum was weil welche
    welcher wenn werde werden wer wie wieso wieviel wird wo wurde wuerde würde zu zum zur
    zurück zurueck
    """
)
_ENGLISH: Final = _words(
    """
    a about after all also am an and any are as at be because been but by can cant can't
    cheers come could day did do does dont don't for from get go going good got had has have
    he hello her here hi his how i i'm if im in is it it's its just know like many me morning
    much my need never no not now of off on one only or our out please pls really she should
    since some sorry still than thank thanks that the their them then there they this to
    today tomorrow too two up us very want was we what whats when where which who why with
    would yes yesterday yet you your you're
    """
)
# Spellings typical of one language, a weak hint for words in neither list.
_GERMAN_SHAPE: Final = re.compile(r"sch|tz|pf|ung$|keit$|heit$|lich$|chen$|ei[nt]|^[a-z]{3,}en$")
_ENGLISH_SHAPE: Final = re.compile(r"th|wh|ing$|tion$|ly$|ght|ea|oo|ou|y$")

# Words the two languages share ("in", "am", "so", "was" ...) count for neither.
_SHARED: Final = _GERMAN & _ENGLISH


def guess_language(text: str, default: str = "en") -> str:
    """``"de"`` or ``"en"`` for what the customer wrote; ``default`` when nothing tells."""
    lowered = text[:_MAX_CHARS].lower()
    german = sum(lowered.count(c) for c in "äöüß") * 2
    english = 0
    for word in _WORD.findall(lowered):
        if word in _SHARED:
            continue
        if word in _GERMAN:
            german += 2
        elif word in _ENGLISH:
            english += 2
        elif _GERMAN_SHAPE.search(word):
            german += 1
        elif _ENGLISH_SHAPE.search(word):
            english += 1
    if german > english:
        return "de"
    if english > german:
        return "en"
    return default if default in LANGUAGES else "en"

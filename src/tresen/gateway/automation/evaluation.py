"""How well a matcher does on a file of held-out cases (``text`` and the expected intent).

A case with ``intent: null`` is off-topic: the bot must not answer it with an intent.

Two accuracies are reported for in-domain cases. *Top-1* counts a case right when the
decision is ANSWER or SUGGEST and the right intent comes first: the customer either gets the
answer or sees it as the first "did you mean" button. *Answer* counts only direct answers
with the right intent. An off-topic case is *rejected* when the decision is NONE or HANDOFF.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from tresen.gateway.automation.language import guess_language
from tresen.gateway.automation.matcher import Decision, IntentExamples, Matcher

__all__ = [
    "MAX_CASES",
    "Case",
    "EvalReport",
    "Figures",
    "Miss",
    "evaluate",
    "load_cases",
    "load_intent_examples",
]

MAX_CASES: Final = 10_000
MAX_FILE_BYTES: Final = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Case:
    text: str
    intent: str | None  # None: off-topic


@dataclass(frozen=True, slots=True)
class Miss:
    text: str
    expected: str | None
    decision: str
    got: str | None
    score: float
    language: str


@dataclass(frozen=True, slots=True)
class Figures:
    """Counts and rates for one slice of the cases (all of them, or one language)."""

    in_domain: int
    top1_correct: int
    answer_correct: int
    off_topic: int
    rejected: int

    @property
    def top1_accuracy(self) -> float:
        return self.top1_correct / self.in_domain if self.in_domain else 0.0

    @property
    def answer_accuracy(self) -> float:
        return self.answer_correct / self.in_domain if self.in_domain else 0.0

    @property
    def rejection_rate(self) -> float:
        return self.rejected / self.off_topic if self.off_topic else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "top1_accuracy": round(self.top1_accuracy, 4),
            "answer_accuracy": round(self.answer_accuracy, 4),
            "rejection_rate": round(self.rejection_rate, 4),
        }


@dataclass(frozen=True, slots=True)
class EvalReport:
    overall: Figures
    by_language: dict[str, Figures]
    misses: tuple[Miss, ...] = field(default=())

    @property
    def top1_accuracy(self) -> float:
        return self.overall.top1_accuracy

    @property
    def answer_accuracy(self) -> float:
        return self.overall.answer_accuracy

    @property
    def rejection_rate(self) -> float:
        return self.overall.rejection_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "counted_as_top1": "decision answer or suggest with the expected intent first",
            "counted_as_rejected": "off-topic case with decision none or handoff",
            **self.overall.to_dict(),
            "by_language": {lang: f.to_dict() for lang, f in sorted(self.by_language.items())},
            "misses": [asdict(m) for m in self.misses],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)


def _read_yaml(path: Path) -> Any:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB.")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_cases(path: str | Path) -> list[Case]:
    """The cases of a YAML file: a list of ``{text, intent}``, ``intent: null`` off-topic."""
    raw = _read_yaml(Path(path))
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a list of cases with 'text' and 'intent'.")
    if len(raw) > MAX_CASES:
        raise ValueError(f"{path}: at most {MAX_CASES} cases, not {len(raw)}.")
    cases: list[Case] = []
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise ValueError(f"{path}: case {number} needs a 'text'.")
        intent = item.get("intent")
        if intent is not None and not isinstance(intent, str):
            raise ValueError(f"{path}: case {number}: 'intent' must be a name or null.")
        cases.append(Case(text=item["text"], intent=intent))
    return cases


def load_intent_examples(path: str | Path) -> list[IntentExamples]:
    """The names and example phrasings of a bot configuration file's ``intents``."""
    raw = _read_yaml(Path(path))
    intents = raw.get("intents") if isinstance(raw, dict) else None
    if not isinstance(intents, list):
        raise ValueError(f"{path}: expected 'intents:', a list.")
    loaded: list[IntentExamples] = []
    for number, item in enumerate(intents, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"{path}: intent {number} needs a 'name'.")
        examples = item.get("examples")
        if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
            raise ValueError(f"{path}: intent {item['name']!r} needs 'examples', a list of texts.")
        loaded.append(IntentExamples(name=item["name"], examples=tuple(examples)))
    return loaded


def evaluate(matcher: Matcher, cases: Sequence[Case]) -> EvalReport:
    """Runs the matcher over the cases and counts what it got right."""
    tallies: dict[str, list[int]] = {}
    misses: list[Miss] = []
    for case in cases:
        language = guess_language(case.text)
        match = matcher.match(case.text)
        offered = match.decision in (Decision.ANSWER, Decision.SUGGEST)
        # Slots: in_domain, top1_correct, answer_correct, off_topic, rejected.
        for key in ("all", language):
            tally = tallies.setdefault(key, [0, 0, 0, 0, 0])
            if case.intent is None:
                tally[3] += 1
                tally[4] += not offered
            else:
                tally[0] += 1
                tally[1] += offered and match.intent == case.intent
                tally[2] += match.decision is Decision.ANSWER and match.intent == case.intent
        right = (not offered) if case.intent is None else (offered and match.intent == case.intent)
        if not right:
            misses.append(
                Miss(
                    text=case.text,
                    expected=case.intent,
                    decision=match.decision.value,
                    got=match.intent,
                    score=match.score,
                    language=language,
                )
            )
    overall = Figures(*tallies.get("all", [0, 0, 0, 0, 0]))
    by_language = {k: Figures(*v) for k, v in tallies.items() if k != "all"}
    return EvalReport(overall=overall, by_language=by_language, misses=tuple(misses))

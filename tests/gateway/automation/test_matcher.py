import threading
from pathlib import Path

import numpy as np
import pytest

from tresen.gateway.automation.evaluation import load_intent_examples
from tresen.gateway.automation.matcher import (
    MAX_EXAMPLES_PER_INTENT,
    MAX_INTENTS,
    MAX_TEXT_CHARS,
    Decision,
    IntentExamples,
    Matcher,
    Thresholds,
    UniversalSentenceEncoder,
    normalise,
    wants_person,
)

DEMO_BOT = Path(__file__).parents[3] / "src" / "tresen" / "demo_bot.yaml"


@pytest.fixture(scope="module")
def airline() -> Matcher:
    # The encoder's model is cached per process; building a matcher only encodes its examples.
    return Matcher(load_intent_examples(DEMO_BOT))


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("How much baggage may I bring?", "baggage"),
        ("Kann ich meinen Hund mitnehmen?", "pets"),
        ("My luggage did not arrive", "lost_baggage"),
        ("Wann öffnet der Online-Check-in?", "checkin"),
        ("Gibt es Essen an Bord?", "meals"),
    ],
)
def test_a_clear_question_is_answered_with_its_intent(
    airline: Matcher, text: str, intent: str
) -> None:
    match = airline.match(text)
    assert match.decision is Decision.ANSWER
    assert match.intent == intent
    assert match.alternatives[0] == (intent, match.score)
    assert airline.thresholds.answer <= match.score <= 1.0


def test_an_example_itself_is_answered_with_full_confidence(airline: Matcher) -> None:
    match = airline.match("  wie viel GEPAECK darf ich mitnehmen ")
    assert (match.decision, match.intent, match.score) == (Decision.ANSWER, "baggage", 1.0)
    assert match.language == "de"


def test_a_vague_question_gets_up_to_three_choices(airline: Matcher) -> None:
    match = airline.match("I have a question about my trip")
    assert match.decision is Decision.SUGGEST
    assert 1 <= len(match.alternatives) <= 3
    assert match.intent == match.alternatives[0][0]
    scores = [score for _, score in match.alternatives]
    assert scores == sorted(scores, reverse=True)
    assert all(airline.thresholds.suggest <= s < airline.thresholds.answer for s in scores)


def test_a_close_second_intent_turns_an_answer_into_a_suggestion() -> None:
    matcher = Matcher(
        [
            IntentExamples("baggage", ("How much luggage can I take?",)),
            IntentExamples("baggage_fees", ("How much does extra luggage cost?",)),
        ],
        Thresholds(answer=0.3, suggest=0.2, margin=0.5),
    )
    match = matcher.match("luggage")
    assert match.decision is Decision.SUGGEST
    assert {name for name, _ in match.alternatives} == {"baggage", "baggage_fees"}


@pytest.mark.parametrize(
    "text",
    ["what is the capital of France", "wie wird das wetter morgen", "Wer hat das Spiel gewonnen?"],
)
def test_an_off_topic_question_gets_no_intent(airline: Matcher, text: str) -> None:
    match = airline.match(text)
    assert match.decision is Decision.NONE
    assert match.intent is None
    assert match.score < airline.thresholds.suggest


@pytest.mark.parametrize("text", ["", "   ", "👍👍", "?!", "✈️🙂"])
def test_empty_or_emoji_only_text_gets_no_intent(airline: Matcher, text: str) -> None:
    match = airline.match(text)
    assert (match.decision, match.intent, match.alternatives) == (Decision.NONE, None, ())


@pytest.mark.parametrize(
    "text",
    [
        "Ich möchte mit einem Mitarbeiter sprechen",
        "Mitarbeiter bitte",
        "mitarbieter!!",
        "echte Person bitte",
        "Kundenberater",
        "kundenbertaer",
        "Ich will einen Menschen",
        "Kann ich mit jemandem sprechen?",
        "kein Bot bitte",
        "agent",
        "agent pls",
        "I want to talk to a human",
        "hmuan please",
        "real person please",
        "can i speak to somebody",
        "talk to someone",
        "operator",
        "opertor",
        "connect me to an agent",
    ],
)
def test_asking_for_a_person_hands_over(airline: Matcher, text: str) -> None:
    assert airline.wants_person(text)
    match = airline.match(text)
    assert match.decision is Decision.HANDOFF
    assert match.reason == "asked for a person"
    assert match.intent is None


@pytest.mark.parametrize(
    "text",
    [
        "Is there a person limit on the bus?",
        "my travel agent booked the flight",
        "how many persons fit in the car",
        "Wie viele Personen dürfen mit?",
        "i need to add a person to my booking",
        "Bitte schicken Sie mir meine Bordkarte",
    ],
)
def test_mentioning_a_person_is_not_asking_for_one(text: str) -> None:
    assert not wants_person(text)


def test_normalise_folds_case_umlauts_and_punctuation() -> None:
    assert normalise("Größe & GEPÄCK?!  Café") == "groesse gepaeck cafe"


def test_a_long_message_is_cut_and_still_matched(airline: Matcher) -> None:
    text = "Can I bring my dog on the plane? " * 100
    assert len(text) > MAX_TEXT_CHARS
    match = airline.match(text)
    assert match.decision is Decision.ANSWER
    assert match.intent == "pets"


def test_a_bot_without_intents_answers_nothing() -> None:
    match = Matcher([]).match("Where is my suitcase?")
    assert (match.decision, match.intent) == (Decision.NONE, None)


def test_too_many_intents_are_refused() -> None:
    intents = [IntentExamples(f"intent_{i}", ("hello",)) for i in range(MAX_INTENTS + 1)]
    with pytest.raises(ValueError, match="at most 200 intents"):
        Matcher(intents)


def test_too_many_examples_are_refused() -> None:
    examples = tuple(f"question {i}" for i in range(MAX_EXAMPLES_PER_INTENT + 1))
    with pytest.raises(ValueError, match="at most 50 are allowed"):
        Matcher([IntentExamples("faq", examples)])


@pytest.mark.parametrize(
    ("intents", "message"),
    [
        ([IntentExamples("faq", ())], "needs at least one example"),
        ([IntentExamples("faq", ("?!",))], "has an empty example"),
        ([IntentExamples("", ("hello",))], "needs 1 to 64 characters"),
        ([IntentExamples("a", ("x",)), IntentExamples("a", ("y",))], "defined twice"),
    ],
)
def test_malformed_intents_are_refused(intents: list[IntentExamples], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Matcher(intents)


@pytest.mark.parametrize(
    ("answer", "suggest", "margin"), [(0.3, 0.5, 0.0), (1.2, 0.5, 0.0), (0.5, 0.3, -0.1)]
)
def test_inconsistent_thresholds_are_refused(answer: float, suggest: float, margin: float) -> None:
    with pytest.raises(ValueError, match=r"must lie|need"):
        Thresholds(answer=answer, suggest=suggest, margin=margin)


def test_the_encoder_returns_unit_vectors() -> None:
    vectors = UniversalSentenceEncoder().encode(["Wo ist mein Koffer?", "Where is my bag?"])
    assert vectors.shape == (2, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert float(vectors[0] @ vectors[1]) > 0.6  # the same question in two languages


def test_matching_from_many_threads_gives_the_same_answers(airline: Matcher) -> None:
    texts = ["Can I bring my dog?", "Wo ist mein Koffer?", "what is the capital of France"] * 4
    expected = [airline.match(t) for t in texts]
    results: dict[int, object] = {}

    def run(i: int) -> None:
        results[i] = airline.match(texts[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(len(texts))] == expected

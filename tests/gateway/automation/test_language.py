import pytest

from tresen.gateway.automation.language import guess_language


@pytest.mark.parametrize(
    "text",
    [
        "Hallo",
        "moin",
        "Guten Morgen",
        "wo bleibt mein paket",
        "Wie viel Gepäck darf ich mitnehmen?",
        "ich will lieber am dienstag fliegen",
        "kann ich mit paypal zahlen",
        "wieviel kilo darf der koffer wiegen",
        "Öffnungszeiten",
        "gibts snacks während dem flug",
        "danke!",
        "Ich hab ne frage",
        "bestellung stornieren",
        "porto kosten?",
    ],
)
def test_german_messages_are_german(text: str) -> None:
    assert guess_language(text) == "de"


@pytest.mark.parametrize(
    "text",
    [
        "Hi",
        "Hello!",
        "is my flight on time",
        "whats the max weight for my suitcase",
        "can i bring my dog",
        "track my parcel",
        "do you take visa",
        "thx, that helps",
        "cant find my boardingpass",
        "where is my order???",
        "check in",
    ],
)
def test_english_messages_are_english(text: str) -> None:
    assert guess_language(text) == "en"


@pytest.mark.parametrize("text", ["", "👍", "ok", "TA100", "?!"])
def test_a_message_that_tells_nothing_gets_the_default(text: str) -> None:
    assert guess_language(text, default="de") == "de"
    assert guess_language(text) == "en"


def test_an_unknown_default_falls_back_to_english() -> None:
    assert guess_language("👍", default="fr") == "en"


def test_a_very_long_message_is_read_only_at_its_start() -> None:
    assert guess_language("ich habe eine frage " * 50 + "the " * 2_000) == "de"

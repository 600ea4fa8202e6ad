"""``tresen gateway bot``: a bot file imported into the gateway's database (no relay needed),
exported without its secrets, a message tried, and the matcher measured over a cases file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tresen.demo import DEMO_BOT, SYSTEMS_URL

pytestmark = pytest.mark.slow

CASES = """
- {text: "wie schwer darf mein koffer sein", intent: baggage}
- {text: "can my cat fly with me", intent: pets}
- {text: "what is the capital of france", intent: null}
"""


def bot(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "tresen", "gateway", "bot", *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("TRESEN_GATEWAY")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


@pytest.fixture
def bot_file(tmp_path: Path) -> Path:
    text = DEMO_BOT.read_text().replace(SYSTEMS_URL, "https://systems.air.example")
    text = text.replace("    timeout_s: 3\n", "    timeout_s: 3\n    headers: {X-Key: k3y}\n", 1)
    path = tmp_path / "bot.yaml"
    path.write_text(text)
    return path


def test_import_export_match_and_eval(tmp_path: Path, bot_file: Path) -> None:
    folder = tmp_path / "gateway"
    imported = bot("import", str(bot_file), "--data-dir", str(folder))
    assert imported.returncode == 0, imported.stderr
    assert "Imported 13 intents and 2 actions." in imported.stdout

    exported = bot("export", "--data-dir", str(folder))
    assert exported.returncode == 0, exported.stderr
    data = yaml.safe_load(exported.stdout)
    assert [i["name"] for i in data["intents"]][:3] == ["baggage", "checkin", "boarding_pass"]
    flight = next(a for a in data["actions"] if a["name"] == "flight_status")
    assert flight["headers"] == {"X-Key": "********"}  # the secret stays in the gateway
    assert "k3y" not in exported.stdout

    matched = bot("match", "Darf mein Hund mit in die Kabine?", "--data-dir", str(folder), "--json")
    assert matched.returncode == 0, matched.stderr
    found = json.loads(matched.stdout)
    assert (found["decision"], found["intent"], found["language"]) == ("answer", "pets", "de")
    assert 0 < found["score"] <= 1
    assert found["alternatives"][0]["intent"] == "pets"

    person = bot("match", "I want to talk to a human", "--intents", str(bot_file), "--json")
    assert json.loads(person.stdout)["decision"] == "handoff"

    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES)
    measured = bot("eval", "--cases", str(cases), "--intents", str(bot_file), "--json")
    assert measured.returncode == 0, measured.stderr
    report = json.loads(measured.stdout)
    assert report["in_domain"] == 2
    assert report["off_topic"] == 1
    table = bot("eval", "--cases", str(cases), "--data-dir", str(folder))
    assert "top-1 accuracy" in table.stdout


def test_a_refused_file_changes_nothing(tmp_path: Path, bot_file: Path) -> None:
    folder = tmp_path / "gateway"
    assert bot("import", str(bot_file), "--data-dir", str(folder)).returncode == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text("intents:\n  - name: Baggage!\n    examples: [x]\n    answer: {text: y}\n")
    refused = bot("import", str(broken), "--data-dir", str(folder))
    assert refused.returncode == 1
    assert "name must be 1-40 small letters" in refused.stdout
    still = yaml.safe_load(bot("export", "--data-dir", str(folder)).stdout)
    assert len(still["intents"]) == 13

    empty = bot("match", "hello", "--data-dir", str(tmp_path / "other"))
    assert empty.returncode == 1
    assert "the bot has no intents" in empty.stdout

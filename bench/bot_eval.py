"""The FAQ bot's matcher: accuracy on held-out cases, start-up time, memory and latency.

Evaluation: the demo airline's bot (``src/tresen/demo_bot.yaml``, 3 examples per intent) over
``tests/data/bot/airline-cases.yaml``, and a shop's bot over ``tests/data/bot/shop-cases.yaml``.
Top-1 counts a case right when the decision is answer or suggest with the expected intent
first; "answer" counts direct answers only; rejection is the share of off-topic cases not
answered with an intent (decision none or hand-over).

Start-up: in a fresh Python process (cold cache), the time to load the sentence encoder and
encode the airline's examples, and the resident memory it adds (RSS before and after).
Latency: ``Matcher.match`` per message over all cases, ``--rounds`` times.

Encoder ceiling: how well the encoder itself ranks, whatever the thresholds and whichever
examples a business writes. *Ranked first* is the share of in-domain cases whose best-scoring
intent is the expected one, with no threshold at all. *Random k* pools each intent's examples
and held-out paraphrases, draws k of them as the examples (``--draws`` times, seeded), and
ranks the rest: the mean and the 10th/90th percentile of the ranked-first share tell how much
better examples, or more of them, can do.

    .venv/bin/python bench/bot_eval.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from tresen.gateway.automation.evaluation import (
    Case,
    evaluate,
    load_cases,
    load_intent_examples,
)
from tresen.gateway.automation.matcher import IntentExamples, Matcher, UniversalSentenceEncoder

ROOT = Path(__file__).resolve().parents[1]
SETS = {
    "airline": (ROOT / "src/tresen/demo_bot.yaml", ROOT / "tests/data/bot/airline-cases.yaml"),
    "shop": (ROOT / "tests/data/bot/shop-intents.yaml", ROOT / "tests/data/bot/shop-cases.yaml"),
}

# Runs in a child process so that nothing is loaded yet.
_STARTUP = """
import json, sys, time
def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
before = rss_kib()
started = time.perf_counter()
from tresen.gateway.automation.evaluation import load_intent_examples
from tresen.gateway.automation.matcher import Matcher
matcher = Matcher(load_intent_examples(sys.argv[1]))
matcher.match("warm")
elapsed = time.perf_counter() - started
added = round((rss_kib() - before) / 1024, 1)
print(json.dumps({"startup_s": round(elapsed, 3), "rss_increase_mib": added}))
"""


def measure_startup(intents: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _STARTUP, str(intents)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_latency(matcher: Matcher, texts: list[str], rounds: int) -> dict[str, Any]:
    timings: list[float] = []
    for _ in range(rounds):
        for text in texts:
            started = time.perf_counter()
            matcher.match(text)
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "messages": len(timings),
        "p50_ms": round(statistics.median(timings), 2),
        "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 2),
        "max_ms": round(timings[-1], 2),
    }


def ranked_first(matcher: Matcher, cases: list[Case]) -> float:
    in_domain = [case for case in cases if case.intent is not None]
    hits = sum(matcher.scores(case.text)[0][0] == case.intent for case in in_domain)
    return hits / len(in_domain)


def random_examples(
    intents: list[IntentExamples], cases: list[Case], sizes: tuple[int, ...], draws: int
) -> dict[str, dict[str, float]]:
    """Ranked-first share with k phrasings drawn at random per intent as its examples."""
    encoder = UniversalSentenceEncoder()
    pools = {
        intent.name: list(intent.examples)
        + [case.text for case in cases if case.intent == intent.name]
        for intent in intents
    }
    vectors = {name: encoder.encode(texts) for name, texts in pools.items()}
    names = list(pools)
    rng = np.random.default_rng(14)
    result: dict[str, dict[str, float]] = {}
    for size in sizes:
        shares: list[float] = []
        for _ in range(draws):
            centroids = []
            held_out: list[tuple[int, np.ndarray]] = []
            for index, name in enumerate(names):
                order = rng.permutation(len(vectors[name]))
                mean = vectors[name][order[:size]].mean(axis=0)
                centroids.append(mean / np.linalg.norm(mean))
                held_out += [(index, vectors[name][i]) for i in order[size:]]
            stacked = np.stack(centroids)
            hits = sum(int(np.argmax(stacked @ vector)) == index for index, vector in held_out)
            shares.append(hits / len(held_out))
        result[str(size)] = {
            "mean": round(float(np.mean(shares)), 4),
            "p10": round(float(np.quantile(shares, 0.1)), 4),
            "p90": round(float(np.quantile(shares, 0.9)), 4),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/results/bot_eval.json"))
    args = parser.parse_args()

    results: dict[str, Any] = {"cpus": os.cpu_count(), "sets": {}}
    results["startup"] = measure_startup(SETS["airline"][0])
    for name, (intents_path, cases_path) in SETS.items():
        intents = load_intent_examples(intents_path)
        matcher = Matcher(intents)
        cases = load_cases(cases_path)
        report = evaluate(matcher, cases)
        results["sets"][name] = {
            "intents": len(matcher.intents),
            "examples_per_intent": sorted({len(i.examples) for i in matcher.intents}),
            "thresholds": {
                "answer": matcher.thresholds.answer,
                "suggest": matcher.thresholds.suggest,
                "margin": matcher.thresholds.margin,
            },
            "report": report.to_dict(),
            "latency": measure_latency(matcher, [c.text for c in cases], args.rounds),
            "ceiling": {
                "ranked_first": round(ranked_first(matcher, cases), 4),
                "random_examples": random_examples(intents, cases, (3, 5, 7), args.draws),
            },
        }

    table = Table(title="FAQ matcher: held-out cases (3 examples per intent)")
    for heading in ("set", "language", "in-domain", "top-1", "answer", "off-topic", "rejected"):
        table.add_column(heading, justify="left" if heading in {"set", "language"} else "right")
    for name, result in results["sets"].items():
        report = result["report"]
        rows = [("all", report), *report["by_language"].items()]
        for language, figures in rows:
            table.add_row(
                name,
                language,
                str(figures["in_domain"]),
                f"{figures['top1_accuracy']:.1%}",
                f"{figures['answer_accuracy']:.1%}",
                str(figures["off_topic"]),
                f"{figures['rejection_rate']:.1%}",
            )
    console = Console(width=120)
    console.print(table)
    latency = Table(title="FAQ matcher: cost")
    for heading in ("measurement", "value"):
        latency.add_column(heading, justify="left" if heading == "measurement" else "right")
    startup = results["startup"]
    latency.add_row("start-up: model load + examples (s)", str(startup["startup_s"]))
    latency.add_row("resident memory added (MiB)", str(startup["rss_increase_mib"]))
    for name, result in results["sets"].items():
        lat = result["latency"]
        latency.add_row(f"{name}: match p50 / p99 (ms)", f"{lat['p50_ms']} / {lat['p99_ms']}")
    console.print(latency)
    ceiling = Table(title="FAQ matcher: the encoder's ceiling (ranked first, no thresholds)")
    for heading in ("set", "configured examples", "random 3", "random 5", "random 7"):
        ceiling.add_column(heading, justify="left" if heading == "set" else "right")
    for name, result in results["sets"].items():
        drawn = result["ceiling"]["random_examples"]
        ceiling.add_row(
            name,
            f"{result['ceiling']['ranked_first']:.1%}",
            *(
                f"{drawn[k]['mean']:.1%} ({drawn[k]['p10']:.0%}-{drawn[k]['p90']:.0%})"
                for k in ("3", "5", "7")
            ),
        )
    console.print(ceiling)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

"""``tresen gateway bot``: the FAQ bot's intents and actions, tried and measured.

``import`` and ``export`` work on the gateway's database (``--data-dir``, ``--config``), with
the gateway's key, whether the gateway runs or not: a running gateway takes an imported file
before the next message. ``match`` and ``eval`` use the intents of the database, or of a bot
file given with ``--intents``.

Exit codes: 0 done, 1 refused (a bad file, a goal missed with ``--min-accuracy``), 2 usage.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from tresen.cli.common import GatewayConfigOption, GatewayDataDirOption, console

if TYPE_CHECKING:
    from tresen.gateway.automation.config import IntentSpec
    from tresen.gateway.automation.store import AutomationStore
    from tresen.gateway.settings import GatewaySettings

__all__ = ["app"]

app = typer.Typer(
    help="The FAQ bot: import and export its intents, try a message, measure it.",
    no_args_is_help=True,
)

T = TypeVar("T")

IntentsFile = Annotated[
    Path | None,
    typer.Option(
        "--intents",
        help="A bot file to take the intents from instead of the gateway's database.",
        exists=True,
        dir_okay=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _settings(config: Path | None, data_dir: Path | None) -> GatewaySettings:
    from tresen.cli.gateway import gateway_settings

    return gateway_settings(config, data_dir=data_dir)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{escape(message)}[/red]")
    return typer.Exit(1)


def _with_store(settings: GatewaySettings, action: Callable[[AutomationStore], Awaitable[T]]) -> T:
    from tresen.core.clock import SystemClock
    from tresen.gateway.automation.config import ConfigError
    from tresen.gateway.automation.store import AutomationStore
    from tresen.gateway.database import gateway_key, open_database

    async def run() -> T:
        db = await open_database(settings)
        try:
            return await action(AutomationStore(db, SystemClock(), gateway_key(settings)))
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except ConfigError as exc:
        raise _fail(exc.message) from None


def _intents(
    intents_file: Path | None, config: Path | None, data_dir: Path | None
) -> list[IntentSpec]:
    from tresen.gateway.automation.config import ConfigError, parse_bot_file

    if intents_file is not None:
        try:
            return [i for i in parse_bot_file(intents_file.read_bytes()).intents if i.enabled]
        except ConfigError as exc:
            raise _fail(f"{intents_file}: {exc.message}") from None

    async def stored(store: AutomationStore) -> list[IntentSpec]:
        return [i for i in await store.intents() if i.enabled]

    found = _with_store(_settings(config, data_dir), stored)
    if not found:
        raise _fail("the bot has no intents: import a bot file first (tresen gateway bot import)")
    return found


def _matcher(intents: list[IntentSpec]) -> object:
    from tresen.gateway.automation.matcher import IntentExamples, Matcher

    return Matcher([IntentExamples(i.name, i.examples) for i in intents])


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The bot file (YAML).")],
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
) -> None:
    """Replace the bot's intents and actions (and settings, if the file has them) with a
    file's; a refused file changes nothing."""
    from tresen.gateway.automation.config import ConfigError, parse_bot_file

    try:
        bot = parse_bot_file(file.read_bytes())
    except ConfigError as exc:
        raise _fail(f"{file}: {exc.message}") from None

    async def run(store: AutomationStore) -> None:
        await store.import_config(bot)

    _with_store(_settings(config, data_dir), run)
    settings = " and the settings" if bot.settings is not None else ""
    console.print(f"Imported {len(bot.intents)} intents and {len(bot.actions)} actions{settings}.")


@app.command("export")
def export(
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    with_headers: Annotated[
        bool, typer.Option("--with-headers", help="Include the actions' header values (secrets).")
    ] = False,
) -> None:
    """Print the bot's settings, intents and actions as a bot file (YAML)."""
    import yaml

    async def run(store: AutomationStore) -> dict[str, object]:
        return (await store.export_config(with_headers=with_headers)).to_json()

    data = _with_store(_settings(config, data_dir), run)
    sys.stdout.write(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


@app.command("match")
def match(
    text: Annotated[str, typer.Argument(help="A customer's message.")],
    intents_file: IntentsFile = None,
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    as_json: AsJson = False,
) -> None:
    """What the bot makes of a message: the decision, the intent, its score, the alternatives."""
    from tresen.gateway.automation.matcher import Matcher

    matcher = _matcher(_intents(intents_file, config, data_dir))
    assert isinstance(matcher, Matcher)
    found = matcher.match(text)
    if as_json:
        out = {
            "decision": str(found.decision),
            "intent": found.intent,
            "score": round(found.score, 4),
            "alternatives": [{"intent": n, "score": round(s, 4)} for n, s in found.alternatives],
            "language": found.language,
            "reason": found.reason,
        }
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        return
    console.print(
        f"[bold]{found.decision}[/bold] {escape(found.intent or '-')} "
        f"({found.score:.2f}, language {found.language})"
        + (f" - {escape(found.reason)}" if found.reason else "")
    )
    if found.alternatives:
        table = Table("alternative", "score")
        for name, score in found.alternatives:
            table.add_row(escape(name), f"{score:.2f}")
        console.print(table)


@app.command("eval")
def evaluate(
    cases: Annotated[
        Path,
        typer.Option(
            "--cases", exists=True, dir_okay=False, help="YAML list of {text, intent or null}."
        ),
    ],
    intents_file: IntentsFile = None,
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    as_json: AsJson = False,
) -> None:
    """Top-1 accuracy on the cases that name an intent, and how many off-topic cases (intent
    null) the bot leaves unanswered."""
    from tresen.gateway.automation.evaluation import evaluate as run_evaluation
    from tresen.gateway.automation.evaluation import load_cases
    from tresen.gateway.automation.matcher import Matcher

    matcher = _matcher(_intents(intents_file, config, data_dir))
    assert isinstance(matcher, Matcher)
    try:
        loaded = load_cases(cases)
    except ValueError as exc:
        raise _fail(f"{cases}: {exc}") from None
    report = run_evaluation(matcher, loaded)
    if as_json:
        sys.stdout.write(report.to_json() + "\n")
        return
    table = Table("cases", "in domain", "top-1 accuracy", "answered right", "off-topic", "rejected")
    slices = [("all", report.overall), *sorted(report.by_language.items())]
    for name, figures in slices:
        table.add_row(
            name,
            str(figures.in_domain),
            f"{figures.top1_accuracy:.1%}",
            f"{figures.answer_accuracy:.1%}",
            str(figures.off_topic),
            f"{figures.rejection_rate:.1%}",
        )
    console.print(table)
    for miss in report.misses:
        console.print(
            f"  missed: {escape(miss.text)!r} expected {miss.expected or 'none'}, "
            f"got {miss.decision} {miss.got or '-'} ({miss.score:.2f})"
        )

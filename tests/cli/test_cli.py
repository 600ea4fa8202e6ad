"""The ``tresen`` command as an operator uses it."""

from __future__ import annotations

from pathlib import Path

import click
import typer
from typer.testing import CliRunner

from tresen.cli.main import COMMANDS, app

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "up" in result.output
    assert "relay" in result.output


def test_migrate_creates_and_then_keeps_the_schema(tmp_path: Path) -> None:
    first = runner.invoke(app, ["relay", "migrate", "--data-dir", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert "at revision 0010 (was empty)" in first.output
    assert (tmp_path / "relay.db").exists()
    again = runner.invoke(app, ["relay", "migrate", "--data-dir", str(tmp_path)])
    assert "at revision 0010 (was 0010)" in again.output


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["relay", "migrate", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "configuration" in result.output


def test_the_help_lists_each_command_with_its_own_summary() -> None:
    """The summaries in ``tresen --help`` come from a table (the modules stay unloaded): each
    must say what the command's own help says."""
    group = typer.main.get_command(app)
    with click.Context(group) as ctx:
        for name, (_module, _attribute, summary) in COMMANDS.items():
            command = group.get_command(ctx, name)
            assert command is not None
            assert " ".join((command.help or "").split()) == summary, name

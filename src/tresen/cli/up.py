"""``tresen up``: the whole platform on the embedded SQLite default, in one process."""

from __future__ import annotations

from typing import Annotated

import typer

from tresen.cli.common import ConfigOption, DataDirOption, console, make_settings, serve_app

__all__ = ["up"]


def up(
    data_dir: DataDirOption = None,
    port: Annotated[int | None, typer.Option("--port", help="Relay port.")] = None,
    config: ConfigOption = None,
) -> None:
    """Run a relay on SQLite in a local data folder and print how to reach it."""
    from tresen.relay.app import build_app

    settings = make_settings(config, data_dir=data_dir, port=port)
    relay_app = build_app(settings)

    def started(url: str) -> None:
        console.rule("Tresen is up")
        console.print(f"Relay:      {url}   (API docs: {url}/docs)")
        console.print(f"WebSocket:  {url.replace('http', 'ws', 1)}/v1/ws")
        console.print(f"Data:       {settings.data_dir.resolve()}")
        console.print(f"Database:   {settings.resolved_database_url}")
        console.print(
            "Register:   curl -X POST "
            f"{url}/v1/registration/code -H 'content-type: application/json' "
            '-d \'{"phone": "+4915112345678"}\'   (the code is printed in this log)',
            soft_wrap=True,
        )
        console.print("Stop with Ctrl+C.")

    serve_app(relay_app, settings, started)

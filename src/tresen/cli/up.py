"""``tresen up``: the whole platform on the embedded SQLite default, in one process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer

from tresen.cli.common import ConfigOption, DataDirOption, console, make_settings, serve_app

__all__ = ["up"]


def up(
    data_dir: DataDirOption = None,
    port: Annotated[int | None, typer.Option("--port", help="Relay port.")] = None,
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="Run the verified demo business.")
    ] = True,
    config: ConfigOption = None,
) -> None:
    """Run a relay on SQLite in a local data folder, with a verified demo business, and print
    how to reach both."""
    from tresen.demo import CodeCatcher
    from tresen.relay.app import build_app, context_of
    from tresen.relay.context import default_sms_sender

    settings = make_settings(config, data_dir=data_dir, port=port)
    codes = CodeCatcher(default_sms_sender(settings))
    relay_app = build_app(settings, sms=codes)
    ctx = context_of(relay_app)

    def started(url: str) -> None:
        console.rule("Tresen is up")
        console.print(f"Relay:      {url}   (API docs: {url}/docs)")
        console.print(f"WebSocket:  {url.replace('http', 'ws', 1)}/v1/ws")
        console.print(f"Data:       {settings.data_dir.resolve()}")
        console.print(f"Database:   {settings.resolved_database_url}")
        console.print(
            "Chat:       tresen chat --relay "
            f"{url} --data-dir ./alice   (register with any +49… number; the code is printed "
            "in this log)",
            soft_wrap=True,
        )

    @asynccontextmanager
    async def demo_business(url: str) -> AsyncIterator[None]:
        from tresen.client.api import RelayError
        from tresen.demo import start_demo_business

        published = await ctx.operator.published_keys()
        console.print(f"Operator:   key fingerprint {published.fingerprint}", soft_wrap=True)
        console.print("            (clients show it at registration: compare the two)")
        if not demo:
            console.print("Stop with Ctrl+C.")
            yield
            return
        try:
            business = await start_demo_business(
                ctx, url, settings.data_dir / "demo-airline", codes
            )
        except (RelayError, OSError, TimeoutError) as exc:
            console.print(f"[yellow]The demo business did not start:[/yellow] {exc}")
            console.print("Stop with Ctrl+C.")
            yield
            return
        console.print(
            f"Demo:       {business.display_name} ✓ (verified airline) at {business.phone}; "
            f"find it with `tresen chat businesses air` or /find air in the chat app, "
            f"then write to {business.phone} (try FLIGHT or HOURS)",
            soft_wrap=True,
        )
        console.print("Stop with Ctrl+C.")
        try:
            yield
        finally:
            await business.close()

    serve_app(relay_app, settings, started, alongside=demo_business)

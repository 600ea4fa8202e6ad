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
    gateway_port: Annotated[
        int, typer.Option("--gateway-port", help="Port of the demo business's gateway.")
    ] = 8480,
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="Run the verified demo business.")
    ] = True,
    config: ConfigOption = None,
) -> None:
    """Run a relay on SQLite in a local data folder, with a verified demo business, and print
    how to reach both."""
    from tresen.demo import CodeCatcher
    from tresen.relay.app import build_app, context_of
    from tresen.relay.context import ConsoleSmsRefused, default_sms_sender
    from tresen.relay.webapp.files import BUNDLED_DIST, is_built

    settings = make_settings(config, data_dir=data_dir, port=port)
    try:
        codes = CodeCatcher(default_sms_sender(settings))
    except ConsoleSmsRefused as exc:
        console.print(f"[red]configuration error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    relay_app = build_app(settings, sms=codes)
    ctx = context_of(relay_app)

    def started(url: str) -> None:
        console.rule("Tresen is up")
        console.print(f"Relay:      {url}   (API docs: {url}/docs)")
        console.print(f"WebSocket:  {url.replace('http', 'ws', 1)}/v1/ws")
        webapp = f"Web app:    {url}/app/"
        if not is_built(settings.webapp_dir or BUNDLED_DIST):
            webapp += "   (not built: run make web)"
        console.print(webapp, soft_wrap=True)
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
        from tresen.demo import start_demo_business, start_demo_gateway

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
        try:
            gateway = await start_demo_gateway(
                ctx, url, settings.data_dir / "demo-gateway", codes, business, gateway_port
            )
        except (RelayError, OSError, TimeoutError, typer.Exit) as exc:
            console.print(f"[yellow]The demo gateway did not start:[/yellow] {exc}")
            gateway = None
        if gateway is not None:
            console.print(
                f"Gateway:    {gateway.api_base}/{gateway.phone_number_id}/messages   "
                f"(Cloud API of {business.display_name}; docs: {gateway.url}/docs)",
                soft_wrap=True,
            )
            console.print(f"API token:  {gateway.token}", soft_wrap=True)
            console.print(
                f"Inbox:      {gateway.url}/inbox   (sign in as {gateway.inbox_user}, password "
                f"{gateway.inbox_password})",
                soft_wrap=True,
            )
            console.print(
                f"            phone_number_id {gateway.phone_number_id}, waba_id "
                f"{gateway.waba_id}; webhooks: tresen gateway webhooks add URL --data-dir "
                f"{settings.data_dir / 'demo-gateway'} …",
                soft_wrap=True,
            )
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
            if gateway is not None:
                await gateway.close()
            await business.close()

    serve_app(relay_app, settings, started, alongside=demo_business)

"""Options and helpers shared by the ``tresen`` subcommands."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tresen.core.logging import configure_logging
from tresen.core.settings import Settings, load_settings

__all__ = [
    "ConfigOption",
    "DataDirOption",
    "DatabaseUrlOption",
    "GatewayUrlOption",
    "console",
    "format_time",
    "make_settings",
    "raise_open_files_limit",
    "serve_app",
    "start_server",
]

console = Console(stderr=False, highlight=False)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (also TRESEN_CONFIG).", dir_okay=False),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder for the SQLite database and files.")
]
GatewayUrlOption = Annotated[
    str,
    typer.Option(
        "--url", envvar="TRESEN_GATEWAY_URL", help="The gateway, e.g. http://127.0.0.1:8480."
    ),
]
"""A running gateway, for the commands that use its inbox API with a personal token."""
GatewayDataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="The gateway's folder (device keys, SQLite database)."),
]
GatewayConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML settings file (also TRESEN_GATEWAY_CONFIG).", dir_okay=False
    ),
]
ArchiveOption = Annotated[
    Path, typer.Option("--to", help="The archive to write (.tar, or .tar.gz to compress).")
]
RestoreFromOption = Annotated[
    Path, typer.Option("--from", help="An archive written by `backup` of the same server.")
]
WithKeyOption = Annotated[
    bool,
    typer.Option(
        "--with-key",
        help="Put the key file that protects the stored secrets into the archive too (keep "
        "such an archive as secret as the key).",
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Replace what the database and data folder hold.")
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL, e.g. postgresql+asyncpg://user@host/db (default: SQLite in the "
        "data folder).",
    ),
]


def format_time(ms: int | None) -> str:
    """A time for listings: ``2026-11-21 14:05 UTC``, or a dash for none."""
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def make_settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        settings = load_settings(config, **overrides)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    return settings


async def start_server(
    app: Any,
    host: str,
    port: int,
    *,
    ws_max_size: int = 2 * 1_048_576,
    head_timeout_s: float = 10.0,
    max_head_bytes: int = 16 * 1024,
) -> tuple[Any, asyncio.Task[None], str]:
    """Start uvicorn serving ``app`` in this event loop: the server, its task and base URL.

    Raises ``typer.Exit(1)`` when it cannot start (the port is taken, say).
    """
    # uvicorn is loaded by the commands that serve, not by every command that shares these helpers.
    import uvicorn

    from tresen.cli.http_head import bounded_head_protocol
    from tresen.cli.ws_flow import FramesProtocol

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        # The relay trusts forwarding headers only from its own `trusted_proxies` setting.
        proxy_headers=False,
        # The sans-I/O implementation keeps pings on timers and reads a socket only while the
        # application takes its messages: an idle WebSocket costs no task and no buffered
        # frames (bench/connections.py). It stops reading once a few frames wait, and reads
        # and writes binary frames itself (ws_flow.py).
        ws=FramesProtocol,
        ws_max_size=ws_max_size,
        # Frames carry ciphertext, which does not compress: deflate would only cost CPU.
        ws_per_message_deflate=False,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        # Slow or idle clients hold sockets, not memory: an idle keep-alive connection is
        # closed after 5 s, a request head must arrive within head_timeout_s and
        # max_head_bytes, and a WebSocket's reading pauses as soon as a few received frames
        # wait for the relay. Bodies have their own timeout (limits.body_read_timeout_s,
        # relay/http.py).
        http=bounded_head_protocol(head_timeout_s, max_head_bytes),
        timeout_keep_alive=5,
        # Streamed responses (the inbox's live pages) never end by themselves: stopping
        # waits this long for them, then ends them.
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            break
        await asyncio.sleep(0.05)
    if not server.started:
        await task
        raise typer.Exit(1)
    sockets = [s for srv in server.servers for s in srv.sockets]
    bound = sockets[0].getsockname()[1] if sockets else port
    return server, task, f"http://{host}:{bound}"


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; returns the limit.

    Every connection holds a file descriptor, and the usual soft limit (1024) would cap a
    server at about a thousand devices whatever its memory.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


GC_YOUNG_THRESHOLD = 10_000
"""Allocations between two collections of the youngest generation (Python's default: 700)."""


def settle_garbage_collector() -> None:
    """Tune Python's cyclic garbage collector for a server whose start-up is done.

    What start-up built (modules, the app, SQLAlchemy's tables and compiled statements, the
    engines) lives as long as the process: ``gc.freeze()`` moves it out of the collector's
    sight, so a full collection no longer walks it. And a server allocates far more than 700
    objects between two of its requests' ends: the youngest generation is collected every
    10,000 allocations instead. In a run of the relay's throughput bench this took the
    collector's time from 0.56 s to 0.10 s, and its longest pauses (full collections of
    ~25 ms) away (docs/benchmarks.md, "Third round").
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def serve_app(
    app: Any,
    settings: Settings,
    on_started: Callable[[str], None] | None = None,
    *,
    alongside: Callable[[str], AbstractAsyncContextManager[None]] | None = None,
) -> None:
    """Run ``app`` with uvicorn until interrupted; ``on_started`` gets the base URL.

    ``alongside(url)`` is entered once the server is up and left when it stops: what runs
    next to the server (``tresen up``'s demo business).
    """

    raise_open_files_limit()

    async def main() -> None:
        server, task, url = await start_server(
            app,
            settings.host,
            settings.port,
            ws_max_size=settings.limits.max_frame_bytes * 2,
            head_timeout_s=settings.limits.head_read_timeout_s,
            max_head_bytes=settings.limits.max_head_bytes,
        )
        if on_started is not None:
            on_started(url)
        settle_garbage_collector()
        if alongside is None:
            await task
            return
        try:
            async with alongside(url):
                await asyncio.shield(task)
        except BaseException:
            server.should_exit = True
            await task
            raise

    asyncio.run(main())

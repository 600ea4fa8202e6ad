"""``tresen relay serve --nodes N``: several relay nodes on this machine, for development.

Each node is a ``tresen relay serve`` child process on its own port (the given one, then the
next ones), all on the same PostgreSQL database and NATS server. The first node starts alone
(it applies the migrations and makes the operator's key the others read); the others follow
once it answers. Stopping this command (Ctrl-C, SIGTERM) stops them all; a node that exits
stops the rest. In production each node is its own service behind a load balancer
(docs/operations.md, "Several relay nodes").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx
import typer

from tresen.cli.common import console
from tresen.core.settings import Settings

__all__ = ["serve_nodes"]

START_WITHIN_S = 60.0


def serve_nodes(settings: Settings, nodes: int, *, config: Path | None, migrate: bool) -> None:
    if not settings.cluster.nats_url:
        console.print("[red]several nodes need a NATS server:[/red] --nats nats://127.0.0.1:4222")
        raise typer.Exit(2)
    if not settings.resolved_database_url.startswith("postgresql"):
        console.print("[red]several nodes share one PostgreSQL database:[/red] --database-url")
        raise typer.Exit(2)
    if settings.port == 0:
        console.print("[red]several nodes need a fixed first port:[/red] --port 8470")
        raise typer.Exit(2)
    env = {
        **os.environ,
        "TRESEN_CLUSTER__NATS_URL": settings.cluster.nats_url,
        "TRESEN_CLUSTER__SUBJECT": settings.cluster.subject,
        "TRESEN_DATABASE_URL": settings.resolved_database_url,
        "TRESEN_DATA_DIR": str(settings.data_dir),
    }
    if settings.database_schema:
        env["TRESEN_DATABASE_SCHEMA"] = settings.database_schema
    if config is not None:
        env["TRESEN_CONFIG"] = str(config)
    children: list[subprocess.Popen[bytes]] = []

    def stop(_signum: int = 0, _frame: FrameType | None = None) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()

    def terminated(signum: int, frame: FrameType | None) -> None:
        stop(signum, frame)
        sys.exit(0)

    signal.signal(signal.SIGTERM, terminated)
    try:
        for i in range(nodes):
            port = settings.port + i
            command = [sys.executable, "-m", "tresen", "relay", "serve"]
            command += ["--host", settings.host, "--port", str(port)]
            if i > 0 or not migrate:
                command.append("--no-migrate")
            # The command is this interpreter running Tresen itself, with our own arguments.
            node_env = {**env, "TRESEN_CLUSTER__NODE_ID": f"node{i}"}
            child = subprocess.Popen(command, env=node_env)  # noqa: S603
            children.append(child)
            _wait_healthy(child, f"http://{settings.host}:{port}")
        console.print(f"{nodes} relay nodes running; Ctrl-C stops them all", soft_wrap=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        gone = next(child for child in children if child.poll() is not None)
        console.print(f"[red]a relay node stopped (exit {gone.returncode}); stopping the rest")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def _wait_healthy(child: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + START_WITHIN_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            console.print(f"[red]relay node at {url} did not start (exit {child.returncode})")
            raise typer.Exit(1)
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    console.print(f"[red]relay node at {url} did not answer within {START_WITHIN_S:.0f} s")
    raise typer.Exit(1)

"""Structured logging (structlog) for every Tresen process.

Relay logs carry ids, sizes and codes as bound context; never message content.

``json`` (for production) writes one JSON object per line to stderr: ``timestamp`` (ISO 8601,
UTC), ``level``, ``logger`` (the component: ``tresen.relay.ws``, ``uvicorn.error``), ``event``
(a fixed text), the bound context, and ``exception`` (a traceback) where there is one. Lines
of libraries that log through the standard library (uvicorn, asyncio, SQLAlchemy) are
written the same way, so a log collector reads one format. ``console`` is for people.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

__all__ = ["configure_logging", "get_logger"]


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing, not at configuration."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _NamedPrintLogger(structlog.PrintLogger):
    """A print logger that knows its name (the ``logger`` field)."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedPrintLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(self._file, str(args[0]) if args else "tresen")


def configure_logging(
    level: str = "info",
    fmt: Literal["console", "json"] = "console",
    stream: TextIO | None = None,
) -> None:
    numeric = logging.getLevelName(level.upper())
    out: TextIO = stream if stream is not None else _CurrentStderr()  # type: ignore[assignment]
    shared: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        *shared,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_NamedPrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    if fmt == "json":
        handler = logging.StreamHandler(out)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
            )
        )
        logging.basicConfig(level=numeric, handlers=[handler], force=True)
    else:
        logging.basicConfig(
            level=numeric, stream=out, format="%(levelname)s %(name)s %(message)s", force=True
        )
    # Migration chatter is noise at info level; what was applied is reported by the caller.
    logging.getLogger("alembic").setLevel(max(numeric, logging.WARNING))
    # One line per HTTP call of an in-process client (the demo business) is noise.
    logging.getLogger("httpx").setLevel(max(numeric, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]

"""Readiness: may this process be sent traffic now? (``/v1/ready`` of the relay, ``/ready`` of
the gateway.)

Liveness (``/v1/health``, ``/health``) answers without I/O: the process runs. Readiness asks
what serving needs, each check bounded by a short timeout so that a hanging database makes the
answer "not ready" rather than no answer: a load balancer then sends the traffic elsewhere,
and a container's health check sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import text

from tresen.core.db import Database

__all__ = [
    "CHECK_TIMEOUT_S",
    "NotReady",
    "Probe",
    "ReadyPublic",
    "database_probe",
    "readiness",
    "schema_probe",
]

CHECK_TIMEOUT_S = 2.0

Probe = Callable[[], Awaitable[None]]
"""Returns when its part is ready; raises :class:`NotReady` (or anything) when not."""


class NotReady(Exception):
    """A part is not ready; the message says why (for operators: no personal data)."""


class ReadyPublic(BaseModel):
    """What is ready: every check is ``ok``, or says why not."""

    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(
        description="each check (database, schema, and more where configured): ok, or why not",
        examples=[{"database": "ok", "schema": "ok"}],
    )


def database_probe(db: Database) -> Probe:
    async def probe() -> None:
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))

    return probe


def schema_probe(
    db: Database, current: Callable[[Database], Awaitable[str | None]], head: str | None
) -> Probe:
    """Ready when the database's schema is the one this version of the code expects."""

    async def probe() -> None:
        found = await current(db)
        if found != head:
            raise NotReady(f"schema at revision {found}, this version needs {head}")

    return probe


async def readiness(
    probes: Mapping[str, Probe],
    *,
    needs: Mapping[str, str] | None = None,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> ReadyPublic:
    """Run ``probes`` in order; a probe whose ``needs`` (the schema needs the database) was
    not ok is reported as not checked."""
    needs = needs or {}
    checks: dict[str, str] = {}
    for name, probe in probes.items():
        needed = needs.get(name)
        if needed is not None and checks.get(needed) != "ok":
            checks[name] = "not checked"
            continue
        try:
            async with asyncio.timeout(timeout_s):
                await probe()
        except NotReady as exc:
            checks[name] = str(exc)
        except TimeoutError:
            checks[name] = f"no answer within {timeout_s:g} s"
        except Exception as exc:
            # Only the kind: a driver's message can quote values.
            checks[name] = f"failed ({type(exc).__name__})"
        else:
            checks[name] = "ok"
    ready = all(result == "ok" for result in checks.values())
    return ReadyPublic(status="ready" if ready else "not ready", checks=checks)

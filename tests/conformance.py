"""API conformance with schemathesis: every operation of an OpenAPI document, called with
generated input against a running server, must answer as the document says.

Reusable for any of our FastAPI apps (relay, gateway): load the app's ``/openapi.json``, serve
the app (``support.serve_asgi``), and call ``run_conformance`` from a worker thread
(``asyncio.to_thread``), since schemathesis makes blocking requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import hypothesis.errors
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

__all__ = ["CHECKS", "ConformanceReport", "run_conformance"]

# Resumable uploads (the relay's attachments, as in tus) send raw bytes under their own type.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@dataclass
class ConformanceReport:
    operations: int = 0
    calls: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def run_conformance(
    raw_schema: dict[str, Any],
    base_url: str,
    *,
    headers_for: Callable[[Any], dict[str, str]],
    max_examples: int = 15,
    skip: Iterable[str] = (),
    last: Iterable[str] = (),
) -> ConformanceReport:
    """Call every operation of ``raw_schema`` (but those labelled in ``skip``, e.g.
    ``"POST /v1/messages"``) with ``max_examples`` generated requests, positive and negative,
    and run the response checks on each answer. Operations labelled in ``last`` run after the
    others (e.g. one that removes the caller's own device).

    Each failing operation adds one line to ``failures``; the run goes on."""
    schema = schemathesis.openapi.from_dict(raw_schema)
    skipped, deferred = set(skip), list(last)
    operations = [op.ok() for op in schema.get_all_operations()]
    operations = [op for op in operations if op.label not in skipped]
    operations.sort(key=lambda op: deferred.index(op.label) if op.label in deferred else -1)
    report = ConformanceReport()
    session = requests.Session()
    for operation in operations:
        report.operations += 1
        try:
            _exercise(operation, base_url, session, headers_for(operation), max_examples, report)
        except hypothesis.errors.FlakyFailure:
            # An answer that changed when Hypothesis replayed the same request (a rate limit
            # refilled meanwhile, say): the operation is run once more, and a failure then
            # is a failure.
            try:
                _exercise(
                    operation, base_url, session, headers_for(operation), max_examples, report
                )
            except (Exception, BaseExceptionGroup) as exc:
                report.failures.append(f"{operation.label}: {exc}")
        except (Exception, BaseExceptionGroup) as exc:
            report.failures.append(f"{operation.label}: {exc}")
    session.close()
    return report


def _exercise(
    operation: Any,
    base_url: str,
    session: requests.Session,
    headers: dict[str, str],
    max_examples: int,
    report: ConformanceReport,
) -> None:
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE
    )

    @given(case=strategy)
    @hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        response = case.call_and_validate(
            base_url=base_url, session=session, headers=headers, checks=CHECKS
        )
        report.calls += 1
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1

    call()

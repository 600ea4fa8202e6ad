"""``python -m tresen`` that counts its SQL statements and group-commit batches.

For the relay benches, which start the relay as ``python $BENCH_RELAY_CMD relay serve ...``:
every statement SQLAlchemy sends and every statement run on the driver itself
(``tresen.core.db.DriverStatement``, ``driver_insert``), by its first 70 characters, and
the size of every group commit are counted and written as JSON to ``$STATEMENT_COUNT_OUT``
twice a second.

    BENCH_RELAY_CMD=bench/statement_count.py STATEMENT_COUNT_OUT=/tmp/statements.json \\
        .venv/bin/python bench/relay_throughput.py --backends sqlite --pairs 32 --messages 300
"""

from __future__ import annotations

import json
import os
import re
import runpy
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

import tresen.core.db
from tresen.core.batching import GroupCommitter

statements: Counter[str] = Counter()
batches: list[int] = []


@event.listens_for(Engine, "before_cursor_execute")
def _count(
    _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
) -> None:
    statements[re.sub(r"\s+", " ", statement).strip()[:70]] += 1


_driver_run = tresen.core.db._driver_run


async def _counted_driver_run(conn: Any, sql: str, params: Any, *, many: bool) -> Any:
    statements[re.sub(r"\s+", " ", sql).strip()[:70]] += 1
    return await _driver_run(conn, sql, params, many=many)


_apply = GroupCommitter._apply


async def _counted_apply(self: GroupCommitter[Any, Any], batch: Sequence[Any]) -> None:
    batches.append(len(batch))
    await _apply(self, batch)  # type: ignore[arg-type]


def _write(out: Path) -> None:
    while True:
        time.sleep(0.5)
        counts = {
            "batches": len(batches),
            "operations": sum(batches),
            "statements": dict(statements.most_common()),
        }
        out.write_text(json.dumps(counts, indent=1) + "\n")


def main() -> None:
    GroupCommitter._apply = _counted_apply  # type: ignore[assignment,method-assign]
    tresen.core.db._driver_run = _counted_driver_run
    out = Path(os.environ.get("STATEMENT_COUNT_OUT", "statements.json"))
    threading.Thread(target=_write, args=(out,), daemon=True).start()
    sys.argv = ["tresen", *sys.argv[1:]]
    runpy.run_module("tresen", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

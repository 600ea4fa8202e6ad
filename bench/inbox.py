"""The team inbox: the conversation list and search under a large history, and live updates.

A gateway's database is seeded directly through SQL, in bulk, with ``--conversations``
customers and ``--messages`` messages (German and English, every kind the inbox shows, both
directions, statuses, labels and assignments to 20 agents). Then the real gateway app
(``build_gateway_app``, its device registered at a ``tresen relay serve`` in a child process)
answers an agent signed in through the inbox's own pages, in process over httpx's ASGI
transport, so that the time measured is the server's: no sockets, no other clients.

list: ``GET /inbox``, the first page (50) of the open conversations, ``--requests`` times.
search: ``GET /inbox/search?q=…`` over all messages, a mix of common, rare, prefix, two-word
and absent words, ``--requests`` times in all.
live: ``bench/inbox_live.py``'s ``measure_live`` (relay and gateway in child processes of
their own, on a fresh database): from a customer's send to its event on each of
``--live-agents`` agents' open inbox pages, while ``--live-rate`` messages a second arrive
for ``--live-seconds``. The "requests" column then counts events arrived of those expected.

    .venv/bin/python bench/inbox.py --backends sqlite postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

PG_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"
BUSINESS_PHONE = "+4930555099100"
PASSWORD = "Korrekt Pferd Batterie"
AGENTS = 20
LABELS = ["refund", "vip", "lieferung", "beschwerde", "umbuchung", "gepaeck", "b2b", "spam"]

FIRST = [
    "Anna",
    "Ben",
    "Cem",
    "Doris",
    "Emil",
    "Fatma",
    "Greta",
    "Hugo",
    "Ida",
    "Jonas",
    "Klara",
    "Luis",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
    "Quentin",
    "Rosa",
    "Sven",
    "Tina",
    "Uwe",
    "Vera",
    "Wim",
    "Xenia",
    "Yusuf",
    "Zoe",
    "Emma",
    "Liam",
    "Olivia",
    "James",
]
LAST = [
    "Schmidt",
    "Müller",
    "Weiß",
    "Yilmaz",
    "Kowalski",
    "Smith",
    "Jones",
    "Becker",
    "Schäfer",
    "Groß",
    "Nguyen",
    "García",
    "Rossi",
    "Hoffmann",
    "Brown",
    "Köhler",
]
CITIES = [
    "Köln",
    "München",
    "Düsseldorf",
    "Berlin",
    "Hamburg",
    "London",
    "Amsterdam",
    "Zürich",
    "Wien",
    "Frankfurt",
    "Paris",
    "Málaga",
]
INBOUND = [
    "Hallo, wo bleibt mein Paket {n}?",
    "Mein Flug {f} nach {c} ist verspätet, was nun?",
    "Können Sie meine Buchung {n} auf Freitag umbuchen?",
    "Ich habe die Rechnung {n} noch nicht bekommen.",
    "Danke für die schnelle Hilfe! Viele Grüße, {p}",
    "Die Lieferung nach {c} ist beschädigt angekommen.",
    "Ich möchte eine Rückerstattung für Bestellung {n}.",
    "Wann öffnen Sie morgen? Ich bin in {c}.",
    "Mein Koffer ist in {c} nicht angekommen.",
    "Gibt es noch Plätze im Flug {f}?",
    "Hi, my parcel {n} has not arrived yet.",
    "Could you change my booking {n} to Monday?",
    "My flight {f} to {c} was cancelled, please help.",
    "Where is my refund for order {n}?",
    "Thanks a lot, have a great day!",
    "Is the shop in {c} open on Sunday?",
    "Ich warte seit einer Stunde in der Hotline, bitte melden Sie sich.",
    "Die Übergabe am Gate in {c} hat nicht geklappt.",
    "Kann ich mit Kreditkarte bezahlen?",
    "Ja",
    "Nein, danke.",
    "Ok 👍",
]
OUTBOUND = [
    "Guten Tag {p}, Ihr Paket {n} ist unterwegs und kommt morgen.",
    "Es tut uns leid, Flug {f} ist leider verspätet. Neue Abflugzeit: 14:35.",
    "Ihre Buchung {n} wurde umgebucht. Gute Reise nach {c}!",
    "Die Rückerstattung für Bestellung {n} ist veranlasst.",
    "Wir sind Mo bis Fr von 9 bis 17 Uhr für Sie da.",
    "Hello {p}, your parcel {n} is on its way.",
    "We have rebooked you on flight {f} to {c}.",
    "Your refund for order {n} has been issued.",
    "Könnten Sie uns bitte ein Foto des Schadens schicken?",
    "Vielen Dank für Ihre Geduld. Herzliche Grüße aus {c}",
]
BUTTONS = ["Ja, bitte", "Nein danke", "Später erinnern", "Yes please", "Talk to an agent"]
TEMPLATES = ["order_shipped", "flight_delayed", "payment_reminder", "booking_confirmation"]
QUERIES = [
    "Paket",
    "verspätet",
    "verspät",
    "Rückerstattung",
    "refund",
    "Köln",
    "grüße",
    "Koffer nicht",
    "parcel",
    "umbuch",
    "booking Monday",
    "Übergabe",
    "Kreditkarte",
    "flight_delayed",
    "Hotline",
    "Málaga",
    "12345",
    "LH 4",
    "beschädigt",
    "Fahrrad",
    "Gate",
    "danke",
    "Später",
    "zürich",
    "shop sunday",
    "Rechnung",
    "order",
    "xyzzy",
]


# --- seeding -----------------------------------------------------------------------------------


def message_of(
    rng: random.Random, incoming: bool, name: str
) -> tuple[str, dict[str, Any], str | None]:
    """A message's Cloud API ``type``, object and template name."""
    values = {
        "n": str(rng.randint(10_000, 99_999)),
        "f": f"LH {rng.randint(100, 9999)}",
        "c": rng.choice(CITIES),
        "p": name.split()[0],
    }
    roll = rng.random()
    if incoming:
        if roll < 0.04:
            title = rng.choice(BUTTONS)
            return (
                "interactive",
                {"type": "button_reply", "button_reply": {"id": "b", "title": title}},
                None,
            )
        if roll < 0.07:
            return "button", {"payload": "p", "text": rng.choice(BUTTONS)}, None
        if roll < 0.09:
            return "reaction", {"message_id": "wamid.x", "emoji": "👍"}, None
        return "text", {"body": rng.choice(INBOUND).format(**values)}, None
    if roll < 0.08:
        name_ = rng.choice(TEMPLATES)
        return "template", {"name": name_, "language": {"code": "de"}}, name_
    if roll < 0.12:
        body = {"text": "Wie dürfen wir Ihnen helfen?"}
        return "interactive", {"type": "button", "body": body, "action": {"buttons": []}}, None
    return "text", {"body": rng.choice(OUTBOUND).format(**values)}, None


async def seed(db: Any, conversations: int, total: int, now_ms: int) -> None:
    from sqlalchemy import insert

    from tresen.gateway.schema import (
        contacts,
        conversation_labels,
        labels,
        messages,
    )
    from tresen.gateway.schema import (
        conversations as conversations_table,
    )

    rng = random.Random(13)
    day = 24 * 3600 * 1000
    people = []
    for i in range(conversations):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        people.append(
            {
                "account_id": f"{i:032x}",
                "phone": f"+49151{i:08d}",
                "wa_id": f"49151{i:08d}",
                "user_id": f"DE.{i:012d}",
                "profile_name": name,
                "last_inbound_ms": None,
                "created_ms": now_ms - 90 * day,
            }
        )
    # Some customers write a lot, most a little: weights from a long-tailed distribution.
    weights = [rng.paretovariate(1.5) for _ in range(conversations)]
    owners = rng.choices(range(conversations), weights=weights, k=total - conversations)
    owners += list(range(conversations))  # everyone wrote at least once
    times = sorted(now_ms - int(rng.random() ** 2 * 90 * day) for _ in owners)
    rng.shuffle(owners)
    rows = []
    for n, (owner, at) in enumerate(zip(owners, times, strict=True)):
        person = people[owner]
        incoming = rng.random() < 0.55
        kind, content, template = message_of(rng, incoming, person["profile_name"])
        if incoming:
            person["last_inbound_ms"] = max(person["last_inbound_ms"] or 0, at)
            status = "read" if rng.random() < 0.8 else "received"
        else:
            status = rng.choice(["sent", "delivered", "read", "read", "read", "failed"])
        rows.append(
            {
                "wamid": f"wamid.bench{n:08d}",
                "relay_message_id": None,
                "contact": person["account_id"],
                "direction": "in" if incoming else "out",
                "origin": "customer" if incoming else "api",
                "type": kind,
                "content": json.dumps(content),
                "status": status,
                "template_name": template,
                "created_ms": at,
                "updated_ms": at,
            }
        )
    # Messages first, then their contacts, as the gateway records a new customer: the
    # database sets each contact's latest message time when the contact is stored.
    for start in range(0, len(rows), 5000):
        async with db.write() as conn:
            await conn.execute(insert(messages), rows[start : start + 5000])
    async with db.write() as conn:
        for start in range(0, len(people), 2000):
            await conn.execute(insert(contacts), people[start : start + 2000])
        states = []
        for person in people:
            roll = rng.random()
            status = (
                "open"
                if roll < 0.6
                else "pending"
                if roll < 0.75
                else "snoozed"
                if roll < 0.8
                else "resolved"
            )
            states.append(
                {
                    "contact": person["account_id"],
                    "status": status,
                    "assignee": rng.randint(1, AGENTS) if rng.random() < 0.6 else None,
                    "snoozed_until_ms": now_ms + day if status == "snoozed" else None,
                    "status_ms": now_ms - rng.randint(0, 30 * day),
                    "read_ms": now_ms - rng.randint(0, 60 * day),
                    "updated_ms": now_ms,
                }
            )
        await conn.execute(insert(conversations_table), states)
        await conn.execute(
            insert(labels), [{"name": name, "created_ms": now_ms} for name in LABELS]
        )
        tagged = []
        for person in people:
            if rng.random() < 0.3:
                for label_id in rng.sample(range(1, len(LABELS) + 1), rng.randint(1, 2)):
                    tagged.append({"contact": person["account_id"], "label_id": label_id})
        await conn.execute(insert(conversation_labels), tagged)
    # As the database's own maintenance (autovacuum) leaves a table that was loaded in bulk.
    if db.is_sqlite:
        async with db.write() as conn:
            await conn.exec_driver_sql("ANALYZE")
    else:
        async with db.engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql(
                "VACUUM ANALYZE messages, contacts, conversations, conversation_labels"
            )


# --- measuring ---------------------------------------------------------------------------------


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def timed(call: Callable[[], Awaitable[httpx.Response]]) -> float:
    started = time.perf_counter()
    response = await call()
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
    return elapsed


async def measure_list(http: httpx.AsyncClient, requests: int) -> dict[str, Any]:
    for _ in range(5):
        await timed(lambda: http.get("/inbox"))
    samples = [await timed(lambda: http.get("/inbox")) for _ in range(requests)]
    return summary(samples)


async def measure_search(http: httpx.AsyncClient, requests: int) -> dict[str, Any]:
    for q in QUERIES:
        await timed(lambda q=q: http.get("/inbox/search", params={"q": q}))  # type: ignore[misc]
    samples = []
    per_query: dict[str, list[float]] = {}
    for i in range(requests):
        q = QUERIES[i % len(QUERIES)]
        elapsed = await timed(lambda q=q: http.get("/inbox/search", params={"q": q}))  # type: ignore[misc]
        samples.append(elapsed)
        per_query.setdefault(q, []).append(elapsed)
    slowest = sorted(per_query.items(), key=lambda kv: -statistics.median(kv[1]))[:3]
    return {
        **summary(samples),
        "slowest_queries": {q: round(statistics.median(s) * 1000, 1) for q, s in slowest},
    }


async def measure_queries(app: Any, requests: int) -> dict[str, Any]:
    """The same list and searches called on the inbox's domain objects directly: the
    database's and the domain code's share of the page times (no session, no rendering)."""
    inbox = app.state.inbox_conversations
    search = app.state.inbox_search
    listed = []
    for _ in range(requests):
        started = time.perf_counter()
        await inbox.list(me=1)
        listed.append(time.perf_counter() - started)
    found = []
    for i in range(requests):
        started = time.perf_counter()
        await search.find(QUERIES[i % len(QUERIES)], me=1)
        found.append(time.perf_counter() - started)
    return {"list": summary(listed), "search": summary(found)}


async def measure_live_updates(
    backend: str, *, agents: int, customers: int, rate: float, seconds: float
) -> dict[str, Any] | None:
    """Live updates: from a customer's send to the ``message`` event on each of ``agents``
    agents' open event streams while ``rate`` messages a second arrive (``bench/inbox_live.py``,
    its own relay and gateway processes, on a fresh database); ``None`` when ``seconds`` is 0."""
    if seconds <= 0:
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from inbox_live import measure_live

    return await measure_live(
        agents=agents, customers=customers, rate=rate, seconds=seconds, backend=backend
    )


# --- one backend -------------------------------------------------------------------------------


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


async def drop_schema(schema: str | None) -> None:
    if schema:
        from tresen.core.db import Database

        db = Database(PG_URL)
        async with db.write() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await db.dispose()


async def wait_http(url: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(600):
            try:
                if (await http.get(path)).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def bench(backend: str, conversations: int, total: int, requests: int) -> dict[str, Any]:
    from argon2 import PasswordHasher

    from tresen.core.clock import SystemClock
    from tresen.gateway.app import build_gateway_app
    from tresen.gateway.database import open_database
    from tresen.gateway.inbox.agents import Agents, Role
    from tresen.gateway.settings import GatewaySettings
    from tresen.relay.accounts.sms import read_last_code

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port = free_port()
        relay_url = f"http://127.0.0.1:{port}"
        relay = subprocess.Popen(
            [sys.executable, "-m", "tresen", "relay", "serve", "--port", str(port)],
            env={
                **os.environ,
                "TRESEN_SMS_SENDER": "file",
                "TRESEN_SMS_FILE": str(folder / "sms.jsonl"),
                "TRESEN_DATA_DIR": str(folder / "relay"),
                "TRESEN_LOG_LEVEL": "warning",
            },
            stdout=subprocess.DEVNULL,
        )
        schema = f"bench_inbox_{secrets.token_hex(4)}" if backend == "postgres" else None
        settings = GatewaySettings(
            data_dir=folder / "gateway",
            relay_url=relay_url,
            phone=BUSINESS_PHONE,
            inbox={"secure_cookies": False},
            log_level="warning",
            **({"database_url": PG_URL, "database_schema": schema} if schema else {}),
        )
        try:
            await wait_http(relay_url, "/v1/health")
            db = await open_database(settings)
            clock = SystemClock()
            started = time.perf_counter()
            await seed(db, conversations, total, clock.now_ms())
            seeded_s = time.perf_counter() - started
            fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
            agents = Agents(db, clock, hasher=fast)
            for i in range(1, AGENTS + 1):
                await agents.create(f"agent{i}", f"Agent {i}", Role.AGENT, PASSWORD)
            await db.dispose()

            async def code(phone: str) -> str:
                for _ in range(200):
                    found = read_last_code(folder / "sms.jsonl", phone)
                    if found is not None:
                        return found
                    await asyncio.sleep(0.05)
                raise RuntimeError("no registration code")

            app = build_gateway_app(settings, codes=code)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://127.0.0.1"
                ) as http:
                    login = await http.get("/inbox/login")
                    token = login.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
                    signed = await http.post(
                        "/inbox/login",
                        data={"csrf": token, "username": "agent1", "password": PASSWORD},
                    )
                    if signed.status_code != 303:
                        raise RuntimeError(f"sign-in: {signed.status_code}")
                    listing = await measure_list(http, requests)
                    searching = await measure_search(http, requests)
                    queries = await measure_queries(app, requests)
            return {
                "backend": backend,
                "conversations": conversations,
                "messages": total,
                "seeded_s": round(seeded_s, 1),
                "list": listing,
                "search": searching,
                "queries": queries,
            }
        finally:
            stop(relay)
            await drop_schema(schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite"], choices=["sqlite", "postgres"])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--live-agents", type=int, default=20)
    parser.add_argument("--live-customers", type=int, default=20)
    parser.add_argument("--live-rate", type=float, default=100.0)
    parser.add_argument("--live-seconds", type=float, default=20.0, help="0: not measured")
    parser.add_argument("--out", type=Path, default=Path("bench/results/inbox.json"))
    args = parser.parse_args()
    if args.messages < args.conversations:
        parser.error("--messages must be at least --conversations (everyone wrote once)")
    results = []
    for backend in args.backends:
        result = asyncio.run(bench(backend, args.conversations, args.messages, args.requests))
        # Measured after the list and search, with processes of its own (nothing else runs).
        result["live"] = asyncio.run(
            measure_live_updates(
                backend,
                agents=args.live_agents,
                customers=args.live_customers,
                rate=args.live_rate,
                seconds=args.live_seconds,
            )
        )
        results.append(result)
    table = Table(
        title=f"Team inbox: {args.conversations:,} conversations, {args.messages:,} messages"
    )
    for heading in ("backend", "measurement", "requests", "p50 ms", "p99 ms", "max ms", "target"):
        table.add_column(
            heading,
            justify="left" if heading in {"backend", "measurement"} else "right",
            no_wrap=True,
        )
    for r in results:
        table.add_row(
            r["backend"],
            "conversation list, first page",
            str(r["list"]["requests"]),
            str(r["list"]["p50_ms"]),
            str(r["list"]["p99_ms"]),
            str(r["list"]["max_ms"]),
            "p50 ≤ 50",
        )
        table.add_row(
            r["backend"],
            "search",
            str(r["search"]["requests"]),
            str(r["search"]["p50_ms"]),
            str(r["search"]["p99_ms"]),
            str(r["search"]["max_ms"]),
            "p50 ≤ 100",
        )
        for part in ("list", "search"):
            q = r["queries"][part]
            table.add_row(
                r["backend"],
                f"{'conversation list' if part == 'list' else 'search'}: query only",
                str(q["requests"]),
                str(q["p50_ms"]),
                str(q["p99_ms"]),
                str(q["max_ms"]),
                "",
            )
        if r["live"] is not None:
            live = r["live"]
            table.add_row(
                r["backend"],
                f"live update: {live['agents']} agents, {live['rate_per_s']:g} messages/s",
                f"{live['events_arrived']:,}/{live['events_expected']:,}",
                str(live["p50_ms"]),
                str(live["p99_ms"]),
                str(live["max_ms"]),
                "p99 ≤ 1000",
            )
    Console(width=120).print(table)
    for r in results:
        print(
            f"{r['backend']}: seeded in {r['seeded_s']} s; slowest searches (p50 ms): "
            f"{r['search']['slowest_queries']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"cpus": os.cpu_count(), "results": results}
    args.out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

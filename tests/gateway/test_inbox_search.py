"""Search over every message of the business, on both databases: words whatever their case,
the start of the last word, every kind of message, the list's filters, and any input."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from argon2 import PasswordHasher
from gateway_support import RunningGateway, gateway_database
from sqlalchemy import delete, insert, update
from support import Backend, drop_schema

from tresen.core.clock import ManualClock, SystemClock
from tresen.core.db import Database
from tresen.core.http import tls_context
from tresen.gateway import migrate
from tresen.gateway.database import gateway_database as open_unmigrated
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import Agents, Role
from tresen.gateway.inbox.conversations import Conversations, Mine, Status
from tresen.gateway.inbox.search import Found, Search, Terms
from tresen.gateway.schema import contacts, messages
from tresen.gateway.settings import GatewaySettings

ANNA = "a" * 32
BEN = "b" * 32
CEM = "c" * 32
PASSWORD = "Korrekt Pferd Batterie"


@pytest.fixture
async def settings(backend: Backend, tmp_path: Path) -> AsyncIterator[GatewaySettings]:
    database, schema = gateway_database(backend, tmp_path)
    yield GatewaySettings(data_dir=tmp_path / "gw", **database)
    if schema is not None:
        await drop_schema(schema)


@pytest.fixture
async def db(settings: GatewaySettings) -> AsyncIterator[Database]:
    opened = await open_database(settings)
    yield opened
    await opened.dispose()


class Record:
    """Writes customers and their messages as the gateway records them (``content`` is the
    Cloud API object as JSON, non-ASCII characters escaped)."""

    def __init__(self, db: Database, clock: ManualClock) -> None:
        self.db = db
        self.clock = clock
        self.count = 0

    async def customer(self, account_id: str, name: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                insert(contacts).values(
                    account_id=account_id,
                    user_id=f"DE.{account_id[:8]}",
                    profile_name=name,
                    created_ms=self.clock.now_ms(),
                )
            )

    async def message(
        self,
        account_id: str,
        content: dict[str, Any] | str,
        *,
        kind: str = "text",
        incoming: bool = True,
        template_name: str | None = None,
    ) -> str:
        self.count += 1
        self.clock.advance(seconds=1)
        now = self.clock.now_ms()
        wamid = f"wamid.{self.count}"
        if isinstance(content, str):
            content = {"body": content}
        async with self.db.write() as conn:
            await conn.execute(
                insert(messages).values(
                    wamid=wamid,
                    contact=account_id,
                    direction="in" if incoming else "out",
                    origin="customer" if incoming else "api",
                    type=kind,
                    content=json.dumps(content),
                    status="received" if incoming else "sent",
                    template_name=template_name,
                    created_ms=now,
                    updated_ms=now,
                )
            )
            if incoming:
                await conn.execute(
                    update(contacts)
                    .where(contacts.c.account_id == account_id)
                    .values(last_inbound_ms=now)
                )
        return wamid


def texts(found: list[Found]) -> list[tuple[str, list[str]]]:
    """Each conversation's name with the excerpts of its matches, matching words in [ ]."""
    return [
        (
            f.name,
            ["".join(f"[{p}]" if hit else p for p, hit in h.excerpt) for h in f.hits],
        )
        for f in found
    ]


async def test_words_are_found_whatever_their_case_and_the_last_also_by_its_start(
    db: Database,
) -> None:
    clock = ManualClock()
    record = Record(db, clock)
    search = Search(db, clock)
    await record.customer(ANNA, "Anna")
    await record.customer(BEN, "Ben")
    await record.message(ANNA, "Herzliche Grüße aus Köln")
    await record.message(BEN, "Ihr Flug LH 1234 ist leider verspätet.", incoming=False)
    await record.message(ANNA, "Wann ist die ÜBERGABE?")
    await record.message(BEN, "Viele grüße, Ben")

    assert texts(await search.find("Grüße", me=1)) == [
        ("Ben", ["Viele [grüße], Ben"]),
        ("Anna", ["Herzliche [Grüße] aus Köln"]),
    ]
    assert texts(await search.find("grüße", me=1)) == texts(await search.find("GRÜẞE", me=1))
    assert [f.name for f in await search.find("grüße", me=1)] == ["Ben", "Anna"]
    assert texts(await search.find("übergabe", me=1)) == [("Anna", ["Wann ist die [ÜBERGABE]?"])]
    assert texts(await search.find("verspät", me=1)) == [
        ("Ben", ["Ihr Flug LH 1234 ist leider [verspätet]."])
    ]
    # Whole words: the middle or end of a word is no match; every word must be there.
    assert await search.find("spätet", me=1) == []
    assert await search.find("grüße köln", me=1) != []
    assert [f.name for f in await search.find("grüße köln", me=1)] == ["Anna"]
    assert await search.find("grüße paris", me=1) == []
    assert [f.name for f in await search.find("lh 1234", me=1)] == ["Ben"]


async def test_every_kind_of_message_is_searchable(db: Database) -> None:
    clock = ManualClock()
    record = Record(db, clock)
    search = Search(db, clock)
    await record.customer(ANNA, "Anna")
    await record.message(
        ANNA,
        {"type": "button", "body": {"text": "Möchten Sie umbuchen?"}, "action": {}},
        kind="interactive",
        incoming=False,
    )
    await record.message(
        ANNA,
        {"type": "button_reply", "button_reply": {"id": "b1", "title": "Späterer Flug"}},
        kind="interactive",
    )
    await record.message(ANNA, {"payload": "stop", "text": "Abmelden bitte"}, kind="button")
    await record.message(
        ANNA,
        {"name": "flight_delayed", "language": {"code": "de"}},
        kind="template",
        incoming=False,
        template_name="flight_delayed",
    )
    await record.message(ANNA, {"id": "m1", "caption": "Foto vom Gepäck"}, kind="image")
    await record.message(ANNA, {"message_id": "wamid.1", "emoji": "👍"}, kind="reaction")

    def first(found: list[Found]) -> str:
        assert len(found) == 1
        return "".join(p for p, _ in found[0].hits[0].excerpt)

    assert first(await search.find("umbuchen", me=1)) == "Möchten Sie umbuchen?"
    assert first(await search.find("späterer", me=1)) == "Chose “Späterer Flug”"
    assert first(await search.find("abmelden", me=1)) == "Abmelden bitte"
    assert first(await search.find("flight_delayed", me=1)) == "Template flight_delayed"
    assert first(await search.find("delayed", me=1)) == "Template flight_delayed"
    assert len((await search.find("gepäck", me=1))[0].hits) == 1
    # Neither JSON's keys nor ids are words of a message.
    assert await search.find("payload", me=1) == []
    assert await search.find("button_reply", me=1) == []


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "   ",
        '"',
        '"Grüße',
        "(Grüße",
        "Grüße)",
        "Grüße AND",
        "OR NOT",
        "NEAR(grüße köln)",
        "*",
        "grü*",
        "-grüße",
        "^grüße",
        "text:grüße",
        "grüße:*",
        "'",
        "\\",
        "!&|<->",
        "_",
        "½ ² ℃",
        "💬",
        "x" * 5000,
        " ".join(["grüße"] * 50),
        "\x00grüße",
    ],
)
async def test_any_input_is_searched_for_its_words_and_never_fails(
    db: Database, typed: str
) -> None:
    clock = ManualClock()
    record = Record(db, clock)
    await record.customer(ANNA, "Anna")
    await record.message(ANNA, "Herzliche Grüße aus Köln")
    found = await Search(db, clock).find(typed, me=1)
    words = Terms.parse(typed)
    if words is not None and all(w.startswith(("grü", "köln")) for w in words.words):
        assert [f.name for f in found] == ["Anna"]
    elif typed.strip() in {"", '"', "*", "'", "\\", "!&|<->", "_", "💬"}:
        assert found == []


async def test_results_follow_the_lists_filters_newest_first_and_are_limited(
    db: Database,
) -> None:
    clock = ManualClock()
    record = Record(db, clock)
    search = Search(db, clock)
    inbox = Conversations(db, clock)
    for contact, name in ((ANNA, "Anna"), (BEN, "Ben"), (CEM, "Cem")):
        await record.customer(contact, name)
    for i in range(5):
        await record.message(ANNA, f"Paket {i} ist unterwegs")
    await record.message(BEN, "Mein Paket fehlt")
    await record.message(CEM, "Kein Paket heute")
    await inbox.assign(BEN, 7)
    await inbox.set_status(CEM, Status.RESOLVED)
    await inbox.labels.put(ANNA, "lieferung")

    everything = await search.find("paket", me=7)
    assert [f.name for f in everything] == ["Cem", "Ben", "Anna"]
    # At most three matches of a conversation, newest first.
    assert texts(everything)[2] == (
        "Anna",
        ["[Paket] 4 ist unterwegs", "[Paket] 3 ist unterwegs", "[Paket] 2 ist unterwegs"],
    )
    assert [f.name for f in await search.find("paket", me=7, mine=Mine.MINE)] == ["Ben"]
    assert [f.name for f in await search.find("paket", me=7, mine=Mine.UNASSIGNED)] == [
        "Cem",
        "Anna",
    ]
    assert [f.name for f in await search.find("paket", me=7, status=Status.OPEN)] == [
        "Ben",
        "Anna",
    ]
    assert [f.name for f in await search.find("paket", me=7, status=Status.RESOLVED)] == ["Cem"]
    assert [f.name for f in await search.find("paket", me=7, label="lieferung")] == ["Anna"]
    assert [f.name for f in await search.find("paket", me=7, limit=2)] == ["Cem", "Ben"]


async def test_changed_and_deleted_messages_are_searched_as_they_are_now(db: Database) -> None:
    clock = ManualClock()
    record = Record(db, clock)
    search = Search(db, clock)
    await record.customer(ANNA, "Anna")
    first = await record.message(ANNA, "Alte Adresse Hauptstraße")
    second = await record.message(ANNA, "Bitte an die Hauptstraße")
    async with db.write() as conn:
        # A status changes often; the words stay searchable.
        await conn.execute(update(messages).where(messages.c.wamid == first).values(status="read"))
        await conn.execute(
            update(messages)
            .where(messages.c.wamid == second)
            .values(content=json.dumps({"body": "Bitte an den Bahnhof"}))
        )
    assert texts(await search.find("hauptstraße", me=1)) == [
        ("Anna", ["Alte Adresse [Hauptstraße]"])
    ]
    assert texts(await search.find("bahnhof", me=1)) == [("Anna", ["Bitte an den [Bahnhof]"])]
    async with db.write() as conn:
        await conn.execute(delete(messages).where(messages.c.wamid == first))
    assert await search.find("hauptstraße", me=1) == []
    assert [f.name for f in await search.find("bahnhof", me=1)] == ["Anna"]


def before_search() -> str:
    """The revision the search index's migration follows."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrate.__file__).with_name("migrations")))
    revision = ScriptDirectory.from_config(config).get_revision("0006")
    assert revision is not None
    assert isinstance(revision.down_revision, str)
    return revision.down_revision


async def test_messages_kept_before_the_search_index_are_found(
    settings: GatewaySettings,
) -> None:
    older = open_unmigrated(settings)
    try:
        await migrate.upgrade(older, before_search())
        clock = ManualClock()
        record = Record(older, clock)
        await record.customer(ANNA, "Anna")
        await record.message(ANNA, "Gepäck verloren in München")
        await migrate.upgrade(older)
        assert texts(await Search(older, clock).find("münch", me=1)) == [
            ("Anna", ["Gepäck verloren in [München]"])
        ]
    finally:
        await older.dispose()


def test_long_messages_are_cut_around_the_first_match() -> None:
    terms = Terms.parse("Koffer")
    assert terms is not None
    text = "Guten Tag, " + "wir haben eine Frage zur Buchung. " * 10 + "Wo ist mein Koffer? Danke"
    excerpt = terms.marked(text)
    assert excerpt[0] == ("…", False)
    assert ("Koffer", True) in excerpt
    assert len("".join(p for p, _ in excerpt)) <= 165


async def test_the_search_page_marks_the_words_and_escapes_the_rest(gw: RunningGateway) -> None:
    db = await open_database(gw.settings)
    agents = Agents(
        db, SystemClock(), hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    await agents.create("cem", "Cem Yilmaz", Role.AGENT, PASSWORD)
    record = Record(db, ManualClock(SystemClock().now_ms()))
    await record.customer(ANNA, "Anna <b>Admin</b>")
    await record.message(ANNA, "Mein <script>alert(1)</script> Paket ist nicht da")
    async with httpx.AsyncClient(verify=tls_context(), base_url=gw.url) as http:
        cookies: dict[str, str] = {}
        login = await http.get("/inbox/login")
        cookies.update(login.cookies)
        found = re.search(r'name="csrf" value="([^"]+)"', login.text)
        assert found is not None
        signed = await http.post(
            "/inbox/login",
            data={"csrf": found.group(1), "username": "cem", "password": PASSWORD},
            headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())},
        )
        assert signed.status_code == 303
        for raw in signed.headers.get_list("set-cookie"):
            name, _, rest = raw.partition("=")
            cookies[name] = rest.split(";", 1)[0]
        header = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}

        home = await http.get("/inbox", headers=header)
        assert 'action="/inbox/search"' in home.text
        assert '<input type="hidden" name="status" value="open">' in home.text

        page = await http.get(
            "/inbox/search", params={"q": "paket (", "status": "open"}, headers=header
        )
        assert page.status_code == 200
        assert "<mark>Paket</mark>" in page.text
        assert "Mein &lt;script&gt;alert(1)&lt;/script&gt; <mark>Paket</mark>" in page.text
        assert "Anna &lt;b&gt;Admin&lt;/b&gt;" in page.text
        assert "<script>" not in page.text
        assert f'href="/inbox/c/{ANNA}"' in page.text

        nothing = await http.get("/inbox/search", params={"q": "Fahrrad"}, headers=header)
        assert "No message contains Fahrrad." in nothing.text
        weird = await http.get(
            "/inbox/search",
            params={"q": '"*) OR ("', "mine": "x", "status": "y", "label": "z"},
            headers=header,
        )
        assert weird.status_code == 200
        assert (await http.get("/inbox/search", params={"q": "Paket"})).status_code == 303
    await db.dispose()

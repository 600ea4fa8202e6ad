"""The ledger under random traffic: whatever the order of sends, deliveries, redeliveries and
acks, it charges exactly the delivered billable templates, each once, at the price the rules
give.

Each example drives a real relay over HTTP: two businesses (a German one with its own rate
card overrides, a British one on the default card), one to three customers in different
countries (some with two devices, some without consent), and a random sequence of operations.
The expected charges are computed here, independently of the relay's code, from the settings'
rate card, the overrides and the rules: only delivered templates are charged, a utility
template inside an open 24-hour window is free, session messages are free, a price is fixed
when the send is accepted, and a message is charged once however often it is acked.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, event, given, settings, target
from hypothesis import strategies as st
from relay.billing.factories import DAY_MS, HOUR_MS, Billing
from support import Device

from tresen.core.errors import ErrorCode
from tresen.core.policy import DEFAULT_RATE_CARD

COUNTRIES = ("DE", "FR", "GB", "US", "BR")
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
PRICED = ("marketing", "utility", "authentication", "authentication_international")
BUSINESSES = ("DE", "GB")  # countries of the two businesses; the first has overrides
WINDOW_MS = 24 * HOUR_MS


# --- the scenario ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerSpec:
    country: str
    devices: int
    marketing_consent: bool
    utility_consent: bool


@dataclass(frozen=True)
class Write:
    """A customer writes to a business: the window of that pair opens for 24 hours."""

    customer: int
    business: int


@dataclass(frozen=True)
class Template:
    business: int
    customer: int
    category: str


@dataclass(frozen=True)
class Session:
    """A free-form message: accepted only inside the window, and free."""

    business: int
    customer: int


@dataclass(frozen=True)
class Resend:
    """A business sends an accepted message again with the same client message id."""

    which: int


@dataclass(frozen=True)
class Ack:
    """A customer's device fetches what is pending and acks some of it, possibly naming
    envelopes it acked before."""

    customer: int
    device: int
    mask: int
    again: bool


@dataclass(frozen=True)
class Fetch:
    """A device fetches without acking: the same envelopes come again later."""

    customer: int
    device: int


@dataclass(frozen=True)
class StrangerAck:
    """Someone acks envelope ids that are not theirs."""

    customer: int


@dataclass(frozen=True)
class Advance:
    hours: int


@dataclass(frozen=True)
class Reprice:
    """The operator changes an override of the first business: for the country of a
    customer, or for ``*``."""

    category: str
    customer: int | None
    price_micros: int


@dataclass(frozen=True)
class Conversation:
    """A customer writes, and the business answers with a template inside the window."""

    customer: int
    business: int
    category: str

    def steps(self) -> list[Op]:
        return [
            Write(self.customer, self.business),
            Template(self.business, self.customer, self.category),
        ]


Op = Write | Template | Session | Resend | Ack | Fetch | StrangerAck | Advance | Reprice

_customer = st.integers(0, 2)
_business = st.integers(0, 1)
_STEPS: dict[str, st.SearchStrategy[Op]] = {
    "template": st.builds(Template, _business, _customer, st.sampled_from(CATEGORIES)),
    "ack": st.builds(Ack, _customer, st.integers(0, 1), st.integers(0, 2**8 - 1), st.booleans()),
    "ack all": st.builds(Ack, _customer, st.integers(0, 1), st.just(2**8 - 1), st.booleans()),
    "write": st.builds(Write, _customer, _business),
    "session": st.builds(Session, _business, _customer),
    "resend": st.builds(Resend, st.integers(0, 40)),
    "fetch": st.builds(Fetch, _customer, st.integers(0, 1)),
    "stranger": st.builds(StrangerAck, _customer),
    "advance": st.builds(Advance, st.integers(1, 30)),
    "reprice": st.builds(
        Reprice, st.sampled_from(PRICED), st.none() | _customer, st.integers(0, 300_000)
    ),
    "conversation": st.builds(Conversation, _customer, _business, st.sampled_from(CATEGORIES)),
}
# Templates and acks come most often: they are what the ledger is about.
_WEIGHTS = {"template": 5, "ack": 2, "ack all": 1, "advance": 2, "reprice": 2, "conversation": 2}
OPS: st.SearchStrategy[Op | Conversation] = st.sampled_from(
    [kind for kind in _STEPS for _ in range(_WEIGHTS.get(kind, 1))]
).flatmap(_STEPS.__getitem__)
_mostly = st.sampled_from((True, True, True, False))
CUSTOMERS = st.lists(
    st.builds(CustomerSpec, st.sampled_from(COUNTRIES), st.integers(1, 2), _mostly, _mostly),
    min_size=1,
    max_size=3,
)
OVERRIDES = st.lists(
    st.tuples(
        st.sampled_from(PRICED),
        st.sampled_from((*COUNTRIES, "*")),
        st.integers(0, 300_000),
        st.sampled_from(("EUR", "USD")),
    ),
    max_size=4,
    unique_by=lambda r: (r[0], r[1]),
)


# --- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    billable: bool
    category: str
    price_micros: int
    currency: str


@dataclass
class Model:
    """What the rules say, kept beside the relay."""

    business_countries: tuple[str, ...]
    customers: list[CustomerSpec]
    overrides: dict[tuple[str, str], tuple[int, str]]
    windows: dict[tuple[int, int], int] = field(default_factory=dict)
    prices: dict[str, tuple[int, Price]] = field(default_factory=dict)  # message → business
    delivered_ms: dict[str, int] = field(default_factory=dict)

    def rate(self, business: int, category: str, country: str) -> tuple[int, str]:
        if business == 0:
            for where in (country, "*"):
                if (category, where) in self.overrides:
                    return self.overrides[category, where]
        card = DEFAULT_RATE_CARD[category]
        return card.get(country, card.get("*", 0)), "EUR"

    def in_window(self, business: int, customer: int, now: int) -> bool:
        opened = self.windows.get((business, customer))
        return opened is not None and now < opened + WINDOW_MS

    def refusal(self, op: Template | Session, now: int) -> int | None:
        if isinstance(op, Session):
            return None if self.in_window(op.business, op.customer, now) else ErrorCode.REENGAGEMENT
        spec = self.customers[op.customer]
        agreed = spec.marketing_consent if op.category == "MARKETING" else spec.utility_consent
        return None if agreed else ErrorCode.MARKETING_STOPPED

    def price(self, op: Template | Session, now: int) -> Price:
        if isinstance(op, Session):
            return Price(False, "service", 0, "EUR")
        country = self.customers[op.customer].country
        category = op.category.lower()
        if category == "authentication" and country != self.business_countries[op.business]:
            category = "authentication_international"
        if category == "utility" and self.in_window(op.business, op.customer, now):
            return Price(False, "utility", 0, "EUR")
        micros, currency = self.rate(op.business, category, country)
        return Price(True, category, micros, currency)

    def charges(self) -> dict[str, tuple[int, Price, int]]:
        """message → (business, price, charged at) of every delivered billable message."""
        return {
            m: (business, price, self.delivered_ms[m])
            for m, (business, price) in self.prices.items()
            if price.billable and m in self.delivered_ms
        }


def month_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m")


def next_month_start(ms: int) -> int:
    day = datetime.fromtimestamp(ms / 1000, UTC)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


# --- the test --------------------------------------------------------------------------------


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    customers=CUSTOMERS,
    overrides=OVERRIDES,
    ops=st.lists(OPS, min_size=10, max_size=30),
    finish=st.integers(0, 3),  # 0: the sequence ends as it is; else everyone acks the rest
)
async def test_the_ledger_charges_each_delivered_billable_template_once(
    billing: Billing,
    customers: list[CustomerSpec],
    overrides: list[tuple[str, str, int, str]],
    ops: list[Op | Conversation],
    finish: int,
) -> None:
    b = billing
    # Every example starts six hours before a new month, so that charges fall in two months.
    b.clock.set(next_month_start(b.clock.now_ms() + 2 * DAY_MS) - 6 * HOUR_MS)
    started = b.clock.now_ms()
    model = Model(BUSINESSES, customers, {(c, k): (p, cur) for c, k, p, cur in overrides})

    businesses = [await b.business(f"Shop {c}", c) for c in BUSINESSES]
    templates = [{c: await b.template(s, c) for c in CATEGORIES} for s in businesses]
    if overrides:
        r = await b.admin(
            "PUT",
            f"/v1/admin/businesses/{businesses[0].account_id}/rate-card",
            json={
                "rates": [
                    {"category": c, "country": k, "price_micros": p, "currency": cur}
                    for c, k, p, cur in overrides
                ]
            },
        )
        assert r.status_code == 200, r.text
    devices: list[list[Device]] = []
    for spec in customers:
        first = await b.customer(spec.country)
        devices.append([first] + [await b.second_device(first) for _ in range(spec.devices - 1)])
        for business in businesses:
            if spec.marketing_consent:
                await b.consent(business, first, "marketing")
            if spec.utility_consent:
                await b.consent(business, first, "utility")

    sent: list[tuple[Template | Session, dict[str, Any]]] = []  # accepted sends, answers
    acked: dict[tuple[int, int], list[int]] = defaultdict(list)

    steps = [step for o in ops for step in (o.steps() if isinstance(o, Conversation) else [o])]
    for op in steps:
        now = b.clock.now_ms()
        match op:
            case Write(customer=c, business=s):
                c %= len(customers)
                answer = await b.send(devices[c][0], businesses[s])
                assert "message_id" in answer, answer
                model.windows[s, c] = now
            case Template(business=s, customer=c) | Session(business=s, customer=c):
                c %= len(customers)
                op = Template(s, c, op.category) if isinstance(op, Template) else Session(s, c)
                want_refusal = model.refusal(op, now)
                answer = await b.send(
                    businesses[s],
                    devices[c][0],
                    "template" if isinstance(op, Template) else "session",
                    templates[s][op.category] if isinstance(op, Template) else None,
                    devices=devices[c],
                )
                assert answer.get("code") == want_refusal, (op, answer)
                if want_refusal is None:
                    price = model.price(op, now)
                    assert answer["pricing"] == {
                        "billable": price.billable,
                        "pricing_model": "PMP",
                        "type": "regular" if price.billable else "free_customer_service",
                        "category": price.category,
                    }, (op, answer)
                    model.prices[answer["message_id"]] = (s, price)
                    sent.append((op, answer))
            case Resend(which=k):
                if not sent:
                    continue
                original, first = sent[k % len(sent)]
                answer = await b.send(
                    businesses[original.business],
                    devices[original.customer][0],
                    "template" if isinstance(original, Template) else "session",
                    templates[original.business][original.category]
                    if isinstance(original, Template)
                    else None,
                    devices=devices[original.customer],
                    client_msg_id=first["client_msg_id"],
                )
                # The original's answer, a template priced as it was then: nothing new is
                # stored. Only templates are billed; a resent session reply is checked by id.
                assert (answer["message_id"], answer["duplicate"]) == (first["message_id"], True)
                if isinstance(original, Template):
                    assert answer["pricing"] == first["pricing"]
            case Ack(customer=c, device=d, mask=mask, again=again):
                c %= len(customers)
                d %= len(devices[c])
                device = devices[c][d]
                envelopes = [e for e in await b.pending(device) if e["kind"] == "message"]
                chosen = [e for i, e in enumerate(envelopes) if mask >> (i % 8) & 1]
                ids = [e["id"] for e in chosen] + (acked[c, d] if again else [])
                if not ids:
                    continue
                assert await b.ack(device, ids) == len(chosen)
                acked[c, d] += [e["id"] for e in chosen]
                for e in chosen:
                    model.delivered_ms.setdefault(e["message_id"], now)
            case Fetch(customer=c, device=d):
                c %= len(customers)
                await b.pending(devices[c][d % len(devices[c])])
            case StrangerAck(customer=c):
                c %= len(customers)
                victim = devices[c][0]
                ids = [e["id"] for e in await b.pending(victim)]
                stranger = devices[(c + 1) % len(customers)][0] if len(customers) > 1 else None
                if ids:
                    assert await b.ack(stranger or businesses[1], ids) == 0
            case Advance(hours=h):
                b.clock.advance(hours=h)
            case Reprice(category=category, customer=c, price_micros=micros):
                country = "*" if c is None else customers[c % len(customers)].country
                r = await b.admin(
                    "PUT",
                    f"/v1/admin/businesses/{businesses[0].account_id}/rate-card",
                    json={
                        "rates": [
                            {"category": category, "country": country, "price_micros": micros}
                        ]
                    },
                )
                assert r.status_code == 200, r.text
                model.overrides[category, country] = (micros, "EUR")

    if finish:
        # Every device fetches and acks what is left: second devices get messages that
        # the first already delivered.
        for own in devices:
            for device in own:
                envelopes = [e for e in await b.pending(device) if e["kind"] == "message"]
                if envelopes:
                    assert await b.ack(device, [e["id"] for e in envelopes]) == len(envelopes)
                for e in envelopes:
                    model.delivered_ms.setdefault(e["message_id"], b.clock.now_ms())

    expected = model.charges()
    target(float(len(expected)), label="charged messages")
    event(f"charged messages: {min(len(expected), 5)}{'+' if len(expected) >= 5 else ''}")
    accounts = {s.account_id: i for i, s in enumerate(businesses)}

    # The ledger: each delivered billable template once, at its price, when first delivered.
    ledger = {m: row for m, row in (await b.ledger()).items() if row[0] in accounts}
    assert ledger == {
        m: (businesses[s].account_id, p.price_micros, p.currency, at)
        for m, (s, p, at) in expected.items()
    }

    # The statements of every month the example touched say the same, per business.
    months = sorted(
        {month_of(started), month_of(b.clock.now_ms())}
        | {month_of(at) for *_, at in expected.values()}
    )
    for s, business in enumerate(businesses):
        for month in months:
            r = await b.http.get(f"/v1/business/statements/{month}", headers=business.auth)
            assert r.status_code == 200, r.text
            statement = r.json()
            mine = [
                (p, m)
                for m, (owner, p, at) in expected.items()
                if owner == s and month_of(at) == month
            ]
            totals: dict[str, int] = defaultdict(int)
            for p, _ in mine:
                totals[p.currency] += p.price_micros
            grand = {g["currency"]: g["amount_micros"] for g in statement["grand_totals"]}
            assert grand == totals, (month, statement["grand_totals"])
            assert sorted(i["message_id"] for i in statement["items"]) == sorted(m for _, m in mine)

    # Every delivered message of a business is reported delivered once, with its pricing.
    for s, business in enumerate(businesses):
        events = [e for e in await b.pending(business) if e["kind"] == "delivered"]
        reported = Counter(e["message_id"] for e in events)
        assert all(n == 1 for n in reported.values()), reported
        want = {
            m for m, (owner, _) in model.prices.items() if owner == s and m in model.delivered_ms
        }
        assert set(reported) == want
        for e in events:
            price = model.prices[e["message_id"]][1]
            assert (e["pricing"]["billable"], e["pricing"]["category"]) == (
                price.billable,
                price.category,
            )

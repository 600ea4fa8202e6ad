"""``PolicyService``: the platform rules on the send path, and the actions that feed them.

The mailbox asks :meth:`PolicyService.admit` about every send of a group commit, inside its
transaction, with all the state read in a few bulk queries; :meth:`record` writes what the
accepted sends change (windows, reach, pricing facts), and :meth:`delivered` bills templates
and counts deliveries when the recipient acks. The relay learns from an envelope only its
class and the template it claims to be; never its content.

Rules between a business (sender) and a customer (recipient):

- blocks first: a customer who blocked the business is undeliverable (131026, the block is not
  revealed); a sender who blocked the recipient is told to unblock (150060);
- any non-template send needs the window the customer's last message opened (131047);
- a template must be the sender's own, approved and not paused (132001, 132015, 132016), with
  consent for its category (131050); outside a window it counts against the tier (131048);
- throughput per business (130429) and per pair (131056), except for SYSTEM sends (typing
  indicators), which need the window but take no rate tokens and carry no pricing.

A customer's message to a business opens or extends that pair's window.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.ids import AccountId
from tresen.core.logging import get_logger
from tresen.core.policy import PolicySettings
from tresen.core.ratelimit import TokenBuckets
from tresen.relay.audit import add_audit
from tresen.relay.policy import repo
from tresen.relay.policy.rules import (
    DAY_MS,
    HOUR_MS,
    Pricing,
    PricingCategory,
    PricingType,
    Quality,
    TemplateCategory,
    negative_counts,
    pricing_category,
    quality_of,
    tier_limit,
    tier_step,
    window_open,
)
from tresen.wire.relay import MessageClass

__all__ = [
    "Admission",
    "BusinessStanding",
    "PolicyService",
    "SendIntent",
]

log = get_logger("tresen.relay.policy")

Pair = tuple[str, str]

_SCOPE_OF = {
    TemplateCategory.MARKETING: "marketing",
    TemplateCategory.UTILITY: "utility",
    TemplateCategory.AUTHENTICATION: "utility",
}
REPORT_REASONS = ("spam", "offensive", "scam", "unwanted", "template_mismatch", "other")
# Account kinds and business limits change rarely; the send path keeps them this long
# (changes made through this process take effect at once).
CACHE_TTL_S = 5.0
CACHE_MAX = 100_000


class Delivery(Protocol):
    """A message delivered for the first time, as the mailbox knows it."""

    @property
    def message_id(self) -> str: ...
    @property
    def sender_account(self) -> str: ...
    @property
    def recipient_account(self) -> str: ...
    @property
    def klass(self) -> int: ...


class SendIntent(msgspec.Struct, frozen=True):
    sender: str
    recipient: str
    klass: MessageClass
    template_ref: str | None


class Admission(msgspec.Struct, frozen=True):
    """What an accepted send changes, and its pricing facts (business → customer only)."""

    pricing: Pricing | None = None
    template_id: int | None = None
    opens_window: Pair | None = None
    reaches: Pair | None = None


class BusinessStanding(msgspec.Struct, frozen=True):
    """What a business may read about itself: quality, tier and usage."""

    quality: Quality
    blocks: int
    reports: int
    uncounted: int
    delivered: int
    tier: int
    tier_limit: int | None
    reached_24h: int
    throughput_mps: int


class Prefetched(msgspec.Struct, frozen=True):
    """Account facts, blocks and windows read for a batch of sends."""

    facts: dict[str, repo.AccountFacts]
    blocked: set[Pair]
    windows: dict[Pair, int]


@dataclass
class _Batch:
    """State read once for all sends of a group commit."""

    now: int
    facts: dict[str, repo.AccountFacts]
    blocked: set[Pair]
    windows: dict[Pair, int] = field(default_factory=dict)
    templates: dict[int, repo.TemplateFacts] = field(default_factory=dict)
    consents: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)
    limits: dict[str, repo.LimitsRow] = field(default_factory=dict)
    rates: dict[tuple[str, str, str], tuple[int, str]] = field(default_factory=dict)
    reached: set[Pair] = field(default_factory=set)
    reach_counts: dict[str, int] = field(default_factory=dict)


class PolicyService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        policy: PolicySettings,
        *,
        changed: Callable[[str], None] | None = None,
    ) -> None:
        """``changed`` is told of an account whose cached facts changed here, to forget them
        on every relay node (by default: on this one)."""
        self.db = db
        self.clock = clock
        self.policy = policy
        self.changed = changed or self.forget
        self._throughput: dict[int, TokenBuckets] = {}
        self._pairs = TokenBuckets(clock, policy.pair_rate_per_minute / 60, policy.pair_burst)
        self._facts: dict[str, tuple[float, repo.AccountFacts]] = {}
        self._limits: dict[str, tuple[float, repo.LimitsRow | None]] = {}
        # Whether an account blocks anyone: most block nobody, and their sends then need no
        # look-up of blocks at all.
        self._blocks_anyone: dict[str, tuple[float, bool]] = {}
        self._forgotten = 0

    def forget(self, account_id: str) -> None:
        """Drop what the send path cached about an account (its kind, limits or blocks
        changed)."""
        self._facts.pop(account_id, None)
        self._limits.pop(account_id, None)
        self._blocks_anyone.pop(account_id, None)
        self._forgotten += 1

    async def _facts_of(
        self, conn: AsyncConnection, account_ids: Collection[str]
    ) -> dict[str, repo.AccountFacts]:
        now = time.monotonic()
        found: dict[str, repo.AccountFacts] = {}
        missing = []
        for account_id in account_ids:
            cached = self._facts.get(account_id)
            if cached is not None and cached[0] > now:
                found[account_id] = cached[1]
            else:
                missing.append(account_id)
        if missing:
            fresh = await repo.account_facts(conn, missing)
            if len(self._facts) > CACHE_MAX:
                self._facts.clear()
            for account_id, facts in fresh.items():
                self._facts[account_id] = (now + CACHE_TTL_S, facts)
            found.update(fresh)
        return found

    async def _limits_of(
        self, conn: AsyncConnection, businesses: Collection[str]
    ) -> dict[str, repo.LimitsRow]:
        now = time.monotonic()
        found: dict[str, repo.LimitsRow] = {}
        missing = []
        for business in businesses:
            cached = self._limits.get(business)
            if cached is None or cached[0] <= now:
                missing.append(business)
            elif cached[1] is not None:
                found[business] = cached[1]
        if missing:
            fresh = await repo.limits_of(conn, missing)
            if len(self._limits) > CACHE_MAX:
                self._limits.clear()
            for business in missing:
                self._limits[business] = (now + CACHE_TTL_S, fresh.get(business))
            found.update(fresh)
        return found

    def _cache_limits(self, row: repo.LimitsRow) -> None:
        self._limits[row.business_account] = (time.monotonic() + CACHE_TTL_S, row)

    # --- the send path -----------------------------------------------------------------------

    async def prefetch(self, intents: Sequence[SendIntent]) -> Prefetched | None:
        """Read what every send of a batch needs (account facts, blocks, windows) on a
        reader connection, while the writer resolves duplicates and device lists: the group
        commit then waits for no extra statement on its own connection."""
        others = [s for s in intents if s.sender != s.recipient]
        if not self.policy.enabled or not others:
            return None
        cached = self._cached_state(others)
        if cached is not None:
            return cached
        async with self.db.read(inline=True) as conn:  # indexed look-ups, mostly cached
            return await self._read_state(conn, others)

    def _cached_state(self, others: Sequence[SendIntent]) -> Prefetched | None:
        """What :meth:`_read_state` would read, when the caches hold all of it (most batches
        of people writing to each other: no business, so no window, and nobody who blocks
        anyone); otherwise ``None``."""
        now = time.monotonic()
        facts: dict[str, repo.AccountFacts] = {}
        for intent in others:
            for account_id in (intent.sender, intent.recipient):
                known = self._facts.get(account_id)
                if known is None or known[0] <= now:
                    return None
                facts[account_id] = known[1]
                blocks = self._blocks_anyone.get(account_id)
                if blocks is None or blocks[0] <= now or blocks[1]:
                    return None
        state = _Batch(0, facts, set())
        if any(self._business_to_customer(s, state) for s in others):
            return None
        return Prefetched(facts, set(), {})

    async def _read_state(self, conn: AsyncConnection, others: Sequence[SendIntent]) -> Prefetched:
        pairs = {(s.sender, s.recipient) for s in others}
        state = _Batch(0, await self._facts_of(conn, {a for p in pairs for a in p}), set())
        to_customers = {
            (s.sender, s.recipient) for s in others if self._business_to_customer(s, state)
        }
        both_ways = pairs | {(b, a) for a, b in pairs}
        blockers = await self._blockers_among(conn, {a for a, _ in both_ways})
        blocked, windows = await repo.blocks_and_windows(
            conn, {p for p in both_ways if p[0] in blockers}, to_customers
        )
        return Prefetched(state.facts, blocked, windows)

    async def _blockers_among(self, conn: AsyncConnection, account_ids: set[str]) -> set[str]:
        """Those of ``account_ids`` that block anyone, cached like account facts."""
        now = time.monotonic()
        found: set[str] = set()
        missing = []
        for account_id in account_ids:
            cached = self._blocks_anyone.get(account_id)
            if cached is None or cached[0] <= now:
                missing.append(account_id)
            elif cached[1]:
                found.add(account_id)
        if missing:
            forgotten = self._forgotten
            fresh = await repo.blockers_among(conn, missing)
            found |= fresh
            # A block or unblock committed while this was read may not be in it: then
            # nothing read is kept.
            if forgotten == self._forgotten:
                if len(self._blocks_anyone) > CACHE_MAX:
                    self._blocks_anyone.clear()
                for account_id in missing:
                    self._blocks_anyone[account_id] = (now + CACHE_TTL_S, account_id in fresh)
        return found

    async def admit(
        self,
        conn: AsyncConnection,
        intents: Sequence[SendIntent],
        prefetched: Prefetched | None = None,
    ) -> list[Admission | TresenError]:
        """A decision per send, in order; sends to one's own account always pass.

        ``prefetched`` is :meth:`prefetch` of these sends (or more); without it, the same
        state is read on ``conn``.
        """
        results: list[Admission | TresenError] = [Admission()] * len(intents)
        if not self.policy.enabled:
            return results
        now = self.clock.now_ms()
        others = [(i, s) for i, s in enumerate(intents) if s.sender != s.recipient]
        if not others:
            return results
        state = prefetched or await self._read_state(conn, [s for _, s in others])
        batch = _Batch(now, state.facts, state.blocked, state.windows)
        await self._load(conn, batch, [s for _, s in others])
        fresh_reach: dict[str, set[str]] = defaultdict(set)
        for index, intent in others:
            try:
                results[index] = self._decide(intent, batch, fresh_reach)
            except TresenError as exc:
                results[index] = exc
        return results

    async def _load(self, conn: AsyncConnection, batch: _Batch, intents: list[SendIntent]) -> None:
        """What business → customer sends need besides blocks and windows; a customer's
        message needs nothing more (it opens the window)."""
        to_customers = [s for s in intents if self._business_to_customer(s, batch)]
        if not to_customers:
            return
        pairs = {(s.sender, s.recipient) for s in to_customers}
        businesses = {s.sender for s in to_customers}
        batch.limits = await self._limits_of(conn, businesses)
        template_ids = {t for s in to_customers if (t := _template_id(s)) is not None}
        if template_ids:
            batch.templates = await repo.template_facts(conn, template_ids)
            batch.consents = await repo.consent_states(conn, pairs)
            batch.rates = await repo.rate_rows(conn, businesses)
            since = batch.now - DAY_MS
            batch.reached = await repo.reached(conn, pairs, since)
            for business in businesses:
                batch.reach_counts[business] = await repo.reach_count(conn, business, since)

    def _business_to_customer(self, s: SendIntent, batch: _Batch) -> bool:
        sender, recipient = batch.facts.get(s.sender), batch.facts.get(s.recipient)
        return (
            sender is not None
            and recipient is not None
            and sender.kind == "business"
            and recipient.kind == "customer"
        )

    def _customer_to_business(self, s: SendIntent, batch: _Batch) -> bool:
        sender, recipient = batch.facts.get(s.sender), batch.facts.get(s.recipient)
        return (
            sender is not None
            and recipient is not None
            and sender.kind == "customer"
            and recipient.kind == "business"
        )

    def _decide(self, s: SendIntent, batch: _Batch, fresh_reach: dict[str, set[str]]) -> Admission:
        if (s.recipient, s.sender) in batch.blocked:
            raise TresenError(
                ErrorCode.UNDELIVERABLE, "the recipient cannot receive messages", to=s.recipient
            )
        if (s.sender, s.recipient) in batch.blocked:
            raise TresenError(
                ErrorCode.BLOCKED_BY_YOU,
                "you blocked this account; unblock it to write again",
                to=s.recipient,
            )
        if self._customer_to_business(s, batch):
            if s.klass is MessageClass.TEMPLATE:
                raise TresenError(
                    ErrorCode.INVALID_PARAMETER, "only businesses send template messages"
                )
            if s.klass is MessageClass.SESSION:
                return Admission(opens_window=(s.recipient, s.sender))
            return Admission()
        if not self._business_to_customer(s, batch):
            if s.klass is MessageClass.TEMPLATE:
                raise TresenError(
                    ErrorCode.INVALID_PARAMETER,
                    "template messages go from a business to a customer",
                )
            return Admission()
        business, customer = s.sender, s.recipient
        in_window = window_open(batch.windows.get((business, customer)), batch.now, self.policy)
        if s.klass is not MessageClass.TEMPLATE:
            if not in_window:
                raise TresenError(
                    ErrorCode.REENGAGEMENT,
                    "more than 24 hours have passed since the customer last wrote; "
                    "use an approved template",
                    window_hours=self.policy.window_hours,
                )
            if s.klass is MessageClass.SYSTEM:
                # Typing indicators accompany an answer: they must not use up the rates the
                # answer itself needs, and they are no message to price. (The customer's
                # client refuses anything else sent under this class, and reports it.)
                return Admission()
            self._take_rates(business, customer, batch)
            return Admission(pricing=self._free(batch, customer))
        template = self._template(s, batch)
        category = TemplateCategory(template.category)
        self._check_consent(business, customer, category, batch)
        reaches = None
        if not in_window:
            self._check_tier(business, customer, batch, fresh_reach)
            reaches = (business, customer)
        self._take_rates(business, customer, batch)
        if reaches is not None:
            fresh_reach[business].add(customer)
        pricing = self._price(business, customer, category, in_window, batch)
        return Admission(pricing=pricing, template_id=template.id, reaches=reaches)

    def _template(self, s: SendIntent, batch: _Batch) -> repo.TemplateFacts:
        template_id = _template_id(s)
        template = None if template_id is None else batch.templates.get(template_id)
        if template is None or template.business_account != s.sender:
            raise TresenError(
                ErrorCode.TEMPLATE_NOT_FOUND,
                "template does not exist or does not belong to this business",
                template=s.template_ref,
            )
        status = template.status
        if status == "PAUSED" and (template.paused_until_ms or 0) <= batch.now:
            status = "APPROVED"  # the pause is over
        if status == "PAUSED":
            raise TresenError(
                ErrorCode.TEMPLATE_PAUSED,
                "the template is paused because of low quality",
                template=s.template_ref,
                paused_until_ms=template.paused_until_ms,
            )
        if status == "DISABLED":
            raise TresenError(
                ErrorCode.TEMPLATE_DISABLED, "the template is disabled", template=s.template_ref
            )
        if status != "APPROVED":
            raise TresenError(
                ErrorCode.TEMPLATE_NOT_FOUND,
                "the template is not approved",
                template=s.template_ref,
                status=status,
            )
        return template

    def _check_consent(
        self, business: str, customer: str, category: TemplateCategory, batch: _Batch
    ) -> None:
        scope = _SCOPE_OF[category]
        state, source = batch.consents.get((business, customer, scope), ("none", ""))
        allowed = state == "opted_in" and (
            source == "customer"
            or (scope == "utility" and source == "business" and self.policy.accept_attested_consent)
        )
        if not allowed:
            raise TresenError(
                ErrorCode.MARKETING_STOPPED,
                f"the customer has not opted in to {scope} messages from this business",
                scope=scope,
            )

    def _check_tier(
        self, business: str, customer: str, batch: _Batch, fresh_reach: dict[str, set[str]]
    ) -> None:
        if (business, customer) in batch.reached or customer in fresh_reach[business]:
            return  # this customer already counts in the rolling 24 hours
        limit = tier_limit(self._tier(business, batch), self.policy)
        used = batch.reach_counts.get(business, 0) + len(fresh_reach[business])
        if limit is not None and used >= limit:
            raise TresenError(
                ErrorCode.SPAM_RATE_LIMITED,
                f"messaging limit reached: {limit} customers per 24 hours at this tier",
                limit=limit,
            )

    def _tier(self, business: str, batch: _Batch) -> int:
        row = batch.limits.get(business)
        if row is not None:
            return row.tier
        facts = batch.facts.get(business)
        verified = facts is not None and facts.verified
        return self.policy.verified_start_tier if verified else self.policy.start_tier

    def _take_rates(self, business: str, customer: str, batch: _Batch) -> None:
        row = batch.limits.get(business)
        mps = min(
            (row.throughput_mps if row and row.throughput_mps else None)
            or self.policy.business_throughput_mps,
            self.policy.business_throughput_max_mps,
        )
        buckets = self._throughput.get(mps)
        if buckets is None:
            buckets = self._throughput[mps] = TokenBuckets(self.clock, mps, mps)
        wait_ms = buckets.take(business)
        if wait_ms:
            raise TresenError(
                ErrorCode.THROUGHPUT_REACHED,
                f"more than {mps} messages per second from this business",
                retry_after_ms=wait_ms,
            )
        wait_ms = self._pairs.take((business, customer))
        if wait_ms:
            buckets.give_back(business)  # refused: it does not count against the business
            raise TresenError(
                ErrorCode.PAIR_RATE_LIMITED,
                "too many messages to this customer in a short time",
                retry_after_ms=wait_ms,
            )

    def _free(self, batch: _Batch, customer: str) -> Pricing:
        return self._free_facts(batch.facts[customer])

    def _price(
        self,
        business: str,
        customer: str,
        category: TemplateCategory,
        in_window: bool,
        batch: _Batch,
    ) -> Pricing:
        business_facts, customer_facts = batch.facts[business], batch.facts[customer]
        country = customer_facts.country
        priced = pricing_category(category, business_facts.country, country)
        if priced is PricingCategory.UTILITY and in_window:
            return Pricing(
                False, priced, PricingType.FREE_CUSTOMER_SERVICE, country, 0, self.policy.currency
            )
        micros, currency = self.rate(business, priced, country, batch.rates)
        return Pricing(True, priced, PricingType.REGULAR, country, micros, currency)

    def rate(
        self,
        business: str,
        category: PricingCategory,
        country: str,
        rows: dict[tuple[str, str, str], tuple[int, str]],
    ) -> tuple[int, str]:
        """The price of a category in a country: the business's override, then the operator's
        card (table, then settings), country before ``*``."""
        for owner in (business, ""):
            for where in (country, "*"):
                found = rows.get((owner, str(category), where))
                if found is not None:
                    return found
        card = self.policy.rate_card.get(str(category), {})
        micros = card.get(country, card.get("*", 0))
        return micros, self.policy.currency

    async def record(
        self,
        conn: AsyncConnection,
        accepted: Sequence[tuple[SendIntent, Admission, str]],
        now_ms: int,
    ) -> None:
        """Write what accepted sends change: windows, reach and pricing facts."""
        if not accepted:
            return
        opened = {a.opens_window for _, a, _ in accepted if a.opens_window is not None}
        await repo.touch_windows(conn, opened, now_ms)
        reached = {a.reaches for _, a, _ in accepted if a.reaches is not None}
        await repo.record_reach(conn, reached, now_ms)
        await repo.insert_pricing(
            conn,
            [
                repo.PricingRow(
                    message_id,
                    intent.sender,
                    intent.recipient,
                    admission.template_id,
                    str(admission.pricing.category),
                    admission.pricing.billable,
                    str(admission.pricing.type),
                    admission.pricing.country,
                    admission.pricing.price_micros,
                    admission.pricing.currency,
                    now_ms,
                )
                for intent, admission, message_id in accepted
                # Session messages are free: their facts follow from the class at delivery.
                if admission.pricing is not None and admission.template_id is not None
            ],
        )

    async def delivered(
        self, conn: AsyncConnection, messages: Sequence[Delivery], now_ms: int
    ) -> dict[str, Pricing]:
        """Bill what was delivered for the first time and count it; the pricing facts of each
        business message to a customer, for its ``delivered`` event. The only place that
        charges: a message that expires undelivered (reported ``failed``) costs nothing."""
        if not self.policy.enabled or not messages:
            return {}
        priced, rows = await self._pricing(conn, messages)
        await repo.count_deliveries(conn, await self._delivery_counts(conn, messages, rows, now_ms))
        if rows:
            await repo.charge(conn, rows.values(), now_ms)
        # Whose blocks and reports count: customers the business's messages reached.
        received = {
            (m.sender_account, m.recipient_account) for m in messages if m.message_id in priced
        }
        await repo.record_recipients(conn, received, now_ms)
        return priced

    async def _delivery_counts(
        self,
        conn: AsyncConnection,
        messages: Sequence[Delivery],
        rows: dict[str, repo.PricingRow],
        now_ms: int,
    ) -> dict[tuple[str, int, int], int]:
        """Deliveries of businesses' messages to others per (business, template or 0, day):
        the denominators of quality, kept as counts so that no message record is needed."""
        others = [m for m in messages if m.sender_account != m.recipient_account]
        facts = await self._facts_of(conn, {m.sender_account for m in others})
        counts: dict[tuple[str, int, int], int] = defaultdict(int)
        for m in others:
            sender = facts.get(m.sender_account)
            if sender is None or sender.kind != "business":
                continue
            row = rows.get(m.message_id)
            template_id = 0 if row is None or row.template_id is None else row.template_id
            counts[(m.sender_account, template_id, now_ms // DAY_MS)] += 1
        return counts

    async def pricing_of(
        self, conn: AsyncConnection, messages: Sequence[Delivery]
    ) -> dict[str, Pricing]:
        """The pricing facts of business → customer messages (e.g. for an answer to a
        repeated send), as their ``accepted`` answer carried them."""
        if not self.policy.enabled or not messages:
            return {}
        return (await self._pricing(conn, messages))[0]

    async def _pricing(
        self, conn: AsyncConnection, messages: Sequence[Delivery]
    ) -> tuple[dict[str, Pricing], dict[str, repo.PricingRow]]:
        pairs = {(m.sender_account, m.recipient_account) for m in messages}
        facts = await self._facts_of(conn, {a for p in pairs for a in p})
        to_customers = [
            m
            for m in messages
            if m.sender_account != m.recipient_account
            and (s := facts.get(m.sender_account)) is not None
            and (r := facts.get(m.recipient_account)) is not None
            and s.kind == "business"
            and r.kind == "customer"
            and m.klass != MessageClass.SYSTEM  # typing indicators carry no pricing
        ]
        templates = [m.message_id for m in to_customers if m.klass == MessageClass.TEMPLATE]
        rows = await repo.pricing_of(conn, templates) if templates else {}
        priced: dict[str, Pricing] = {}
        for m in to_customers:
            row = rows.get(m.message_id)
            priced[m.message_id] = (
                _pricing(row) if row is not None else self._free_facts(facts[m.recipient_account])
            )
        return priced, rows

    def _free_facts(self, customer: repo.AccountFacts) -> Pricing:
        return Pricing(
            billable=False,
            category=PricingCategory.SERVICE,
            type=PricingType.FREE_CUSTOMER_SERVICE,
            country=customer.country,
            price_micros=0,
            currency=self.policy.currency,
        )

    # --- blocks, reports, quality and tiers ----------------------------------------------------

    async def block(self, blocker: AccountId, blocked: AccountId) -> bool:
        if blocker == blocked:
            raise TresenError(ErrorCode.INVALID_PARAMETER, "you cannot block yourself")
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            facts = await repo.account_facts(conn, {blocker, blocked})
            if blocked not in facts:
                raise TresenError(ErrorCode.UNDELIVERABLE, "no such account", account_id=blocked)
            new = await repo.add_block(conn, blocker, blocked, now)
            if new and facts[blocked].kind == "business":
                await repo.add_quality_event(
                    conn,
                    business=blocked,
                    customer=blocker,
                    kind="block",
                    reason="",
                    detail="",
                    message_id=None,
                    template_id=None,
                    now_ms=now,
                    counted=await self._counts(conn, blocked, blocker, now),
                )
        self.changed(blocker)  # committed: a batch that reads from now on sees it
        log.info("account blocked", new=new)
        return new

    async def unblock(self, blocker: AccountId, blocked: AccountId) -> bool:
        async with self.db.write() as conn:
            removed = await repo.remove_block(conn, blocker, blocked)
        self.changed(blocker)
        return removed

    async def blocked(self, blocker: AccountId) -> list[tuple[str, int]]:
        async with self.db.read() as conn:
            return await repo.blocks_of(conn, blocker)

    async def report(
        self,
        reporter: AccountId,
        reported: AccountId,
        reason: str,
        *,
        message_id: str | None = None,
        detail: str = "",
        block: bool = False,
    ) -> None:
        """A customer reports an account (optionally one message of it, and blocking it)."""
        if reason not in REPORT_REASONS:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "unknown report reason",
                reason=reason,
                reasons=list(REPORT_REASONS),
            )
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            facts = await repo.account_facts(conn, {reported})
            if reported not in facts or reported == reporter:
                raise TresenError(ErrorCode.UNDELIVERABLE, "no such account", account_id=reported)
            template_id = None
            if message_id is not None:
                # Only a message this reporter received from that account can be named.
                if await repo.message_parties(conn, message_id) != (reported, reporter):
                    message_id = None
                else:
                    priced = (await repo.pricing_of(conn, [message_id])).get(message_id)
                    template_id = None if priced is None else priced.template_id
            await repo.add_quality_event(
                conn,
                business=reported,
                customer=reporter,
                kind="report",
                reason=reason,
                detail=detail,
                message_id=message_id,
                template_id=template_id,
                now_ms=now,
                counted=await self._counts(conn, reported, reporter, now),
            )
            if block:
                await repo.add_block(conn, reporter, reported, now)
        if block:
            self.changed(reporter)
        log.info("account reported", reason=reason, template_id=template_id)

    async def _counts(self, conn: AsyncConnection, business: str, customer: str, now: int) -> bool:
        """Whether a block or report moves the business's quality rating."""
        received = await repo.received_at(conn, business, customer)
        counted = await repo.last_counted_negative(conn, business, customer)
        return negative_counts(received, counted, now, self.policy)

    async def standing(self, business: AccountId) -> BusinessStanding:
        """Quality over the last ``quality_days``, tier (evaluated if due) and usage."""
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            facts = await repo.account_facts(conn, {business})
            if business not in facts or facts[business].kind != "business":
                raise TresenError(ErrorCode.NOT_A_BUSINESS, "this account is not a business")
            quality, negatives, delivered = await self._quality(conn, business, now)
            since = now - self.policy.quality_days * DAY_MS
            uncounted = await repo.uncounted_since(conn, business, since)
            row = await self._evaluate_tier(conn, business, facts[business], quality, now)
            reached = await repo.reach_count(conn, business, now - DAY_MS)
        return BusinessStanding(
            quality=quality,
            blocks=negatives.get("block", 0),
            reports=negatives.get("report", 0),
            uncounted=uncounted,
            delivered=delivered,
            tier=row.tier,
            tier_limit=tier_limit(row.tier, self.policy),
            reached_24h=reached,
            throughput_mps=min(
                row.throughput_mps or self.policy.business_throughput_mps,
                self.policy.business_throughput_max_mps,
            ),
        )

    async def _quality(
        self, conn: AsyncConnection, business: str, now: int
    ) -> tuple[Quality, dict[str, int], int]:
        since = now - self.policy.quality_days * DAY_MS
        negatives = await repo.negatives_since(conn, business, since)
        delivered = await repo.delivered_since(conn, business, since)
        return quality_of(sum(negatives.values()), delivered, self.policy), negatives, delivered

    async def _evaluate_tier(
        self,
        conn: AsyncConnection,
        business: str,
        facts: repo.AccountFacts,
        quality: Quality,
        now: int,
    ) -> repo.LimitsRow:
        row = (await repo.limits_of(conn, {business})).get(business)
        if row is None:
            start = self.policy.verified_start_tier if facts.verified else self.policy.start_tier
            row = repo.LimitsRow(business, start, now, None)
            await repo.save_limits(conn, row, now)
            self._cache_limits(row)
            return row
        if now - row.evaluated_ms < self.policy.tier_evaluation_hours * HOUR_MS:
            return row
        used = await repo.reach_count(conn, business, now - self.policy.tier_usage_days * DAY_MS)
        tier = tier_step(row.tier, used, quality, self.policy)
        if tier != row.tier:
            log.info("tier changed", business=business, tier=tier, was=row.tier, quality=quality)
        row = repo.LimitsRow(business, tier, now, row.throughput_mps)
        await repo.save_limits(conn, row, now)
        self._cache_limits(row)
        return row

    async def set_throughput(self, business: AccountId, mps: int | None, *, by: str) -> None:
        """Raise (or reset) a business's throughput; at most ``business_throughput_max_mps``."""
        if mps is not None and not 1 <= mps <= self.policy.business_throughput_max_mps:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                f"throughput must be 1 to {self.policy.business_throughput_max_mps} per second",
            )
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            facts = await repo.account_facts(conn, {business})
            if business not in facts or facts[business].kind != "business":
                raise TresenError(ErrorCode.NOT_A_BUSINESS, "this account is not a business")
            row = (await repo.limits_of(conn, {business})).get(business)
            start = (
                self.policy.verified_start_tier
                if facts[business].verified
                else self.policy.start_tier
            )
            row = repo.LimitsRow(
                business,
                row.tier if row else start,
                row.evaluated_ms if row else now,
                mps,
            )
            await repo.save_limits(conn, row, now)
            self._cache_limits(row)
            await add_audit(
                conn,
                at_ms=now,
                operator=by,
                action="throughput",
                account_id=business,
                details={"messages_per_second": mps},
            )


def _template_id(s: SendIntent) -> int | None:
    if s.klass is not MessageClass.TEMPLATE or not s.template_ref:
        return None
    try:
        return int(s.template_ref)
    except ValueError:
        return None


def _pricing(row: repo.PricingRow) -> Pricing:
    return Pricing(
        row.billable,
        PricingCategory(row.category),
        PricingType(row.pricing_type),
        row.country,
        row.price_micros,
        row.currency,
    )

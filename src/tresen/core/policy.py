"""The numbers of the platform rules: every one an operator setting (``[policy]`` in the
configuration, ``TRESEN_POLICY__…`` in the environment), with the defaults of the
architecture of record."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["DEFAULT_RATE_CARD", "PolicySettings"]

# Micro-units of the currency per delivered template, by category and recipient country
# (ISO 3166-1 alpha-2; "*" for every other country).
DEFAULT_RATE_CARD: dict[str, dict[str, int]] = {
    "marketing": {"*": 60_000, "DE": 131_000, "FR": 143_000, "GB": 52_000, "US": 25_000},
    "utility": {"*": 10_000, "DE": 55_000, "FR": 30_000, "GB": 22_000, "US": 4_000},
    "authentication": {"*": 10_000, "DE": 55_000, "FR": 30_000, "GB": 22_000, "US": 4_000},
    "authentication_international": {"*": 30_000, "DE": 76_000, "FR": 48_000, "GB": 36_000},
}


class PolicySettings(BaseModel):
    enabled: bool = Field(
        default=True,
        description="off: no window, consent, tier, block or pricing checks (benchmarks only)",
    )
    window_hours: float = Field(default=24.0, gt=0, description="customer-service window")
    tier_ladder: list[int] = Field(
        default=[250, 2_000, 10_000, 100_000, 0],
        min_length=1,
        description="unique customers per rolling 24 h reached outside a window; 0 = unlimited",
    )
    start_tier: int = Field(default=0, ge=0)
    verified_start_tier: int = Field(default=1, ge=0)
    tier_upgrade_ratio: float = Field(default=0.5, gt=0, le=1)
    tier_usage_days: int = Field(default=7, ge=1)
    tier_evaluation_hours: float = Field(default=24.0, gt=0)
    quality_days: int = Field(default=7, ge=1)
    quality_yellow_ratio: float = Field(default=0.02, gt=0)
    quality_red_ratio: float = Field(default=0.05, gt=0)
    quality_recipient_days: int = Field(
        default=30,
        ge=1,
        description="a block or report counts towards quality only from a customer who "
        "received a message from the business within this many days",
    )
    quality_min_delivered: int = Field(
        default=50, ge=1, description="delivered messages a ratio is computed against, at least"
    )
    business_throughput_mps: int = Field(default=80, ge=1)
    business_throughput_max_mps: int = Field(default=1_000, ge=1)
    pair_rate_per_minute: float = Field(default=10.0, gt=0, description="business → customer")
    pair_burst: int = Field(default=20, ge=1)
    accept_attested_consent: bool = Field(
        default=True, description="business-attested opt-ins count for utility/authentication"
    )
    template_auto_approve: bool = Field(default=False, description="development only")
    template_pause_hours: list[float] = Field(
        default=[3.0, 6.0], description="pauses of a low-quality template before it is disabled"
    )
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    rate_card: dict[str, dict[str, int]] = Field(default_factory=lambda: DEFAULT_RATE_CARD)

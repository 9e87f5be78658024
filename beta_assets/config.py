"""What users set in the Dagster launchpad about the metrics (defaults are the notebook's)."""

from datetime import timedelta

from dagster import ConfigurableResource
from pydantic import Field

from beta_assets.metrics import MetricSettings
from beta_assets.settings import (
    BAR,
    MARKET_PREMIUM,
    MARKET_SYMBOL,
    MIN_ALIGNED_BARS,
    MIN_SAMPLE_SIZE,
    NOISE_AMPLITUDE,
    RISK_FREE_RATE,
)
from beta_assets.symbols import normalised_symbol


class BetaMetricsConfig(ConfigurableResource):
    """One place for the metric settings, shared by every asset of a run."""

    market_symbol: str = Field(
        default=MARKET_SYMBOL, description="The market the betas are against."
    )
    risk_free_rate: float = Field(default=RISK_FREE_RATE, description="CAPM risk-free rate.")
    market_premium: float = Field(default=MARKET_PREMIUM, description="CAPM market risk premium.")
    min_sample_size: int = Field(
        default=MIN_SAMPLE_SIZE,
        ge=1,
        description="Windows with fewer (ticker, market) pairs are dropped.",
    )
    noise: bool = Field(
        default=False,
        description="Add the notebook's uniform noise to changePercent (deterministic per tick).",
    )
    noise_amplitude: float = Field(
        default=NOISE_AMPLITUDE, ge=0, description="Width of the noise: (u - 0.5) * amplitude."
    )

    bar_seconds: int = Field(
        default=int(BAR.total_seconds()),
        gt=0,
        description="Bar of the time-aligned beta (last price per bar); must divide 300 s.",
    )
    min_aligned_bars: int = Field(
        default=MIN_ALIGNED_BARS,
        ge=3,
        description="beta_aligned is null for windows with fewer bars where both have returns.",
    )
    max_bad_share: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Check silver_value_shares fails (and blocks the run) above this share of "
        "unusable ticks.",
    )
    freshness_bound_minutes: float = Field(
        default=60, gt=0, description="Check gold_fresh warns when gold lags silver by more."
    )

    def settings(self) -> MetricSettings:
        return MetricSettings(
            market_symbol=normalised_symbol(self.market_symbol),
            risk_free_rate=self.risk_free_rate,
            market_premium=self.market_premium,
            min_sample_size=self.min_sample_size,
            noise=self.noise,
            noise_amplitude=self.noise_amplitude,
            bar=timedelta(seconds=self.bar_seconds),
            min_aligned_bars=self.min_aligned_bars,
        )

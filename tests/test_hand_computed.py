"""A case small enough to compute by hand (min_sample_size 1 so every window shows)."""

from datetime import timedelta

import pytest

from beta_assets.settings import MARKET_PREMIUM, RISK_FREE_RATE
from tests.datasets import at, ticks
from tests.pipeline import run_all

# Ticker X at 14:00 (x=1, $10) and 15:00 (x=2, $11); market at 13:00 (0.1), 14:30 (0.4),
# 15:50 (0.9). Pairs within +-1h: (1, .1) (1, .4) (2, .4) (2, .9).
CASE = ticks(
    [
        ("X", 10.0, 1.0, at(14)),
        ("X", 11.0, 2.0, at(15)),
        ("SPY", 500.0, 0.1, at(13)),
        ("SPY", 501.0, 0.4, at(14, 30)),
        ("SPY", 502.0, 0.9, at(15, 50)),
    ]
)


@pytest.fixture
def gold(lake_root):
    frame = run_all(lake_root, CASE, min_sample_size=1)
    return frame.set_index(
        frame["window_start"].dt.tz_convert("UTC").dt.tz_localize(None)
    ).sort_index()


def test_window_with_both_ticks(gold):
    # dx = (-.5, -.5, .5, .5), dy = (-.35, -.05, -.05, .45): cov = .4/3, var_y = .33/3
    row = gold.loc[at(13, 30).replace(tzinfo=None)]
    assert row["sample_size"] == 4
    assert row["beta"] == pytest.approx(0.4 / 0.33, rel=1e-12)
    assert row["volatility"] == pytest.approx((1 / 3) ** 0.5, rel=1e-12)
    assert row["momentum"] == pytest.approx(1.5, rel=1e-12)
    assert row["close_price"] == 11.0
    assert row["cost_of_equity"] == pytest.approx(RISK_FREE_RATE + 0.4 / 0.33 * MARKET_PREMIUM)


def test_window_sets_follow_the_two_hour_span(gold):
    both = [w for w in gold.index if at(13).replace(tzinfo=None) < w <= at(14).replace(tzinfo=None)]
    assert len(both) == 12 and (gold.loc[both, "sample_size"] == 4).all()
    first_only = gold.loc[at(12, 5).replace(tzinfo=None) : at(13).replace(tzinfo=None)]
    assert len(first_only) == 12 and (first_only["sample_size"] == 2).all()
    # One ticker value against two market values: covariance 0, not a division error.
    assert (first_only["beta"] == 0).all() and (first_only["volatility"] == 0).all()
    last_only = gold.loc[at(14, 5).replace(tzinfo=None) : at(15).replace(tzinfo=None)]
    assert len(last_only) == 12 and (last_only["momentum"] == 2.0).all()
    assert len(gold) == 36
    ends = gold["window_end"].dt.tz_convert("UTC").dt.tz_localize(None)
    assert ((ends - gold.index) == timedelta(hours=2)).all()

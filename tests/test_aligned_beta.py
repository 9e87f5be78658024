"""beta_aligned: the OLS beta of time-aligned bar returns, next to the notebook's beta."""

from datetime import timedelta

import numpy as np
import pytest

from beta_assets.feed.feed import append_sessions
from beta_assets.feed.simulator import SimulationSpec, planted_betas
from beta_assets.settings import BLUME_PRIOR, BLUME_WEIGHT, GOLD_TABLE
from resources.lake import DeltaLake
from tests import datasets
from tests.pipeline import read_table, run_all, run_range


def test_hand_computed_ols_equals_the_columns(lake_root):
    rng = np.random.default_rng(3)
    minutes = 40
    market_prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, minutes)))
    symbol_prices = 20 * np.exp(np.cumsum(rng.normal(0, 0.002, minutes)))
    rows = []
    for minute in range(minutes):
        # Market ticks at :05 and :50 of each minute, the symbol at :20 and :40: the last
        # price of each bar is the :50 and :40 tick.
        moment = datasets.at(14, minute)
        for second, price in ((5, market_prices[minute] * 0.999), (50, market_prices[minute])):
            rows.append(("SPY", price, 0.1, moment + timedelta(seconds=second)))
        if minute != 17:  # a bar without the symbol: two returns fewer
            for second, price in ((20, symbol_prices[minute] * 1.001), (40, symbol_prices[minute])):
                rows.append(("X", price, 0.2, moment + timedelta(seconds=second)))
    gold = run_all(lake_root, datasets.ticks(rows), min_sample_size=1, min_aligned_bars=3)
    window = gold[gold["window_start"] == datasets.at(13, 5)].iloc[0]  # holds all 40 bars

    has_symbol = np.arange(minutes) != 17
    both = has_symbol[1:] & has_symbol[:-1]  # a return needs the bar and the one before
    x = np.diff(np.log(market_prices))[both]
    y = np.diff(np.log(symbol_prices))[both]
    sxx, sxy = ((x - x.mean()) ** 2).sum(), ((x - x.mean()) * (y - y.mean())).sum()
    slope = sxy / sxx
    residuals = y - y.mean() - slope * (x - x.mean())
    assert window["aligned_bars"] == len(x) == minutes - 3
    assert window["beta_aligned"] == pytest.approx(slope, rel=1e-9)
    se = np.sqrt((residuals**2).sum() / (len(x) - 2) / sxx)
    assert window["beta_aligned_se"] == pytest.approx(se, rel=1e-9)
    assert window["beta_aligned_r2"] == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-9)
    assert window["beta_aligned_blume"] == pytest.approx(
        BLUME_WEIGHT * slope + BLUME_PRIOR, rel=1e-9
    )


def test_too_few_bars_give_null(lake_root):
    rows = [("SPY", 100 + m, 0.1, datasets.at(14, m)) for m in range(10)]
    rows += [("X", 20 + m * 0.1, 0.2, datasets.at(14, m, 30)) for m in range(10)]
    gold = run_all(lake_root, datasets.ticks(rows), min_sample_size=1)  # 30 bars needed
    assert gold["aligned_bars"].max() == 9 and gold["beta_aligned"].isna().all()


def test_aligned_beta_recovers_planted_betas(lake_root, capsys):
    spec = SimulationSpec(symbols=10, days=5, interval_seconds=3.0, seed=9)
    append_sessions(DeltaLake(root=lake_root), spec, lambda _: None)
    run_range(lake_root, "2026-01-05-12:00", "2026-01-09-20:00")
    gold = read_table(lake_root, GOLD_TABLE)
    medians = gold.groupby("s")[["beta", "beta_aligned"]].median()
    planted = medians.index.map(planted_betas(spec))
    aligned_error = (medians["beta_aligned"] - planted).abs()
    notebook_error = (medians["beta"] - planted).abs()
    with capsys.disabled():
        print(
            f"\nplanted-beta recovery over {len(medians)} symbols: aligned MAE "
            f"{aligned_error.mean():.3f} (max {aligned_error.max():.3f}); notebook beta MAE "
            f"{notebook_error.mean():.3f} (max {notebook_error.max():.3f})"
        )
    assert aligned_error.mean() <= 0.05
    assert aligned_error.max() <= 0.15

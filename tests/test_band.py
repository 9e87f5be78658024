"""The numpy kernel against brute-force pair enumeration."""

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from beta_assets.band import MarketSeries, bucket_sums
from beta_assets.settings import BAND, SLIDE

US = 1_000_000
BAND_US = int(BAND.total_seconds() * US)
SLIDE_US = int(SLIDE.total_seconds() * US)


def batch(symbols, times_us, x, prices):
    return pa.RecordBatch.from_pydict(
        {
            "s": pa.array(symbols, pa.string()),
            "currentPrice": pa.array(prices, pa.float64()),
            "changePercent": pa.array(x, pa.float64()),
            "event_time": pa.array(times_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def test_band_is_inclusive_at_both_ends():
    market = MarketSeries.from_arrays(np.array([0, 10, 20]) * US * 360, np.array([1.0, 2.0, 3.0]))
    hour = 3600 * US
    lo, hi = market.band(np.array([hour, hour + 1, -hour, -hour - 1]), BAND_US)
    assert list(hi - lo) == [3, 2, 1, 0]  # t=1h meets 0, 1h and 2h; 1h+1us misses 0; ...


def brute_force(symbols, times, x, m_times, m_y):
    """Per (symbol, bucket): n, sum x, sum y, sum xx, sum yy, sum xy, unshifted."""
    out = {}
    for s, t, xi in zip(symbols, times, x, strict=True):
        paired = np.abs(m_times - t) <= BAND_US
        ys = m_y[paired]
        key = (s, t // SLIDE_US * SLIDE_US)
        acc = out.setdefault(key, np.zeros(6))
        acc += [len(ys), xi * len(ys), ys.sum(), xi * xi * len(ys), (ys * ys).sum(), xi * ys.sum()]
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_partials_equal_brute_force_sums(seed):
    rng = np.random.default_rng(seed)
    m_times = np.sort(rng.integers(0, 6 * 3600, 300)) * US
    m_y = rng.normal(1.5, 0.2, 300)
    n = 400
    times = rng.integers(0, 6 * 3600, n) * US
    symbols = rng.choice(["A", "B", "C"], n)
    x = rng.normal(-2.0, 0.5, n)
    prices = rng.uniform(10, 20, n)
    market = MarketSeries.from_arrays(m_times, m_y)
    rows = bucket_sums(batch(symbols, times, x, prices), market, BAND_US, SLIDE_US).to_pylist()
    expected = brute_force(symbols, times, x, m_times, m_y)
    assert len(rows) == len(expected)
    for row in rows:
        key = (row["s"], int(row["bucket_start"].timestamp() * US))
        n_pairs, sx, sy, sxx, syy, sxy = expected[key]
        assert row["pair_count"] == n_pairs
        xr, yr = row["x_ref"], row["y_ref"]
        # Undo the shift: sum (x - xr) = sx - n xr, and so on.
        assert row["sum_x"] == pytest.approx(sx - n_pairs * xr, abs=1e-9)
        assert row["sum_y"] == pytest.approx(sy - n_pairs * yr, abs=1e-9)
        assert row["sum_xx"] == pytest.approx(sxx - 2 * xr * sx + n_pairs * xr * xr, abs=1e-8)
        assert row["sum_yy"] == pytest.approx(syy - 2 * yr * sy + n_pairs * yr * yr, abs=1e-8)
        shifted_xy = sxy - xr * sy - yr * sx + n_pairs * xr * yr
        assert row["sum_xy"] == pytest.approx(shifted_xy, abs=1e-8)


def test_bucket_extremes_and_last_paired_tick():
    minute = 60 * US
    m_times = np.array([0, 30, 200]) * minute  # the 200-minute tick pairs with no one below
    m_y = np.array([0.2, -0.1, 9.0])
    times = np.array([55, 58, 58, 180]) * minute  # one bucket at 55; 180 is another bucket
    prices = [1.0, 2.0, 3.0, 4.0]
    market = MarketSeries.from_arrays(m_times, m_y)
    rows = bucket_sums(
        batch(["A"] * 4, times, [0.1, 0.2, 0.3, 0.4], prices), market, BAND_US, SLIDE_US
    )
    first, second = rows.to_pylist()
    assert (first["pair_count"], first["y_min"], first["y_max"]) == (6, -0.1, 0.2)
    assert first["last_paired_price"] == 3.0  # 58 min twice: the higher price
    assert first["last_paired_time"].timestamp() * US == 58 * minute
    assert (first["x_min"], first["x_max"]) == (0.1, 0.3)
    assert (second["pair_count"], second["y_min"], second["y_max"]) == (1, 9.0, 9.0)


def test_unpaired_ticks_are_counted_not_summed():
    market = MarketSeries.from_arrays(np.array([0]), np.array([1.0]))
    far = int(timedelta(hours=5).total_seconds() * US)
    row = bucket_sums(
        batch(["A", "A"], [far, far + 1], [1.0, 2.0], [5.0, 6.0]), market, BAND_US, SLIDE_US
    ).to_pylist()[0]
    assert (row["pair_count"], row["paired_ticks"], row["unpaired_ticks"]) == (0, 0, 2)
    assert row["y_min"] is None and row["last_paired_price"] is None


def test_exact_duplicate_ticks_count_once():
    market = MarketSeries.from_arrays(np.array([0, 60]) * US, np.array([0.5, 0.7]))
    ticks = batch(
        ["A", "A", "A", "A"],
        [30 * US, 30 * US, 30 * US, 31 * US],
        [0.1, 0.1, 0.2, 0.1],
        [9.0, 9.0, 9.0, 9.0],
    )
    (row,) = bucket_sums(ticks, market, BAND_US, SLIDE_US).to_pylist()
    # The second tick repeats the first exactly; the third differs in change, the fourth in time.
    assert (row["duplicate_ticks"], row["paired_ticks"], row["pair_count"]) == (1, 3, 6)

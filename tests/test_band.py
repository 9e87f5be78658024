"""The numpy kernel against brute-force pair enumeration."""

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from beta_assets.band import Geometry, MarketSeries, bar_log_returns, bucket_sums
from beta_assets.settings import BAND, SLIDE

US = 1_000_000
BAND_US = int(BAND.total_seconds() * US)
SLIDE_US = int(SLIDE.total_seconds() * US)
BAR_US = 60 * US
EVERYTHING = Geometry(BAND_US, SLIDE_US, BAR_US, first_tick_us=-(10**18))


def market_of(times, returns, prices=None):
    times = np.asarray(times)
    prices = np.full(len(times), 100.0) if prices is None else np.asarray(prices, dtype=float)
    return MarketSeries.from_arrays(times, np.asarray(returns, dtype=float), prices)


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
    market = market_of(np.array([0, 10, 20]) * US * 360, np.array([1.0, 2.0, 3.0]))
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
    market = market_of(m_times, m_y)
    rows = bucket_sums(batch(symbols, times, x, prices), market, EVERYTHING).to_pylist()
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
    market = market_of(m_times, m_y)
    rows = bucket_sums(batch(["A"] * 4, times, [0.1, 0.2, 0.3, 0.4], prices), market, EVERYTHING)
    first, second = rows.to_pylist()
    assert (first["pair_count"], first["y_min"], first["y_max"]) == (6, -0.1, 0.2)
    assert first["last_paired_price"] == 3.0  # 58 min twice: the higher price
    assert first["last_paired_time"].timestamp() * US == 58 * minute
    assert (first["x_min"], first["x_max"]) == (0.1, 0.3)
    assert (second["pair_count"], second["y_min"], second["y_max"]) == (1, 9.0, 9.0)


def test_unpaired_ticks_are_counted_not_summed():
    market = market_of(np.array([0]), np.array([1.0]))
    far = int(timedelta(hours=5).total_seconds() * US)
    row = bucket_sums(
        batch(["A", "A"], [far, far + 1], [1.0, 2.0], [5.0, 6.0]), market, EVERYTHING
    ).to_pylist()[0]
    assert (row["pair_count"], row["paired_ticks"], row["unpaired_ticks"]) == (0, 0, 2)
    assert row["y_min"] is None and row["last_paired_price"] is None


def test_exact_duplicate_ticks_count_once():
    market = market_of(np.array([0, 60]) * US, np.array([0.5, 0.7]))
    ticks = batch(
        ["A", "A", "A", "A"],
        [30 * US, 30 * US, 30 * US, 31 * US],
        [0.1, 0.1, 0.2, 0.1],
        [9.0, 9.0, 9.0, 9.0],
    )
    (row,) = bucket_sums(ticks, market, EVERYTHING).to_pylist()
    # The second tick repeats the first exactly; the third differs in change, the fourth in time.
    assert (row["duplicate_ticks"], row["paired_ticks"], row["pair_count"]) == (1, 3, 6)


def test_bar_returns_need_the_bar_before():
    minute = 60 * US
    codes = np.array([0, 0, 0, 0, 1, 1])
    times = np.array([0, 30, 70, 200, 10, 70]) * US  # series 0: bars 0, 0, 1, 3; series 1: 0, 1
    prices = np.array([10.0, 11.0, 12.0, 13.0, 50.0, 55.0])
    rows, bars, returns = bar_log_returns(codes, times, prices, minute)
    assert list(rows) == [2, 5] and list(bars) == [1, 1]  # bar 3 follows no bar 2
    assert returns == pytest.approx([np.log(12 / 11), np.log(55 / 50)])


def test_aligned_sums_pair_bar_returns_of_both_series():
    minute = 60 * US
    m_times = np.array([0, 65, 125, 185, 300]) * US  # bars 0, 1, 2, 3, 5
    m_prices = [100.0, 101.0, 100.5, 102.0, 103.0]
    market = market_of(m_times, np.zeros(5), m_prices)
    t_times = np.array([10, 70, 130, 250]) * US  # bars 0, 1, 2, 4
    t_prices = [20.0, 20.4, 20.1, 21.0]
    (row,) = bucket_sums(
        batch(["A"] * 4, t_times, [0.0] * 4, t_prices), market, EVERYTHING
    ).to_pylist()
    # Both have returns in bars 1 and 2 only (the symbol has none in 3, the market none in 4).
    rm = np.log([101.0 / 100.0, 100.5 / 101.0])
    rt = np.log([20.4 / 20.0, 20.1 / 20.4])
    assert row["aligned_bars"] == 2
    assert row["sum_rm"] == pytest.approx(rm.sum(), rel=1e-12)
    assert row["sum_rt_rt"] == pytest.approx((rt**2).sum(), rel=1e-12)
    assert row["sum_rm_rt"] == pytest.approx((rm * rt).sum(), rel=1e-12)
    assert minute == BAR_US


def test_ticks_before_the_range_only_price_the_first_bar():
    minute = 60 * US
    market = market_of(np.array([0, 65, 125]) * US, np.zeros(3), [100.0, 101.0, 102.0])
    geometry = Geometry(BAND_US, SLIDE_US, BAR_US, first_tick_us=minute)
    ticks = batch(
        ["A", "A", "A"], np.array([10, 70, 130]) * US, [1.0, 2.0, 3.0], [20.0, 21.0, 22.0]
    )
    (row,) = bucket_sums(ticks, market, geometry).to_pylist()
    assert row["paired_ticks"] + row["unpaired_ticks"] == 2  # the 10 s tick is before the range
    assert row["aligned_bars"] == 2  # yet bar 1's return uses its price
    assert row["sum_rt"] == pytest.approx(np.log(21 / 20) + np.log(22 / 21), rel=1e-12)


def test_packed_key_order_equals_a_four_key_lexsort():
    from beta_assets.band import _symbol_time_price_order

    rng = np.random.default_rng(5)
    n = 5000
    codes = rng.integers(0, 4, n)
    times = rng.integers(0, 300, n) * US  # many equal (symbol, time) pairs
    prices = rng.choice([1.0, 2.0, 3.0], n)
    x = rng.choice([0.1, 0.2], n)
    order = _symbol_time_price_order(codes, times, prices, x)
    expected = np.lexsort((x, prices, times, codes))
    keys = np.column_stack((codes, times, prices, x))
    assert (keys[order] == keys[expected]).all()

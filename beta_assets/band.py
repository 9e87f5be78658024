"""The sums behind every gold metric, in numpy, for all the ticks of some symbols.

Notebook metrics. Every metric of a window is a function of sums over (ticker tick i, market
tick j) pairs with |t_i - m_j| <= band. Those sums factor per ticker tick: with the market
ticks sorted by time, the ticks paired with t_i are one index range [lo_i, hi_i), found by
two binary searches, and prefix sums over the market give that range's count, sum of y and
sum of y^2 in O(1). x (ticker changePercent) and y (market changePercent) are summed shifted
by reference values: covariance does not change under a shift, and values near zero avoid
the cancellation of sum(x^2) - sum(x)^2 / n.

Aligned returns. Both series are resampled to regular bars (last price in the bar); a bar's
log return needs a price in it and in the bar before. Bars where both the symbol and the
market have a return give one (market, symbol) return pair for the OLS beta.

Nothing here knows Spark or Dagster.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beta_assets.settings import CHANGE, EVENT_TIME, PRICE, SYMBOL

BUCKET_START = "bucket_start"
UTC_MICROS = pa.timestamp("us", tz="UTC")

# joined_returns: one row per (symbol, 5-minute bucket of its ticks).
#   notebook pairs: x = the symbol's changePercent, y = the market's, shifted by x_ref / y_ref
#   aligned bars:   rm = the market's bar log return, rt = the symbol's (not shifted: ~0 mean)
BUCKET_SCHEMA = pa.schema(
    [
        (SYMBOL, pa.string()),
        (BUCKET_START, UTC_MICROS),
        ("pair_count", pa.int64()),
        ("x_ref", pa.float64()),
        ("y_ref", pa.float64()),
        ("sum_x", pa.float64()),
        ("sum_y", pa.float64()),
        ("sum_xx", pa.float64()),
        ("sum_yy", pa.float64()),
        ("sum_xy", pa.float64()),
        ("x_min", pa.float64()),
        ("x_max", pa.float64()),
        ("y_min", pa.float64()),
        ("y_max", pa.float64()),
        ("paired_ticks", pa.int64()),
        ("unpaired_ticks", pa.int64()),
        ("duplicate_ticks", pa.int64()),
        ("last_paired_time", UTC_MICROS),
        ("last_paired_price", pa.float64()),
        ("aligned_bars", pa.int64()),
        ("sum_rm", pa.float64()),
        ("sum_rt", pa.float64()),
        ("sum_rm_rm", pa.float64()),
        ("sum_rt_rt", pa.float64()),
        ("sum_rm_rt", pa.float64()),
    ]
)
# What a window adds up from its buckets (tick counts stay per bucket).
WINDOW_FIELDS = [name for name in BUCKET_SCHEMA.names if name not in (SYMBOL, "duplicate_ticks")]


@dataclass(frozen=True)
class Geometry:
    """Time spans in epoch microseconds, and where the run's ticks start."""

    band_us: int
    bucket_us: int
    bar_us: int
    first_tick_us: int  # earlier ticks only give the price of the bar before the range


@dataclass(frozen=True)
class MarketSeries:
    """Market ticks sorted by (time, price) with prefix sums of the shifted returns.

    `times` are epoch microseconds; `prefix_y[k]` and `prefix_yy[k]` are the sums of
    (y - y_ref) and (y - y_ref)^2 over the first k ticks.
    """

    times: np.ndarray
    returns: np.ndarray
    prices: np.ndarray
    y_ref: float
    prefix_y: np.ndarray
    prefix_yy: np.ndarray

    @classmethod
    def from_arrays(
        cls, times_us: np.ndarray, returns: np.ndarray, prices: np.ndarray
    ) -> "MarketSeries":
        order = np.lexsort((prices, times_us))
        times = np.ascontiguousarray(times_us[order], dtype=np.int64)
        values = np.ascontiguousarray(returns[order], dtype=np.float64)
        # The median keeps |y - y_ref| small over the whole series, whatever its level.
        y_ref = float(np.median(values)) if len(values) else 0.0
        shifted = values - y_ref
        prefix_y = np.concatenate(([0.0], np.cumsum(shifted)))
        prefix_yy = np.concatenate(([0.0], np.cumsum(shifted * shifted)))
        prices = np.ascontiguousarray(prices[order], dtype=np.float64)
        return cls(times, values, prices, y_ref, prefix_y, prefix_yy)

    def __len__(self) -> int:
        return len(self.times)

    def band(self, tick_times: np.ndarray, band_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Index range [lo, hi) of the market ticks m with t - band <= m <= t + band."""
        lo = np.searchsorted(self.times, tick_times - band_us, side="left")
        hi = np.searchsorted(self.times, tick_times + band_us, side="right")
        return lo, hi

    def range_extremes(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Min and max of the returns over each non-empty range [lo_k, hi_k)."""
        if len(lo) == 0:
            return np.empty(0), np.empty(0)
        # reduceat over interleaved [lo, hi) boundaries; the padding makes hi == len valid.
        padded = np.append(self.returns, 0.0)
        bounds = np.column_stack((lo, hi)).ravel()
        return (
            np.minimum.reduceat(padded, bounds)[::2],
            np.maximum.reduceat(padded, bounds)[::2],
        )

    def bar_returns(self, bar_us: int) -> tuple[np.ndarray, np.ndarray]:
        """(bar numbers, log returns) of the market's bars that have one."""
        codes = np.zeros(len(self.times), dtype=np.int64)
        _, bars, returns = bar_log_returns(codes, self.times, self.prices, bar_us)
        return bars, returns


def bar_log_returns(
    codes: np.ndarray, times: np.ndarray, prices: np.ndarray, bar_us: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per series (code) sorted by time: (row of each bar's last tick, bar number, log return).

    A bar has a return when the bar just before it has a price too.
    """
    bars = times // bar_us
    is_last = np.ones(len(times), dtype=bool)
    is_last[:-1] = (codes[1:] != codes[:-1]) | (bars[1:] != bars[:-1])
    rows = np.flatnonzero(is_last)
    series, bar, price = codes[rows], bars[rows], prices[rows]
    follows = (series[1:] == series[:-1]) & (bar[1:] == bar[:-1] + 1)
    returns = np.log(price[1:] / price[:-1])
    return rows[1:][follows], bar[1:][follows], returns[follows]


@dataclass
class _Ticks:
    """Ticker ticks sorted by (symbol, time, price, change), exact duplicates removed."""

    dictionary: pa.Array
    codes: np.ndarray
    times: np.ndarray
    x: np.ndarray
    prices: np.ndarray
    repeats: np.ndarray  # per kept row: how many identical copies followed it


def _unique_sorted(ticks: pa.RecordBatch) -> _Ticks:
    times = epoch_micros(ticks.column(EVENT_TIME))
    x = np.asarray(ticks.column(CHANGE).to_numpy(zero_copy_only=False), dtype=np.float64)
    prices = np.asarray(ticks.column(PRICE).to_numpy(zero_copy_only=False), dtype=np.float64)
    symbols = pc.dictionary_encode(ticks.column(SYMBOL))
    codes = np.asarray(symbols.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    # Sorted so: buckets and bars are contiguous, duplicates adjacent, and the last tick of a
    # bucket or bar is its latest one (the higher price on ties).
    order = _symbol_time_price_order(codes, times, prices, x)
    codes, times, x, prices = codes[order], times[order], x[order], prices[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (
        (codes[1:] != codes[:-1])
        | (times[1:] != times[:-1])
        | (prices[1:] != prices[:-1])
        | (x[1:] != x[:-1])
    )
    kept = np.flatnonzero(first)
    repeats = np.diff(np.append(kept, len(order))) - 1
    return _Ticks(symbols.dictionary, codes[kept], times[kept], x[kept], prices[kept], repeats)


def _symbol_time_price_order(
    codes: np.ndarray, times: np.ndarray, prices: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """The order by (symbol, time, price, change).

    One argsort of a packed (symbol, time) key does almost all of it (four-key lexsorts
    cost several times more); only runs of equal symbol and time, rare, are then ordered by
    price and change.
    """
    span = int(times.max() - times.min()) + 1
    if span * (int(codes.max()) + 1) >= 2**62:  # cannot pack: sort the slow way
        return np.lexsort((x, prices, times, codes))
    key = codes * span + (times - times.min())
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    tied = np.zeros(len(order), dtype=bool)
    same = ordered[1:] == ordered[:-1]
    tied[1:] |= same
    tied[:-1] |= same
    if tied.any():
        positions = np.flatnonzero(tied)
        rows = order[positions]
        # Runs of equal keys are contiguous and in key order: sorting the tied rows by
        # (key, price, change) keeps every run in its place.
        order[positions] = rows[np.lexsort((x[rows], prices[rows], key[rows]))]
    return order


def bucket_sums(
    ticks: pa.Table | pa.RecordBatch, market: MarketSeries, geometry: Geometry
) -> pa.RecordBatch:
    """joined_returns rows from ALL the ticker ticks of the symbols in `ticks`.

    Exact duplicate ticks (same symbol, time, price and change: a replayed file) count once.
    """
    if ticks.num_rows == 0:
        return _no_buckets()
    if isinstance(ticks, pa.Table):
        ticks = ticks.combine_chunks().to_batches()[0]
    every = _unique_sorted(ticks)
    rm, rt, has_bar = _aligned_returns(every, market, geometry.bar_us)
    in_range = every.times >= geometry.first_tick_us
    if not in_range.any():
        return _no_buckets()
    codes, times = every.codes[in_range], every.times[in_range]
    buckets = times // geometry.bucket_us * geometry.bucket_us
    new_group = np.ones(len(times), dtype=bool)
    new_group[1:] = (codes[1:] != codes[:-1]) | (buckets[1:] != buckets[:-1])
    starts = np.flatnonzero(new_group)

    group_of_row = np.cumsum(new_group) - 1

    def group_sum(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, starts)

    columns = {
        SYMBOL: pc.take(every.dictionary, pa.array(codes[starts])),
        BUCKET_START: _timestamps(buckets[starts]),
        **_pair_sums(every, in_range, starts, group_of_row, market, geometry.band_us),
        "duplicate_ticks": pa.array(group_sum(every.repeats[in_range]), pa.int64()),
        "aligned_bars": pa.array(group_sum(has_bar[in_range].astype(np.int64)), pa.int64()),
        "sum_rm": pa.array(group_sum(rm[in_range])),
        "sum_rt": pa.array(group_sum(rt[in_range])),
        "sum_rm_rm": pa.array(group_sum(rm[in_range] ** 2)),
        "sum_rt_rt": pa.array(group_sum(rt[in_range] ** 2)),
        "sum_rm_rt": pa.array(group_sum(rm[in_range] * rt[in_range])),
    }
    return pa.RecordBatch.from_pydict(columns, schema=BUCKET_SCHEMA)


def _aligned_returns(
    ticks: _Ticks, market: MarketSeries, bar_us: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tick row: the (market, symbol) bar returns of the bar it closes, else zeros."""
    rows, bars, symbol_returns = bar_log_returns(ticks.codes, ticks.times, ticks.prices, bar_us)
    market_bars, market_returns = market.bar_returns(bar_us)
    where = np.searchsorted(market_bars, bars)
    matched = where < len(market_bars)
    matched[matched] = market_bars[where[matched]] == bars[matched]
    rm = np.zeros(len(ticks.times))
    rt = np.zeros(len(ticks.times))
    has_bar = np.zeros(len(ticks.times), dtype=bool)
    rm[rows[matched]] = market_returns[where[matched]]
    rt[rows[matched]] = symbol_returns[matched]
    has_bar[rows[matched]] = True
    return rm, rt, has_bar


def _pair_sums(
    every: _Ticks,
    in_range: np.ndarray,
    starts: np.ndarray,
    group_of_row: np.ndarray,
    market: MarketSeries,
    band_us: int,
) -> dict[str, pa.Array]:
    """The notebook's pair sums per bucket, the extremes, and the latest paired tick."""
    times, x, prices = every.times[in_range], every.x[in_range], every.prices[in_range]
    lo, hi = market.band(times, band_us)
    counts = hi - lo
    paired = counts > 0
    sum_y_per_tick = market.prefix_y[hi] - market.prefix_y[lo]
    sum_yy_per_tick = market.prefix_yy[hi] - market.prefix_yy[lo]
    x_ref = x[starts]  # the bucket's earliest tick
    dx = x - x_ref[group_of_row]
    weighted_dx = counts * dx

    def group_sum(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, starts)

    pair_count = group_sum(counts)
    paired_ticks = group_sum(paired.astype(np.int64))
    no_pairs = pair_count == 0
    last_paired = np.maximum.reduceat(np.where(paired, np.arange(len(times)), -1), starts)
    y_min, y_max = _bucket_market_extremes(lo, hi, paired, starts, market)
    return {
        "pair_count": pa.array(pair_count, pa.int64()),
        "x_ref": pa.array(x_ref),
        "y_ref": pa.array(np.full(len(starts), market.y_ref)),
        "sum_x": pa.array(group_sum(weighted_dx)),
        "sum_y": pa.array(group_sum(sum_y_per_tick)),
        "sum_xx": pa.array(group_sum(weighted_dx * dx)),
        "sum_yy": pa.array(group_sum(sum_yy_per_tick)),
        "sum_xy": pa.array(group_sum(dx * sum_y_per_tick)),
        "x_min": pa.array(np.minimum.reduceat(np.where(paired, x, np.inf), starts), mask=no_pairs),
        "x_max": pa.array(np.maximum.reduceat(np.where(paired, x, -np.inf), starts), mask=no_pairs),
        "y_min": pa.array(y_min, mask=no_pairs),
        "y_max": pa.array(y_max, mask=no_pairs),
        "paired_ticks": pa.array(paired_ticks, pa.int64()),
        "unpaired_ticks": pa.array(np.diff(np.append(starts, len(times))) - paired_ticks),
        "last_paired_time": _timestamps(times[last_paired], mask=no_pairs),
        "last_paired_price": pa.array(prices[last_paired], mask=no_pairs),
    }


def _bucket_market_extremes(
    lo: np.ndarray,
    hi: np.ndarray,
    paired: np.ndarray,
    starts: np.ndarray,
    market: MarketSeries,
) -> tuple[np.ndarray, np.ndarray]:
    """Min and max market return over the pairs of each group.

    Ticks of one bucket lie within one slide (shorter than the 2 x band a tick reaches), so
    the union of their bands is the one range [lo(first tick), hi(last tick)): every market
    tick in it is paired with the first or the last tick of the bucket.
    """
    group_lo = np.minimum.reduceat(np.where(paired, lo, len(market)), starts)
    group_hi = np.maximum.reduceat(np.where(paired, hi, 0), starts)
    non_empty = group_hi > group_lo
    y_min = np.full(len(starts), np.nan)
    y_max = np.full(len(starts), np.nan)
    mins, maxs = market.range_extremes(group_lo[non_empty], group_hi[non_empty])
    y_min[non_empty] = mins
    y_max[non_empty] = maxs
    return y_min, y_max


def _no_buckets() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=BUCKET_SCHEMA)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def epoch_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware moment, in integers (a float timestamp times
    10^6 can be a microsecond off, and is_final compares to the microsecond)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def epoch_micros(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    as_micros = pc.cast(column, UTC_MICROS)
    return np.asarray(as_micros.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _timestamps(micros: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(micros, pa.int64(), mask=mask).cast(UTC_MICROS)

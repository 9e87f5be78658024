"""The pair sums of DESIGN.md's algorithm, in numpy, for one batch of ticker ticks.

Every metric of a window is a function of sums over (ticker tick i, market tick j) pairs with
|t_i - m_j| <= band. Those sums factor per ticker tick: with the market ticks sorted by time,
the ticks paired with t_i are one index range [lo_i, hi_i), found by two binary searches, and
prefix sums over the market give that range's count, sum of y and sum of y^2 in O(1).

x (ticker changePercent) and y (market return) are summed shifted by reference values: the
covariance does not change under a shift, and summing values near zero avoids the
cancellation of sum(x^2) - sum(x)^2 / n. Nothing here knows Spark or Dagster.
"""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beta_assets.settings import CHANGE, EVENT_TIME, PRICE, SYMBOL

MICROS = 1_000_000

BUCKET_START = "bucket_start"

# joined_returns: one row per (symbol, 5-minute bucket of its ticks). x is the ticker's
# changePercent, y the market's; sums are over the bucket's pairs, shifted by x_ref / y_ref.
BUCKET_SCHEMA = pa.schema(
    [
        (SYMBOL, pa.string()),
        (BUCKET_START, pa.timestamp("us", tz="UTC")),
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
        ("last_paired_time", pa.timestamp("us", tz="UTC")),
        ("last_paired_price", pa.float64()),
    ]
)
# What a window adds up from its buckets (tick counts stay per bucket).
WINDOW_FIELDS = [name for name in BUCKET_SCHEMA.names if name not in (SYMBOL, "duplicate_ticks")]


@dataclass(frozen=True)
class MarketSeries:
    """Market ticks sorted by time with prefix sums of the shifted returns.

    `times` are epoch microseconds; `prefix_y[k]` and `prefix_yy[k]` are the sums of
    (y - y_ref) and (y - y_ref)^2 over the first k ticks.
    """

    times: np.ndarray
    returns: np.ndarray
    y_ref: float
    prefix_y: np.ndarray
    prefix_yy: np.ndarray

    @classmethod
    def from_arrays(cls, times_us: np.ndarray, returns: np.ndarray) -> "MarketSeries":
        order = np.argsort(times_us, kind="stable")
        times = np.ascontiguousarray(times_us[order], dtype=np.int64)
        values = np.ascontiguousarray(returns[order], dtype=np.float64)
        # The median keeps |y - y_ref| small over the whole series, whatever its level.
        y_ref = float(np.median(values)) if len(values) else 0.0
        shifted = values - y_ref
        prefix_y = np.concatenate(([0.0], np.cumsum(shifted)))
        prefix_yy = np.concatenate(([0.0], np.cumsum(shifted * shifted)))
        return cls(times, values, y_ref, prefix_y, prefix_yy)

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


def bucket_sums(
    ticks: pa.Table | pa.RecordBatch,
    market: MarketSeries,
    band_us: int,
    bucket_us: int,
) -> pa.RecordBatch:
    """Pair sums per (symbol, bucket), from ALL the ticker ticks of the symbols in `ticks`.

    Exact duplicate ticks (same symbol, time, price and change: a replayed file) count once.
    """
    if ticks.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=BUCKET_SCHEMA)
    if isinstance(ticks, pa.Table):
        ticks = ticks.combine_chunks().to_batches()[0]
    times = _epoch_micros(ticks.column(EVENT_TIME))
    x = np.asarray(ticks.column(CHANGE).to_numpy(zero_copy_only=False), dtype=np.float64)
    prices = np.asarray(ticks.column(PRICE).to_numpy(zero_copy_only=False), dtype=np.float64)
    symbols = pc.dictionary_encode(ticks.column(SYMBOL))
    symbol_codes = np.asarray(symbols.indices.to_numpy(zero_copy_only=False), dtype=np.int64)

    # Sorted by symbol, time, price, change: buckets are contiguous, duplicates adjacent,
    # and the last paired tick of a bucket is its latest one (the higher price on ties).
    order = np.lexsort((x, prices, times, symbol_codes))
    times, x, prices, symbol_codes = times[order], x[order], prices[order], symbol_codes[order]
    repeated = np.zeros(len(order), dtype=bool)
    repeated[1:] = (
        (symbol_codes[1:] == symbol_codes[:-1])
        & (times[1:] == times[:-1])
        & (prices[1:] == prices[:-1])
        & (x[1:] == x[:-1])
    )
    buckets = times // bucket_us * bucket_us
    new_group = np.ones(len(order), dtype=bool)
    new_group[1:] = (symbol_codes[1:] != symbol_codes[:-1]) | (buckets[1:] != buckets[:-1])
    starts = np.flatnonzero(new_group)
    duplicates = np.add.reduceat(repeated.astype(np.int64), starts)
    keep = ~repeated
    times, x, prices = times[keep], x[keep], prices[keep]
    symbol_codes, buckets = symbol_codes[keep], buckets[keep]
    starts = np.flatnonzero(new_group[keep])
    group_of_row = np.cumsum(new_group[keep]) - 1

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

    columns = {
        SYMBOL: pc.take(symbols.dictionary, pa.array(symbol_codes[starts])),
        BUCKET_START: _timestamps(buckets[starts]),
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
        "duplicate_ticks": pa.array(duplicates, pa.int64()),
        "last_paired_time": _timestamps(times[last_paired], mask=no_pairs),
        "last_paired_price": pa.array(prices[last_paired], mask=no_pairs),
    }
    return pa.RecordBatch.from_pydict(columns, schema=BUCKET_SCHEMA)


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


def _epoch_micros(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    as_micros = pc.cast(column, pa.timestamp("us", tz="UTC"))
    return np.asarray(as_micros.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _timestamps(micros: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(micros, pa.int64(), mask=mask).cast(pa.timestamp("us", tz="UTC"))

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
FIRST_TICK_TIME = "first_tick_time"

# One partial row per (symbol, bucket) of a batch; the Spark layer merges partials of the same
# bucket that came from different batches.
PARTIAL_SCHEMA = pa.schema(
    [
        (SYMBOL, pa.string()),
        (BUCKET_START, pa.timestamp("us", tz="UTC")),
        (FIRST_TICK_TIME, pa.timestamp("us", tz="UTC")),
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
        ("last_paired_time", pa.timestamp("us", tz="UTC")),
        ("last_paired_price", pa.float64()),
    ]
)

# joined_returns: one row per (symbol, bucket), partials merged.
BUCKET_SCHEMA = PARTIAL_SCHEMA.remove(PARTIAL_SCHEMA.get_field_index(FIRST_TICK_TIME))


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


def bucket_partials(
    batch: pa.RecordBatch,
    market: MarketSeries,
    band_us: int,
    bucket_us: int,
) -> pa.RecordBatch:
    """Pair sums per (symbol, bucket) over the ticker ticks of one batch."""
    if batch.num_rows == 0:
        return _empty_partials()
    times = _epoch_micros(batch.column(EVENT_TIME))
    x = np.asarray(batch.column(CHANGE).to_numpy(zero_copy_only=False), dtype=np.float64)
    prices = np.asarray(batch.column(PRICE).to_numpy(zero_copy_only=False), dtype=np.float64)
    symbols = pc.dictionary_encode(batch.column(SYMBOL))
    symbol_codes = np.asarray(symbols.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    buckets = times // bucket_us * bucket_us

    # Group rows of the same (symbol, bucket): a stable sort keeps batch order inside a group.
    order = np.lexsort((buckets, symbol_codes))
    times, x, prices = times[order], x[order], prices[order]
    symbol_codes, buckets = symbol_codes[order], buckets[order]
    new_group = np.empty(len(order), dtype=bool)
    new_group[0] = True
    new_group[1:] = (symbol_codes[1:] != symbol_codes[:-1]) | (buckets[1:] != buckets[:-1])
    starts = np.flatnonzero(new_group)
    group_of_row = np.cumsum(new_group) - 1

    lo, hi = market.band(times, band_us)
    counts = hi - lo
    paired = counts > 0
    sum_y_per_tick = market.prefix_y[hi] - market.prefix_y[lo]
    sum_yy_per_tick = market.prefix_yy[hi] - market.prefix_yy[lo]

    x_ref = x[starts]
    dx = x - x_ref[group_of_row]
    weighted_dx = counts * dx

    def group_sum(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, starts)

    pair_count = group_sum(counts)
    paired_ticks = group_sum(paired.astype(np.int64))
    has_pairs = pair_count > 0

    x_min = np.minimum.reduceat(np.where(paired, x, np.inf), starts)
    x_max = np.maximum.reduceat(np.where(paired, x, -np.inf), starts)
    y_min, y_max = _bucket_market_extremes(lo, hi, paired, starts, market)
    last_time, last_price = _last_paired_tick(times, prices, paired, group_of_row, len(starts))

    columns = {
        SYMBOL: pc.take(symbols.dictionary, pa.array(symbol_codes[starts])),
        BUCKET_START: _timestamps(buckets[starts]),
        FIRST_TICK_TIME: _timestamps(np.minimum.reduceat(times, starts)),
        "pair_count": pa.array(pair_count, pa.int64()),
        "x_ref": pa.array(x_ref),
        "y_ref": pa.array(np.full(len(starts), market.y_ref)),
        "sum_x": pa.array(group_sum(weighted_dx)),
        "sum_y": pa.array(group_sum(sum_y_per_tick)),
        "sum_xx": pa.array(group_sum(weighted_dx * dx)),
        "sum_yy": pa.array(group_sum(sum_yy_per_tick)),
        "sum_xy": pa.array(group_sum(dx * sum_y_per_tick)),
        "x_min": pa.array(x_min, mask=~has_pairs),
        "x_max": pa.array(x_max, mask=~has_pairs),
        "y_min": pa.array(y_min, mask=~has_pairs),
        "y_max": pa.array(y_max, mask=~has_pairs),
        "paired_ticks": pa.array(paired_ticks, pa.int64()),
        "unpaired_ticks": pa.array(np.diff(np.append(starts, len(order))) - paired_ticks),
        "last_paired_time": _timestamps(last_time, mask=~has_pairs),
        "last_paired_price": pa.array(last_price, mask=~has_pairs),
    }
    return pa.RecordBatch.from_pydict(columns, schema=PARTIAL_SCHEMA)


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


def _last_paired_tick(
    times: np.ndarray,
    prices: np.ndarray,
    paired: np.ndarray,
    group_of_row: np.ndarray,
    group_count: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Time and price of the latest paired tick per group; ties go to the higher price."""
    rows = np.flatnonzero(paired)
    last_time = np.zeros(group_count, dtype=np.int64)
    last_price = np.full(group_count, np.nan)
    if len(rows) == 0:
        return last_time, last_price
    # Sort paired rows by (group, time, price): the last row of each group is the one.
    order = rows[np.lexsort((prices[rows], times[rows], group_of_row[rows]))]
    groups = group_of_row[order]
    is_last = np.append(groups[1:] != groups[:-1], True)
    chosen = order[is_last]
    last_time[group_of_row[chosen]] = times[chosen]
    last_price[group_of_row[chosen]] = prices[chosen]
    return last_time, last_price


def _epoch_micros(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    as_micros = pc.cast(column, pa.timestamp("us", tz="UTC"))
    return np.asarray(as_micros.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _timestamps(micros: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(micros, pa.int64(), mask=mask).cast(pa.timestamp("us", tz="UTC"))


def _empty_partials() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=PARTIAL_SCHEMA)

"""Gold's rows from bucket sums, in numpy: a 2-hour window is exactly 24 five-minute buckets.

Each window's sums are taken in the reference frame of its earliest bucket with pairs; every
other bucket is moved into that frame with the exact shift identities. Bar sums of the
aligned beta are plain sums. The metrics then follow from a window's sums alone, so one
function computes gold's rows wherever the buckets are: in a Spark task or in the run process.
Nothing here knows Spark or Dagster.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beta_assets.band import BUCKET_SCHEMA, BUCKET_START, UTC_MICROS, WINDOW_FIELDS, epoch_micros
from beta_assets.settings import (
    BLUME_PRIOR,
    BLUME_WEIGHT,
    BUCKETS_PER_WINDOW,
    GOLD_BUCKETS_PER_PASS,
    GOLD_COLUMNS,
    SLIDE,
    SYMBOL,
    WINDOW,
)

if TYPE_CHECKING:
    from beta_assets.metrics import MetricSettings

WINDOW_START = "window_start"
_PLAIN_SUMS = (
    "pair_count",
    "paired_ticks",
    "unpaired_ticks",
    "aligned_bars",
    "sum_rm",
    "sum_rt",
    "sum_rm_rm",
    "sum_rt_rt",
    "sum_rm_rt",
)

_SLIDE_US = SLIDE // timedelta(microseconds=1)
_WINDOW_US = WINDOW // timedelta(microseconds=1)

# One row per (symbol, window): the window's sums, in its own reference frame.
WINDOW_SUMS_SCHEMA = pa.schema(
    [(SYMBOL, pa.string()), (WINDOW_START, UTC_MICROS)]
    + [BUCKET_SCHEMA.field(name) for name in WINDOW_FIELDS if name != BUCKET_START]
)


def window_sums(
    buckets: pa.Table, slide_us: int, buckets_per_window: int, start_us: int, end_us: int
) -> pa.Table:
    """Sums of every window starting in [start_us, end_us) that has pairs, for the buckets of
    whole symbols (every bucket of a symbol that the windows need must be present)."""
    with_pairs = buckets.filter(pc.greater(buckets.column("pair_count"), 0))
    if with_pairs.num_rows == 0:
        return WINDOW_SUMS_SCHEMA.empty_table()
    ordered = with_pairs.sort_by([(SYMBOL, "ascending"), (BUCKET_START, "ascending")])
    symbols = pc.dictionary_encode(ordered.column(SYMBOL)).combine_chunks()
    codes = symbols.indices.to_numpy().astype(np.int64)
    slots = epoch_micros(ordered.column(BUCKET_START)) // slide_us
    column = {name: _floats(ordered, name) for name in WINDOW_FIELDS if name != BUCKET_START}

    # Key = (symbol, slot) in one int64. Slots are offset by one window so that the windows
    # reaching back from a symbol's first bucket keep clear of the previous symbol's keys.
    base = int(slots.min()) - buckets_per_window
    spread = int(slots.max()) - base + buckets_per_window
    keys = codes * spread + (slots - base)
    window_keys = np.unique((keys[:, None] - np.arange(buckets_per_window)[None, :]).ravel())
    window_slots = window_keys % spread + base
    inside = (window_slots * slide_us >= start_us) & (window_slots * slide_us < end_us)
    window_keys, window_slots = window_keys[inside], window_slots[inside]
    if len(window_keys) == 0:
        return WINDOW_SUMS_SCHEMA.empty_table()

    lo = np.searchsorted(keys, window_keys, side="left")
    positions = lo[:, None] + np.arange(buckets_per_window)[None, :]
    members = np.minimum(positions, len(keys) - 1)
    present = (positions < len(keys)) & (
        keys[members] < (window_keys + buckets_per_window)[:, None]
    )
    sums = _shifted_sums(column, members, present)
    return pa.table(
        {
            SYMBOL: pc.take(symbols.dictionary, pa.array(window_keys // spread)),
            WINDOW_START: pa.array(window_slots * slide_us, pa.int64()).cast(UTC_MICROS),
            **sums,
        },
        schema=WINDOW_SUMS_SCHEMA,
    )


def _shifted_sums(
    column: dict[str, np.ndarray], members: np.ndarray, present: np.ndarray
) -> dict[str, pa.Array]:
    first = members[np.arange(len(members)), np.argmax(present, axis=1)]

    def gather(name: str) -> np.ndarray:
        return np.where(present, column[name][members], 0.0)

    n = gather("pair_count")
    dx = np.where(present, column["x_ref"][members] - column["x_ref"][first][:, None], 0.0)
    dy = np.where(present, column["y_ref"][members] - column["y_ref"][first][:, None], 0.0)
    sx, sy = gather("sum_x"), gather("sum_y")
    out = {name: gather(name).sum(axis=1) for name in _PLAIN_SUMS}
    out.update(
        x_ref=column["x_ref"][first],
        y_ref=column["y_ref"][first],
        sum_x=(sx + n * dx).sum(axis=1),
        sum_y=(sy + n * dy).sum(axis=1),
        sum_xx=(gather("sum_xx") + 2 * dx * sx + n * dx * dx).sum(axis=1),
        sum_yy=(gather("sum_yy") + 2 * dy * sy + n * dy * dy).sum(axis=1),
        sum_xy=(gather("sum_xy") + dx * sy + dy * sx + n * dx * dy).sum(axis=1),
        x_min=np.where(present, column["x_min"][members], np.inf).min(axis=1),
        x_max=np.where(present, column["x_max"][members], -np.inf).max(axis=1),
        y_min=np.where(present, column["y_min"][members], np.inf).min(axis=1),
        y_max=np.where(present, column["y_max"][members], -np.inf).max(axis=1),
    )
    # Buckets do not overlap in time: the latest paired tick is in the latest bucket.
    latest = np.where(present, column["last_paired_time"][members], -np.inf).argmax(axis=1)
    rows = members[np.arange(len(members)), latest]
    out["last_paired_time"] = column["last_paired_time"][rows]
    out["last_paired_price"] = column["last_paired_price"][rows]
    return {name: _typed(name, values) for name, values in out.items()}


def _typed(name: str, values: np.ndarray) -> pa.Array:
    kind = BUCKET_SCHEMA.field(name).type
    if pa.types.is_timestamp(kind):
        return pa.array(values.astype(np.int64), pa.int64()).cast(kind)
    if pa.types.is_integer(kind):
        return pa.array(np.rint(values).astype(np.int64), kind)
    return pa.array(values, kind)


def _floats(table: pa.Table, name: str) -> np.ndarray:
    values = table.column(name)
    if pa.types.is_timestamp(values.type):
        return epoch_micros(values).astype(np.float64)
    return values.to_numpy().astype(np.float64)


# --- gold's rows

# Gold's columns and types, in the order gold stores them.
_GOLD_TYPES = {
    SYMBOL: pa.string(),
    WINDOW_START: UTC_MICROS,
    "window_end": UTC_MICROS,
    "beta": pa.float64(),
    "volatility": pa.float64(),
    "momentum": pa.float64(),
    "close_price": pa.float64(),
    "sample_size": pa.int64(),
    "cost_of_equity": pa.float64(),
    "is_final": pa.bool_(),
    "beta_aligned": pa.float64(),
    "beta_aligned_se": pa.float64(),
    "beta_aligned_r2": pa.float64(),
    "beta_aligned_blume": pa.float64(),
    "aligned_bars": pa.int64(),
}
# A column added to GOLD_COLUMNS without a type here fails at import.
GOLD_SCHEMA = pa.schema([(name, _GOLD_TYPES[name]) for name in GOLD_COLUMNS])


def gold_rows(
    buckets: pa.Table,
    settings: "MetricSettings",
    start_us: int,
    end_us: int,
    final_before_us: int | None,
) -> pa.Table:
    """Gold's rows for the windows starting in [start_us, end_us), from the buckets of whole
    symbols. `final_before_us`: windows ending before it are final (None: none is)."""
    sums = window_sums(buckets, _SLIDE_US, BUCKETS_PER_WINDOW, start_us, end_us)
    return finished_metrics(sums, settings, final_before_us)


def gold_rows_in_passes(
    buckets: pa.Table,
    settings: "MetricSettings",
    start_us: int,
    end_us: int,
    final_before_us: int | None,
    buckets_per_pass: int = GOLD_BUCKETS_PER_PASS,
) -> pa.Table:
    """`gold_rows` over groups of whole symbols of at most `buckets_per_pass` buckets each
    (a symbol with more is a group of its own)."""
    passes = [
        gold_rows(group, settings, start_us, end_us, final_before_us)
        for group in symbol_groups(buckets, buckets_per_pass)
    ]
    return pa.concat_tables(passes) if passes else GOLD_SCHEMA.empty_table()


def symbol_groups(rows: pa.Table, max_rows: int) -> Iterator[pa.Table]:
    """The rows, ordered by symbol, cut between symbols into groups of at most max_rows (a
    symbol with more rows is a group of its own)."""
    if rows.num_rows == 0:
        return
    ordered = rows.sort_by(SYMBOL)
    codes = pc.dictionary_encode(ordered.column(SYMBOL)).combine_chunks().indices.to_numpy()
    symbol_ends = [*np.flatnonzero(np.diff(codes)) + 1, len(codes)]
    first = last = 0
    for end in symbol_ends:
        if end - first > max_rows and last > first:
            yield ordered.slice(first, last - first)
            first = last
        last = end
    yield ordered.slice(first, last - first)


def finished_metrics(
    sums: pa.Table, settings: "MetricSettings", final_before_us: int | None
) -> pa.Table:
    """The notebook's metrics and the aligned beta of each window with enough pairs."""
    sums = sums.filter(pc.greater_equal(sums.column("pair_count"), settings.min_sample_size))
    value = {name: _floats(sums, name) for name in sums.schema.names if name != SYMBOL}
    window_end = epoch_micros(sums.column(WINDOW_START)) + _WINDOW_US
    beta = _notebook_beta(value)
    cost = settings.risk_free_rate + beta.values * settings.market_premium
    cost_of_equity = _Masked(cost, beta.valid)  # null where beta is
    is_final = (
        window_end < final_before_us
        if final_before_us is not None
        else np.zeros(len(window_end), dtype=bool)
    )
    columns = {
        SYMBOL: sums.column(SYMBOL),
        WINDOW_START: sums.column(WINDOW_START),
        "window_end": pa.array(window_end, pa.int64()).cast(UTC_MICROS),
        "beta": beta.array(),
        "volatility": _volatility(value).array(),
        "momentum": pa.array(value["x_ref"] + value["sum_x"] / value["pair_count"]),
        "close_price": sums.column("last_paired_price"),
        "sample_size": sums.column("pair_count"),
        "cost_of_equity": cost_of_equity.array(),
        "is_final": pa.array(is_final, pa.bool_()),
        **_aligned_beta(value, settings.min_aligned_bars),
        "aligned_bars": sums.column("aligned_bars"),
    }
    return pa.table(columns, schema=GOLD_SCHEMA)


class _Masked:
    """Values and where they hold (elsewhere: null, as Spark's try_divide and `when` give)."""

    def __init__(self, values: np.ndarray, valid: np.ndarray) -> None:
        self.values = np.where(valid, values, 0.0)
        self.valid = valid

    def array(self) -> pa.Array:
        return pa.array(self.values, pa.float64(), mask=~self.valid)


def _centred(value: dict[str, np.ndarray], square: str, first: str, second: str) -> np.ndarray:
    """sum((a - mean a)(b - mean b)) from a window's sums, over n - 1 (NaN where n = 1)."""
    n = value["pair_count"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (value[square] - value[first] * value[second] / n) / (n - 1)


def _notebook_beta(value: dict[str, np.ndarray]) -> _Masked:
    """cov(x, y) / var(y); null with one pair or a constant market (decided by its min and max,
    never by a float compared to 0)."""
    var_y = _centred(value, "sum_yy", "sum_y", "sum_y")
    covariance = _centred(value, "sum_xy", "sum_x", "sum_y")
    valid = (value["pair_count"] > 1) & (value["y_min"] != value["y_max"]) & ~(var_y <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _Masked(covariance / var_y, valid)


def _volatility(value: dict[str, np.ndarray]) -> _Masked:
    """The symbol's standard deviation: null with one pair, exactly 0 when constant."""
    var_x = _centred(value, "sum_xx", "sum_x", "sum_x")
    constant_x = value["x_min"] == value["x_max"]
    with np.errstate(invalid="ignore"):
        deviation = np.where(constant_x, 0.0, np.sqrt(np.maximum(var_x, 0.0)))
    return _Masked(deviation, value["pair_count"] > 1)


def _aligned_beta(value: dict[str, np.ndarray], min_bars: int) -> dict[str, pa.Array]:
    """OLS of the symbol's bar returns on the market's: slope, its standard error, R^2, Blume.

    Bar returns have means near zero, so their sums need no shift against cancellation.
    """
    n = value["aligned_bars"]
    with np.errstate(divide="ignore", invalid="ignore"):
        sxx = value["sum_rm_rm"] - value["sum_rm"] * value["sum_rm"] / n
        syy = value["sum_rt_rt"] - value["sum_rt"] * value["sum_rt"] / n
        sxy = value["sum_rm_rt"] - value["sum_rm"] * value["sum_rt"] / n
        enough = (n >= max(min_bars, 3)) & (sxx > 0)
        slope = sxy / sxx
        residual = np.maximum(syy - slope * sxy, 0.0)
        standard_error = np.sqrt(residual / (n - 2) / sxx)
        r_squared = sxy * sxy / (sxx * syy)
    return {
        "beta_aligned": _Masked(slope, enough).array(),
        "beta_aligned_se": _Masked(standard_error, enough).array(),
        "beta_aligned_r2": _Masked(r_squared, enough & (syy > 0)).array(),
        "beta_aligned_blume": _Masked(BLUME_WEIGHT * slope + BLUME_PRIOR, enough).array(),
    }

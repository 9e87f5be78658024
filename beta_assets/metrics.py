"""The notebook's metrics as Spark DataFrame functions (DESIGN.md, "The algorithm").

DataFrame in, DataFrame out; no Dagster here. The flow:

    silver --typed_ticks--> typed ticks with a quarantine reason
        market_and_rejected_rows           -> spy_returns (+ quarantine_ticks)
        prepared_ticks -> ticker_ticks + MarketSeries -> bucket_sums
                                           -> joined_returns (per symbol, 5-min bucket)
        joined_returns -> window_metrics   -> gold_beta_metrics (per symbol, 2-h window)
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame, GroupedData
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from beta_assets.band import BUCKET_SCHEMA, Geometry, MarketSeries, epoch_us
from beta_assets.band import bucket_sums as bucket_sums_of
from beta_assets.settings import (
    BAD_CHANGE_PERCENT,
    BAD_EVENT_TIME,
    BAD_PRICE,
    BAND,
    BAR,
    CHANGE,
    EMPTY_SYMBOL,
    EVENT_TIME,
    MARKET_EVENT_TIME,
    MARKET_PREMIUM,
    MARKET_PRICE,
    MARKET_RETURN,
    MARKET_SYMBOL,
    MIN_ALIGNED_BARS,
    MIN_SAMPLE_SIZE,
    NOISE_AMPLITUDE,
    NON_POSITIVE_PRICE,
    PRICE,
    RISK_FREE_RATE,
    SILVER_COLUMNS,
    SLIDE,
    SYMBOL,
)
from beta_assets.symbols import SYMBOL_BLANKS
from beta_assets.windows import GOLD_SCHEMA, gold_rows

QUARANTINE_REASON = "quarantine_reason"
RAW_PREFIX = "raw_"
_UNIT_INTERVAL_BITS = 53  # a double holds 53 bits of a hash exactly


@dataclass(frozen=True)
class MetricSettings:
    """What a user may change about the metrics; defaults are the notebook's."""

    market_symbol: str = MARKET_SYMBOL
    risk_free_rate: float = RISK_FREE_RATE
    market_premium: float = MARKET_PREMIUM
    min_sample_size: int = MIN_SAMPLE_SIZE
    noise: bool = False
    noise_amplitude: float = NOISE_AMPLITUDE
    bar: timedelta = BAR
    min_aligned_bars: int = MIN_ALIGNED_BARS

    def __post_init__(self) -> None:
        if self.bar <= timedelta(0) or SLIDE % self.bar:
            raise ValueError(f"the bar ({self.bar}) must divide the {SLIDE} slide")


def _micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


# --- ticks


def typed_ticks(silver: DataFrame) -> DataFrame:
    """Silver's columns in the contract's types, plus the reason a row cannot be used.

    Spark runs with ANSI SQL on, so a plain CAST of a bad string raises: try_cast turns it into
    a null that the reason column then names. Symbols are trimmed of `SYMBOL_BLANKS` (any
    whitespace, zero-width characters) and upper-cased, so ' spy' + tab and 'Spy' are the
    market and a tab alone is an empty symbol. Time-zone-naive times are read as UTC (the
    session time zone).
    """
    symbol = F.upper(_trimmed_of_blanks(F.col(SYMBOL).cast("string")))
    price = F.col(PRICE).try_cast("double")
    change = F.col(CHANGE).try_cast("double")
    event_time = F.col(EVENT_TIME).try_cast("timestamp")
    # The raw values, as text, for the quarantine; Spark prunes them from the valid path.
    raw = [F.col(name).cast("string").alias(RAW_PREFIX + name) for name in SILVER_COLUMNS]
    typed = silver.select(
        symbol.alias(SYMBOL),
        price.alias(PRICE),
        change.alias(CHANGE),
        event_time.alias(EVENT_TIME),
        *raw,
    )
    return typed.withColumn(QUARANTINE_REASON, _quarantine_reason())


def _trimmed_of_blanks(text: Column) -> Column:
    """`text` without SYMBOL_BLANKS at either end.

    btrim with an explicit set (trim strips spaces only and Java's regex \\s is ASCII) costs
    about 2.4 s per scan of 11.7M ticks; a symbol whose first and last characters are not
    blanks is what btrim would return, so only the others are trimmed (~1.5 s less, warm).
    """
    blanks = list(SYMBOL_BLANKS)
    edged = F.substring(text, 1, 1).isin(blanks) | F.substring(text, -1, 1).isin(blanks)
    return F.when(edged, F.btrim(text, F.lit(SYMBOL_BLANKS))).otherwise(text)


def _not_finite(column: Column) -> Column:
    return column.isNull() | F.isnan(column) | (F.abs(column) == F.lit(float("inf")))


def _quarantine_reason() -> Column:
    symbol, price, change = F.col(SYMBOL), F.col(PRICE), F.col(CHANGE)
    return (
        F.when(symbol.isNull() | (symbol == ""), F.lit(EMPTY_SYMBOL))
        .when(F.col(EVENT_TIME).isNull(), F.lit(BAD_EVENT_TIME))
        .when(_not_finite(price), F.lit(BAD_PRICE))
        .when(price <= 0, F.lit(NON_POSITIVE_PRICE))
        .when(_not_finite(change), F.lit(BAD_CHANGE_PERCENT))
    )


def valid_ticks(typed: DataFrame) -> DataFrame:
    valid = typed.filter(F.col(QUARANTINE_REASON).isNull())
    return valid.select(SYMBOL, PRICE, CHANGE, EVENT_TIME)


def in_time_range(ticks: DataFrame, start: datetime, end: datetime) -> DataFrame:
    event_time = F.col(EVENT_TIME)
    return ticks.filter((event_time >= F.lit(start)) & (event_time < F.lit(end)))


def market_and_rejected_rows(
    typed: DataFrame, settings: MetricSettings, start: datetime, end: datetime
) -> DataFrame:
    """The rows spy_returns keeps: the market's valid ticks in [start, end) and every row to
    quarantine (in the range, or with no usable event time at all)."""
    rows = typed.filter(_kept_by_spy_returns(settings.market_symbol, start, end))
    return with_noise(rows, settings.noise_amplitude) if settings.noise else rows


def _kept_by_spy_returns(market_symbol: str, start: datetime, end: datetime) -> Column:
    reason = F.col(QUARANTINE_REASON)
    event_time = F.col(EVENT_TIME)
    in_range = (event_time >= F.lit(start)) & (event_time < F.lit(end))
    market = reason.isNull() & (F.col(SYMBOL) == market_symbol) & in_range
    return market | (reason.isNotNull() & (in_range | event_time.isNull()))


KEPT_ROWS = "kept_rows"
# What silver's tick counts are grouped by (`silver_quality_counts`).
QUALITY_KEYS = ["hour", QUARANTINE_REASON, "is_market"]


def silver_quality_counts(
    typed: DataFrame, market_symbol: str, start: datetime, end: datetime
) -> DataFrame:
    """Tick counts per (hour, quarantine reason, is market) in [start, end), plus the rows
    with no usable event time (hour null), and each group's latest event time (epoch
    microseconds) among the ticks that move a watermark."""
    return _quality_groups(typed, market_symbol, start, end).agg(*_quality_aggregates())


def quality_counts_with_kept_rows(
    typed: DataFrame,
    settings: MetricSettings,
    counted: tuple[datetime, datetime],
    kept: tuple[datetime, datetime],
) -> DataFrame:
    """`silver_quality_counts` over the hours `counted`, each group with the rows of it that
    `market_and_rejected_rows` keeps over `kept` (within `counted`) as a list column: one scan
    of silver serves both silver's blocking checks and spy_returns."""
    symbol = settings.market_symbol
    noised = with_noise(typed, settings.noise_amplitude) if settings.noise else typed
    row = F.struct(*[F.col(name) for name in typed.columns])
    # The row is projected before the aggregation: built inside the aggregate, it made Spark
    # cast every tick's raw values to text (8.6 s against 3.0 s on 11.7M ticks, warm, in a
    # scratch session).
    with_rows = noised.withColumn(KEPT_ROWS, F.when(_kept_by_spy_returns(symbol, *kept), row))
    kept_rows = F.collect_list(KEPT_ROWS).alias(KEPT_ROWS)
    return _quality_groups(with_rows, symbol, *counted).agg(*_quality_aggregates(), kept_rows)


def _quality_groups(
    typed: DataFrame, market_symbol: str, start: datetime, end: datetime
) -> GroupedData:
    event_time = F.col(EVENT_TIME)
    scoped = typed.filter(
        event_time.isNull() | ((event_time >= F.lit(start)) & (event_time < F.lit(end)))
    )
    return scoped.groupBy(
        F.date_trunc("hour", event_time).alias("hour"),
        F.col(QUARANTINE_REASON),
        F.coalesce(F.col(SYMBOL) == market_symbol, F.lit(False)).alias("is_market"),
    )


def _quality_aggregates() -> list[Column]:
    return [F.count(F.lit(1)).alias("count"), _latest_moving_micros().alias("latest_micros")]


def latest_event_micros_per_side(typed: DataFrame, market_symbol: str) -> DataFrame:
    """(is_market, latest event time in epoch microseconds) of the ticks that move a watermark:
    those with a symbol and a usable event time, whatever their price (as in the notebook's
    stream). Microseconds, not timestamps: collected, they do not depend on the local zone."""
    symbol = F.col(SYMBOL)
    moving = typed.filter(_moves_watermark())
    return moving.groupBy((symbol == market_symbol).alias("is_market")).agg(
        _latest_moving_micros().alias("latest_micros")
    )


def _moves_watermark() -> Column:
    symbol = F.col(SYMBOL)
    return symbol.isNotNull() & (symbol != "") & F.col(EVENT_TIME).isNotNull()


def _latest_moving_micros() -> Column:
    return F.max(F.when(_moves_watermark(), F.unix_micros(F.col(EVENT_TIME))))


def duplicate_tick_count(ticks: DataFrame) -> int:
    """Ticks beyond the first of each identical (symbol, time, price, change).

    Grouping 64-bit hashes of the ticks shuffles far less than grouping the ticks; only
    the ticks whose hash repeats are then compared value by value (collisions count 0).
    """
    identity = [SYMBOL, EVENT_TIME, PRICE, CHANGE]
    hashed = ticks.withColumn("tick_hash", _tick_hash())
    repeated = hashed.groupBy("tick_hash").count().filter("count > 1").select("tick_hash")
    if repeated.isEmpty():
        return 0
    candidates = hashed.join(F.broadcast(repeated), "tick_hash")
    copies = candidates.groupBy(*identity).count().filter("count > 1")
    return int(copies.agg(F.sum(F.col("count") - 1)).first()[0] or 0)


def _tick_hash() -> Column:
    return F.xxhash64(F.col(SYMBOL), F.col(EVENT_TIME), F.col(PRICE), F.col(CHANGE))


def with_noise(ticks: DataFrame, amplitude: float) -> DataFrame:
    """The notebook's (rand() - 0.5) * amplitude, drawn from a hash of the tick itself.

    The same tick gets the same noise on every run, so reruns reproduce the table.
    """
    mantissa = _tick_hash().bitwiseAND(F.lit((1 << _UNIT_INTERVAL_BITS) - 1))
    uniform = mantissa.cast("double") / F.lit(float(1 << _UNIT_INTERVAL_BITS))
    return ticks.withColumn(CHANGE, F.col(CHANGE) + (uniform - F.lit(0.5)) * F.lit(amplitude))


def prepared_ticks(typed: DataFrame, settings: MetricSettings) -> DataFrame:
    """Valid ticks as the metrics see them: noise added when asked for."""
    ticks = valid_ticks(typed)
    return with_noise(ticks, settings.noise_amplitude) if settings.noise else ticks


MARKET_SCHEMA = pa.schema(
    [
        (MARKET_EVENT_TIME, pa.timestamp("us", tz="UTC")),
        (MARKET_RETURN, pa.float64()),
        (MARKET_PRICE, pa.float64()),
    ]
)


def ticker_ticks(ticks: DataFrame, market_symbol: str) -> DataFrame:
    return ticks.filter(F.col(SYMBOL) != market_symbol)


def market_series(market: pa.Table) -> MarketSeries:
    """The market ticks (a few ten thousand rows a day) as arrays to ship to every task."""
    times = market.column(MARKET_EVENT_TIME).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return MarketSeries.from_arrays(
        np.asarray(times.to_numpy(), dtype=np.int64),
        np.asarray(market.column(MARKET_RETURN).to_numpy(), dtype=np.float64),
        np.asarray(market.column(MARKET_PRICE).to_numpy(), dtype=np.float64),
    )


# --- joined_returns: pair sums per (symbol, bucket)


def bucket_geometry(settings: MetricSettings, start: datetime) -> Geometry:
    """The band, bucket and bar of joined_returns' kernel for buckets from `start`."""
    return Geometry(
        band_us=_micros(BAND),
        bucket_us=_micros(SLIDE),
        bar_us=_micros(settings.bar),
        first_tick_us=epoch_us(start),
    )


def bucket_sums(
    tickers: DataFrame, market: MarketSeries, settings: MetricSettings, start: datetime
) -> DataFrame:
    """One row per (symbol, 5-minute bucket) from `start` with the sums of its ticks.

    The ticks of a symbol are brought to one task (a shuffle by symbol), where numpy pairs
    them with the market series shipped to every task: buckets are complete in one place,
    exact duplicate ticks meet and count once, and no per-tick row leaves the task. Ticks
    up to one bar before `start` only price the bar before the first one.
    """
    geometry = bucket_geometry(settings, start)

    def sums_per_task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        received = [batch for batch in batches if batch.num_rows]
        if received:
            yield bucket_sums_of(pa.Table.from_batches(received), market, geometry)

    by_symbol = tickers.select(SYMBOL, PRICE, CHANGE, EVENT_TIME).repartition(SYMBOL)
    return by_symbol.mapInArrow(sums_per_task, from_arrow_schema(BUCKET_SCHEMA))


# --- gold: metrics per (symbol, 2-hour window)


def window_metrics(
    buckets: DataFrame,
    settings: MetricSettings,
    start: datetime,
    end: datetime,
    final_before: datetime | None,
) -> DataFrame:
    """The notebook's gold rows (and the aligned beta) for the windows starting in [start, end).

    A window [w, w + 2h) is exactly the 24 buckets w, w + 5m, ...: the buckets of a symbol
    meet in one task, where numpy adds each window up from its buckets (`windows.gold_rows`).
    `final_before`: windows ending before it are the ones the streaming query has emitted.
    """
    start_us, end_us = (epoch_us(t) for t in (start, end))
    final_before_us = epoch_us(final_before) if final_before is not None else None

    def rows_per_task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        received = [batch for batch in batches if batch.num_rows]
        if received:
            rows = pa.Table.from_batches(received)
            yield from gold_rows(rows, settings, start_us, end_us, final_before_us).to_batches()

    by_symbol = buckets.select(*BUCKET_SCHEMA.names).repartition(SYMBOL)
    return by_symbol.mapInArrow(rows_per_task, from_arrow_schema(GOLD_SCHEMA))

"""spy_returns' pass over silver in local mode, from silver's files read by Python tasks.

`metrics.quality_counts_with_kept_rows` types every tick in the JVM and groups them: silver's
tick counts per (hour, quarantine reason, is market) for its checks, and the rows spy_returns
keeps. On the 11.7M-tick day that scan was 9.1 s of a 10.9 s step. Here each task reads a group
of the files with pyarrow (deletion vectors and column mapping applied) and types and counts
their ticks in Arrow and numpy, as `file_tasks` does for joined_returns: the same groups, file
by file; `quarantine.counts_and_kept_rows` sums a group's parts. `latest_micros_from_files`
reads silver's high-water marks the same way, for a run whose silver counts do not give them.

Only what Arrow types exactly as Spark does is done here (`file_tasks.typable_in_arrow`, ASCII
symbols, no noise). A row to quarantine keeps its raw values as Spark's text, so a file with
one that spy_returns keeps (in its hours, or without an event time) sends the step to the
Spark path, as a non-ASCII symbol does.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from beta_assets.band import UTC_MICROS, epoch_micros, epoch_us
from beta_assets.file_tasks import (
    FileRead,
    NotAscii,
    batches_of_files,
    file_groups,
    read_files,
    reason_codes,
    spark_symbol_codes,
)
from beta_assets.metrics import KEPT_ROWS, QUARANTINE_REASON, RAW_PREFIX
from beta_assets.settings import (
    CHANGE,
    EVENT_TIME,
    PARTITION_SPAN_MICROS,
    PRICE,
    QUARANTINE_REASONS,
    SILVER_COLUMNS,
    SYMBOL,
)
from resources.delta_files import table_filesystem

# A row's reason by its code (`file_tasks.reason_codes`).
_REASON_TEXT = pa.array([None, *QUARANTINE_REASONS], pa.string())

# A kept row and a group as Spark's toArrow gives `quality_counts_with_kept_rows`.
KEPT_ROW_TYPE = pa.struct(
    [
        (SYMBOL, pa.string()),
        (PRICE, pa.float64()),
        (CHANGE, pa.float64()),
        (EVENT_TIME, UTC_MICROS),
        *[(RAW_PREFIX + name, pa.string()) for name in SILVER_COLUMNS],
        (QUARANTINE_REASON, pa.string()),
    ]
)
QUALITY_GROUPS_SCHEMA = pa.schema(
    [
        ("hour", UTC_MICROS),
        (QUARANTINE_REASON, pa.string()),
        ("is_market", pa.bool_()),
        ("count", pa.int64()),
        ("latest_micros", pa.int64()),
        (KEPT_ROWS, pa.list_(KEPT_ROW_TYPE)),
    ]
)


# A side's (the market's, the other symbols') latest tick as `latest_event_micros_per_side`.
LATEST_PER_SIDE_SCHEMA = pa.schema([("is_market", pa.bool_()), ("latest_micros", pa.int64())])


@dataclass(frozen=True)
class _Scope:
    market_symbol: str
    counted: tuple[int, int]  # epoch microseconds, [start, end)
    kept: tuple[int, int]


class _QuarantineNeeded(Exception):
    """A row spy_returns would quarantine: its raw values must be Spark's text."""


def quality_groups_from_files(
    spark: SparkSession,
    read: FileRead,
    market_symbol: str,
    counted: tuple[datetime, datetime],
    kept: tuple[datetime, datetime],
    cores: int,
) -> DataFrame:
    """`quality_counts_with_kept_rows`' groups over `counted` with the market rows of `kept`,
    a group's counts possibly in several rows (one per batch of files); or, collected, a row
    that `needs_spark_typing` finds: silver holds what only Spark types right."""
    scope = _Scope(market_symbol, _micros_span(counted), _micros_span(kept))
    return _per_batch_of_files(
        spark, read, cores, lambda rows: _quality_groups(rows, scope), QUALITY_GROUPS_SCHEMA
    )


def latest_micros_from_files(
    spark: SparkSession, read: FileRead, market_symbol: str, cores: int
) -> DataFrame:
    """`metrics.latest_event_micros_per_side` over the files of `read`, a side's latest
    possibly in several rows (one per batch of files); or, collected, a row that
    `needs_spark_typing` finds."""
    return _per_batch_of_files(
        spark,
        read,
        cores,
        lambda rows: _latest_per_side(rows, market_symbol),
        LATEST_PER_SIDE_SCHEMA,
    )


def _per_batch_of_files(
    spark: SparkSession,
    read: FileRead,
    cores: int,
    compute: Callable[[pa.Table], pa.RecordBatch],
    schema: pa.Schema,
) -> DataFrame:
    """`compute` over the rows of each batch of `read`'s files, in tasks of about `cores`
    groups of files; a task whose files only Spark types right yields one row of nulls."""
    groups = file_groups(read.files, cores)

    def per_batch(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        filesystem = table_filesystem(read.layout.table_uri, read.storage_options)
        for batch in batches:
            for index in batch.column(0).to_pylist():
                try:
                    for batch_of_files in batches_of_files(groups[index]):
                        yield compute(read_files(read.layout, batch_of_files, filesystem))
                except (NotAscii, _QuarantineNeeded):
                    yield _spark_typing_needed(schema)
                    return

    tasks = spark.range(0, len(groups), 1, numPartitions=max(1, len(groups)))
    return tasks.mapInArrow(per_batch, from_arrow_schema(schema))


def needs_spark_typing(grouped: pa.Table) -> bool:
    return grouped.column("is_market").null_count > 0


def _spark_typing_needed(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({name: [None] for name in schema.names}, schema=schema)


def _micros_span(span: tuple[datetime, datetime]) -> tuple[int, int]:
    start, end = span
    return epoch_us(start), epoch_us(end)


def _within(micros: np.ndarray, span: tuple[int, int]) -> np.ndarray:
    return (micros >= span[0]) & (micros < span[1])


def _quality_groups(rows: pa.Table, scope: _Scope) -> pa.RecordBatch:
    """The groups of a group of files' rows, typed as `metrics.typed_ticks` and counted as
    `_quality_groups`."""
    blank, market, times, timeless, micros = _symbols_and_times(rows, scope.market_symbol)
    price = rows.column(PRICE).cast(pa.float64())
    change = rows.column(CHANGE).cast(pa.float64())
    reason = reason_codes(blank, timeless, price, change)
    kept = _within(micros, scope.kept) & ~timeless
    if np.any((reason > 0) & (kept | timeless)):
        raise _QuarantineNeeded()
    # No row without an event time is left: each would have been quarantined.
    counted = _within(micros, scope.counted)
    hour = micros // PARTITION_SPAN_MICROS * PARTITION_SPAN_MICROS
    moving = ~blank  # a symbol and an event time: the ticks that move a watermark
    keys = pa.table(
        {
            "hour": hour[counted],
            "reason": reason[counted],
            "is_market": market[counted],
            "latest": pa.array(micros[counted], mask=~moving[counted]),
        }
    )
    groups = keys.group_by(["hour", "reason", "is_market"], use_threads=False).aggregate(
        [("latest", "max"), ([], "count_all")]
    )
    market_mask = (reason == 0) & market & kept
    market_rows = pa.array(market_mask)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(groups.column("hour").to_numpy(), pa.int64()).cast(UTC_MICROS),
            _REASON_TEXT.take(groups.column("reason").combine_chunks()),
            groups.column("is_market").combine_chunks(),
            groups.column("count_all").combine_chunks(),
            groups.column("latest_max").combine_chunks(),
            _kept_lists(
                groups,
                pa.table(
                    {
                        "hour": hour[market_mask],
                        PRICE: price.filter(market_rows),
                        CHANGE: change.filter(market_rows),
                        EVENT_TIME: times.filter(market_rows),
                    }
                ),
                scope.market_symbol,
            ),
        ],
        schema=QUALITY_GROUPS_SCHEMA,
    )


def _symbols_and_times(
    rows: pa.Table, market_symbol: str
) -> tuple[np.ndarray, np.ndarray, pa.Array, np.ndarray, np.ndarray]:
    """Per row, typed as `metrics.typed_ticks`: whether its symbol is blank, whether it is the
    market's, its event time (UTC microseconds), whether it has none, and its epoch
    microseconds (0 where it has none)."""
    names, codes = spark_symbol_codes(rows.column(SYMBOL))
    blank = np.array([name is None for name in names] + [True])[codes]
    market = np.array([name == market_symbol for name in names] + [False])[codes]
    times = rows.column(EVENT_TIME).cast(UTC_MICROS)
    timeless = np.asarray(pc.is_null(times).to_numpy(zero_copy_only=False), dtype=bool)
    return blank, market, times, timeless, epoch_micros(pc.fill_null(times, 0))


def _latest_per_side(rows: pa.Table, market_symbol: str) -> pa.RecordBatch:
    """Per side with ticks that move a watermark (a symbol and an event time, whatever the
    price), its latest event time in epoch microseconds, typed as `metrics.typed_ticks`."""
    blank, market, _, timeless, micros = _symbols_and_times(rows, market_symbol)
    moving = ~blank & ~timeless
    per_side = {side: micros[moving & (market == side)] for side in (True, False)}
    latest = {side: int(times.max()) for side, times in per_side.items() if times.size}
    return pa.RecordBatch.from_pydict(
        {"is_market": list(latest), "latest_micros": list(latest.values())},
        schema=LATEST_PER_SIDE_SCHEMA,
    )


def _kept_lists(groups: pa.Table, market: pa.Table, market_symbol: str) -> pa.ListArray:
    """Per group, the market's valid ticks of the kept hours (with their "hour") that belong to
    it (those of its hour for a valid market group, none for the others), as Spark's kept
    rows."""
    market = market.sort_by("hour")
    tick_hours = market.column("hour").to_numpy()
    group_hours = groups.column("hour").to_numpy()
    valid_market = (groups.column("reason").to_numpy() == 0) & groups.column("is_market").to_numpy(
        zero_copy_only=False
    )
    first = np.searchsorted(tick_hours, group_hours, side="left")
    last = np.searchsorted(tick_hours, group_hours, side="right")
    lengths = np.where(valid_market, last - first, 0)
    spans = zip(first[valid_market], last[valid_market], strict=True)
    order = np.concatenate([np.empty(0, np.int64), *(np.arange(lo, hi) for lo, hi in spans)])
    taken = market.take(pa.array(order, pa.int64()))
    count = taken.num_rows
    values = pa.StructArray.from_arrays(
        [
            pa.array([market_symbol] * count, pa.string()),
            taken.column(PRICE).combine_chunks(),
            taken.column(CHANGE).combine_chunks(),
            taken.column(EVENT_TIME).combine_chunks(),
            # Only quarantined rows keep their raw text; a valid tick's is never read.
            *[pa.nulls(count, pa.string()) for _ in SILVER_COLUMNS],
            pa.nulls(count, pa.string()),
        ],
        fields=list(KEPT_ROW_TYPE),
    )
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=pa.list_(KEPT_ROW_TYPE))

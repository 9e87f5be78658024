"""Moving the project's tables between the Delta lake and Spark.

Reads prune by event time so a range of hours costs that range, not the table; writes replace
exactly the hours of a run in one Delta commit, so a rerun never duplicates rows.
"""

import functools
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from beta_assets.file_tasks import FileRead, file_groups, typable_in_arrow
from beta_assets.metrics import latest_event_micros_per_side, typed_ticks
from beta_assets.partitions import HOUR_FORMAT, hour_labels
from beta_assets.quality_tasks import latest_micros_from_files, needs_spark_typing
from beta_assets.settings import (
    CHANGE,
    EVENT_TIME,
    PARTITION_HOUR,
    PRICE,
    SILVER_COLUMNS,
    SILVER_VERSION,
    SYMBOL,
)
from beta_assets.watermarks import HighWaterMarks, newest_event_time
from resources.delta_files import (
    DataFile,
    TableLayout,
    app_transaction_versions,
    data_files,
    needs_delta_aware_read,
    read_data_file,
    table_filesystem,
    table_layout,
)
from resources.lake import DeltaLake, FileSelection
from resources.spark import read_parallelism, reads_local_files


class SilverSchemaError(ValueError):
    """Silver lacks a column the metrics need, or holds it in a type they cannot use."""


@dataclass(frozen=True)
class SilverRead:
    version: int
    files: FileSelection
    plan: Callable[[], DataFrame]

    @functools.cached_property
    def frame(self) -> DataFrame:
        """silver's required columns, untyped, for the files that may hold the range: planned on
        first use, since the file tasks read the files without it (Spark lists them in 70 ms a
        step on a minute's 66 files)."""
        return self.plan()


_NUMERIC_OR_TEXT = ("double", "float", "int", "decimal", "string", "large_string", "string_view")
_TIME_OR_TEXT = ("timestamp", "date", "string", "large_string", "string_view")
_ALLOWED_TYPES = {
    SYMBOL: ("string", "large_string", "string_view"),
    PRICE: _NUMERIC_OR_TEXT,
    CHANGE: _NUMERIC_OR_TEXT,
    EVENT_TIME: _TIME_OR_TEXT,
}


def silver_schema(snapshot: DeltaTable) -> pa.Schema:
    """The required columns of silver; fails naming the column on drift (extra ones ignored)."""
    schema = pa.schema(snapshot.schema().to_arrow())
    for column in SILVER_COLUMNS:
        if column not in schema.names:
            raise SilverSchemaError(
                f"silver table {snapshot.table_uri} (version {snapshot.version()}) has no column "
                f"'{column}'; it has {schema.names}"
            )
        kind = str(schema.field(column).type)
        if not kind.startswith(_ALLOWED_TYPES[column]):
            raise SilverSchemaError(
                f"silver column '{column}' has type {kind}, which cannot be read as "
                f"{_ALLOWED_TYPES[column][0]} without loss (table {snapshot.table_uri}, "
                f"version {snapshot.version()})"
            )
    return pa.schema([schema.field(column) for column in SILVER_COLUMNS])


def read_silver(
    spark: SparkSession, lake: DeltaLake, snapshot: DeltaTable, start: datetime, end: datetime
) -> SilverRead:
    """Silver's required columns from the files whose event-time statistics meet [start, end).

    This process only plans: it picks the files from the Delta log and Spark's tasks read them
    (DESIGN.md, "Where the ticks flow"). Rows are not filtered by time here: callers type the
    columns first, then keep the range.
    """
    schema = silver_schema(snapshot)
    files = _files_by_time(lake, snapshot, schema, start, end)
    return SilverRead(
        snapshot.version(), files, lambda: _silver_frame(spark, lake, snapshot, schema, files)
    )


def _silver_frame(
    spark: SparkSession,
    lake: DeltaLake,
    snapshot: DeltaTable,
    schema: pa.Schema,
    files: FileSelection,
) -> DataFrame:
    if not files.uris:
        return spark.createDataFrame([], from_arrow_schema(schema))
    if lake.is_local and reads_local_files(spark) and _plain_files(snapshot, schema):
        # Local mode on plain parquet: Spark's own reader is as fast and needs no Python.
        paths = [urllib.parse.unquote(uri) for uri in files.uris]  # file_uris keeps escapes
        return spark.read.schema(from_arrow_schema(schema)).parquet(*paths)
    planned = data_files(snapshot, files.predicate)
    layout = table_layout(snapshot, spark_compatible(schema))
    return read_in_tasks(spark, layout, planned, _options_for_tasks(spark, lake))


def silver_files(
    lake: DeltaLake, snapshot: DeltaTable, start: datetime, end: datetime
) -> FileSelection:
    """silver's files whose event-time statistics meet [start, end)."""
    return _files_by_time(lake, snapshot, silver_schema(snapshot), start, end)


def _files_by_time(
    lake: DeltaLake, snapshot: DeltaTable, schema: pa.Schema, start: datetime, end: datetime
) -> FileSelection:
    time_is_typed = pa.types.is_timestamp(schema.field(EVENT_TIME).type)
    # Text event times have statistics that do not order like time: every file may hold any.
    return lake.files_overlapping(snapshot, EVENT_TIME if time_is_typed else None, start, end)


def files_for_local_tasks(
    spark: SparkSession, lake: DeltaLake, snapshot: DeltaTable, files: FileSelection
) -> FileRead | None:
    """`files` (a `read_silver`'s) for Python tasks that read them in this machine's processes
    (`file_tasks`): in local mode, when Arrow types silver's columns as Spark does; else None."""
    schema = silver_schema(snapshot)
    if not reads_local_files(spark) or not typable_in_arrow(schema):
        return None
    layout = table_layout(snapshot, spark_compatible(schema))
    return FileRead(layout, data_files(snapshot, files.predicate), _options_for_tasks(spark, lake))


def _plain_files(snapshot: DeltaTable, schema: pa.Schema) -> bool:
    """Whether the files alone hold silver's rows: no deletion vectors or column mapping, and
    none of the wanted columns only in the log (partition values)."""
    partitioned = set(snapshot.metadata().partition_columns) & set(schema.names)
    return not partitioned and not needs_delta_aware_read(snapshot)


def _options_for_tasks(spark: SparkSession, lake: DeltaLake) -> dict[str, str]:
    # Local mode's tasks run in this machine's processes, in this environment: they get its
    # options. Elsewhere the executors' own environment provides credentials, unless shipped.
    return lake.storage_options() if reads_local_files(spark) else lake.task_storage_options()


def spark_compatible(schema: pa.Schema) -> pa.Schema:
    """Arrow types Spark's Arrow bridge takes: plain strings, microsecond timestamps."""

    def compatible(kind: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
            return pa.string()
        if pa.types.is_timestamp(kind):
            return pa.timestamp("us", tz=kind.tz)
        return kind

    return pa.schema([pa.field(f.name, compatible(f.type)) for f in schema])


# A read (of file groups of about file_tasks.TASK_READ_BYTES) has at least this many tasks per
# core of the cluster, when there are files.
TASKS_PER_CORE = 2
# Arrow batches a reading task hands to Spark.
TASK_BATCH_ROWS = 100_000


def read_in_tasks(
    spark: SparkSession,
    layout: TableLayout,
    files: list[DataFile],
    storage_options: dict[str, str],
) -> DataFrame:
    """A DataFrame of `files` that Spark's tasks read themselves, a group of files per task.

    What travels to the tasks is the plan: the file descriptors, the table's layout and the
    storage options (credentials only when the lake ships them). Each task opens its files with
    pyarrow, local or on an object store, and applies deletion vectors and column mapping; no
    row passes through this process or Spark's driver.
    """
    groups = file_groups(files, TASKS_PER_CORE * read_parallelism(spark))

    def read_groups(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        filesystem = table_filesystem(layout.table_uri, storage_options)
        for batch in batches:
            for index in batch.column(0).to_pylist():
                for file in groups[index]:
                    rows = read_data_file(layout, file, filesystem)
                    yield from rows.to_batches(max_chunksize=TASK_BATCH_ROWS)

    # One row, so one task, per group of files.
    group_ids = spark.range(0, len(groups), 1, numPartitions=max(1, len(groups)))
    return group_ids.mapInArrow(read_groups, from_arrow_schema(layout.columns))


# The first read for the high-water marks covers this much before silver's newest statistics.
_FIRST_LOOKBACK = timedelta(hours=6)
_START_OF_TIME = datetime.min.replace(tzinfo=timezone.utc)
_END_OF_TIME = datetime.max.replace(tzinfo=timezone.utc)


def silver_high_water_marks(
    spark: SparkSession, lake: DeltaLake, snapshot: DeltaTable, market_symbol: str
) -> HighWaterMarks:
    """Latest event time of the market and of the other symbols, computed in Spark's tasks.

    Reads the newest files first; the lookback grows until each side's latest tick lies inside
    it (older files cannot hold a later one) or the whole table was read.
    """
    newest = newest_event_time(snapshot)
    lookback = _FIRST_LOOKBACK
    while True:
        start = newest - lookback if newest is not None else _START_OF_TIME
        read = read_silver(spark, lake, snapshot, start, _END_OF_TIME)
        latest = {
            is_market: micros_to_utc(micros)
            for is_market, micros in latest_micros_per_side(
                spark, lake, snapshot, read, market_symbol
            ).items()
        }
        whole_table = newest is None or len(read.files.uris) == read.files.total_files
        if whole_table or all(side in latest and latest[side] >= start for side in (True, False)):
            return HighWaterMarks(market=latest.get(True), tickers=latest.get(False))
        lookback *= 4


def latest_micros_per_side(
    spark: SparkSession, lake: DeltaLake, snapshot: DeltaTable, read: SilverRead, market_symbol: str
) -> dict[bool, int]:
    """Per side (is the market), the latest epoch microseconds of `read`'s ticks that move a
    watermark: in local mode by the file tasks when they type silver as Spark does, else by
    Spark (its typing in the JVM took 2.2 s on 11.7M ticks in a warm session, the tasks 0.6 s)."""
    local = files_for_local_tasks(spark, lake, snapshot, read.files)
    if local is not None:
        cores = read_parallelism(spark)
        rows = latest_micros_from_files(spark, local, market_symbol, cores).toArrow()
        if not needs_spark_typing(rows):
            grouped = rows.group_by("is_market").aggregate([("latest_micros", "max")])
            sides = grouped.column("is_market").to_pylist()
            return dict(zip(sides, grouped.column("latest_micros_max").to_pylist(), strict=True))
    typed = typed_ticks(read.frame)
    rows = latest_event_micros_per_side(typed, market_symbol).collect()
    return {row["is_market"]: row["latest_micros"] for row in rows}


def micros_to_utc(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1e6, timezone.utc)


def read_hours_arrow(
    lake: DeltaLake, table: str, schema: pa.Schema, start: datetime, end: datetime
) -> pa.Table:
    return read_labelled_hours(lake, table, schema, hour_labels(start, end))


def read_labelled_hours(
    lake: DeltaLake, table: str, schema: pa.Schema, labels: list[str]
) -> pa.Table:
    """The rows of the hours `labels` (on-disk partition values) of a derived table."""
    snapshot = lake.open(table)
    if snapshot is None or not labels:
        return schema.empty_table()
    rows = snapshot.to_pyarrow_table(columns=schema.names, filters=[(PARTITION_HOUR, "in", labels)])
    return rows.cast(schema)


@dataclass(frozen=True)
class WrittenHours:
    table_version: int
    rows: int
    hours: int
    replayed_hours: int  # hours already written from this silver version before
    table: pa.Table  # the rows as written, with lineage and partition columns
    # Hours left as they were: the table holds them from a newer silver version than this run's.
    kept_newer: tuple[str, ...] = ()


def hour_app_id(table: str, hour: str) -> str:
    """The Delta app transaction of one hour of a table: its version is the silver version."""
    return f"tickbeta/{table}/{hour}"


def recorded_versions(
    lake: DeltaLake, table: str, start: datetime, end: datetime
) -> dict[str, int | None]:
    """Per hour of [start, end): the silver version its rows were computed from, if any."""
    snapshot = lake.open(table)
    apps = {hour: hour_app_id(table, hour) for hour in hour_labels(start, end)}
    if snapshot is None:
        return dict.fromkeys(apps)
    versions = app_transaction_versions(snapshot, apps.values())
    return {hour: versions[app] for hour, app in apps.items()}


def writable_hours(
    recorded: dict[str, int | None], silver_version: int
) -> tuple[list[str], tuple[str, ...]]:
    """(hours a run of `silver_version` may replace, hours recorded from a newer version)."""
    kept = tuple(h for h, v in recorded.items() if v is not None and v > silver_version)
    return [hour for hour in recorded if hour not in kept], kept


def write_hours(
    lake: DeltaLake,
    table: str,
    rows: pa.Table,
    time_column: str,
    start: datetime,
    end: datetime,
    silver_version: int,
    commit_metadata: dict[str, str],
) -> WrittenHours:
    """Replace the hours [start, end) of `table` with `rows` in one atomic commit.

    Hours of the range without rows become empty: a rerun after data went away clears them.
    Writes never go back in time: an hour that the table holds from a newer silver version than
    `silver_version` is kept as it is (a slow or re-executed run computed it from older data).
    """
    recorded = recorded_versions(lake, table, start, end)
    hours, kept = writable_hours(recorded, silver_version)
    labels = pc.strftime(rows.column(time_column), format=HOUR_FORMAT).cast(pa.string())
    stamped = (
        rows.append_column(SILVER_VERSION, pa.array([silver_version] * rows.num_rows, pa.int64()))
        .append_column(PARTITION_HOUR, labels)
        .filter(pc.invert(pc.is_in(labels, pa.array(kept, pa.string()))))
        .sort_by([(time_column, "ascending"), (rows.column_names[0], "ascending")])
    )
    replayed = sum(recorded[hour] == silver_version for hour in hours)
    version = lake.replace_partitions(
        table,
        stamped,
        PARTITION_HOUR,
        hours,
        commit_metadata,
        app_versions={hour_app_id(table, hour): silver_version for hour in hours},
    )
    return WrittenHours(version, stamped.num_rows, len(hours), replayed, stamped, kept)

"""Moving the project's tables between the Delta lake and Spark.

Reads prune by event time so a range of hours costs that range, not the table; writes replace
exactly the hours of a run in one Delta commit, so a rerun never duplicates rows.
"""

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.query import QueryBuilder
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from beta_assets.partitions import HOUR_FORMAT, hour_labels
from beta_assets.settings import (
    CHANGE,
    EVENT_TIME,
    PARTITION_HOUR,
    PRICE,
    SILVER_COLUMNS,
    SILVER_VERSION,
    SYMBOL,
)
from resources.lake import DeltaLake, FileSelection
from resources.spark import dataframe_from_arrow, reads_local_files


class SilverSchemaError(ValueError):
    """Silver lacks a column the metrics need, or holds it in a type they cannot use."""


@dataclass(frozen=True)
class SilverRead:
    frame: DataFrame  # silver's required columns, untyped, for the files that may hold the range
    version: int
    files: FileSelection


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

    Rows are not filtered by time here: callers type the columns first, then keep the range.
    """
    schema = silver_schema(snapshot)
    time_is_typed = pa.types.is_timestamp(schema.field(EVENT_TIME).type)
    # Text event times have statistics that do not order like time: every file is read.
    files = (
        lake.files_overlapping(snapshot, EVENT_TIME, start, end)
        if time_is_typed
        else (lake.files_overlapping(snapshot, None, start, end))
    )
    if not files.uris:
        frame = spark.createDataFrame([], from_arrow_schema(schema))
    elif lake.is_local and _plain_parquet(snapshot) and reads_local_files(spark):
        # Spark reads the files itself: nothing passes through the driver.
        frame = spark.read.schema(from_arrow_schema(schema)).parquet(*files.uris)
    else:
        frame = dataframe_from_arrow(spark, _arrow_of_files(snapshot, schema, files))
    return SilverRead(frame, snapshot.version(), files)


def _plain_parquet(snapshot: DeltaTable) -> bool:
    features = snapshot.protocol().reader_features or []
    return not {"deletionVectors", "columnMapping"} & set(features)


def _arrow_of_files(snapshot: DeltaTable, schema: pa.Schema, files: FileSelection) -> pa.Table:
    """The selected files through delta-rs: object stores (no hadoop-aws jars here), local
    files that Spark cannot see (Spark Connect, a cluster), and tables with deletion vectors
    or column mapping, which delta-rs resolves."""
    if _plain_parquet(snapshot):
        dataset = snapshot.to_pyarrow_dataset(file_pruning_predicate=files.predicate)
        return dataset.to_table(columns=schema.names).cast(schema)
    columns = ", ".join(f'"{name}"' for name in schema.names)
    where = f" WHERE {files.predicate}" if files.predicate else ""
    query = f"SELECT {columns} FROM silver{where}"
    return pa.table(QueryBuilder().register("silver", snapshot).execute(query).read_all()).cast(
        schema
    )


def read_hours_arrow(
    lake: DeltaLake, table: str, schema: pa.Schema, start: datetime, end: datetime
) -> pa.Table:
    snapshot = lake.open(table)
    if snapshot is None:
        return schema.empty_table()
    rows = snapshot.to_pyarrow_table(
        columns=schema.names, filters=[(PARTITION_HOUR, "in", hour_labels(start, end))]
    )
    return rows.cast(schema)


@dataclass(frozen=True)
class WrittenHours:
    table_version: int
    rows: int
    hours: int
    replayed_hours: int  # hours already written from this silver version before
    table: pa.Table  # the rows as written, with lineage and partition columns


def hour_app_id(table: str, hour: str) -> str:
    """The Delta app transaction of one hour of a table: its version is the silver version."""
    return f"tickbeta/{table}/{hour}"


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
    """
    hours = hour_labels(start, end)
    labels = pc.strftime(rows.column(time_column), format=HOUR_FORMAT)
    stamped = (
        rows.append_column(SILVER_VERSION, pa.array([silver_version] * rows.num_rows, pa.int64()))
        .append_column(PARTITION_HOUR, labels.cast(pa.string()))
        .sort_by([(time_column, "ascending"), (rows.column_names[0], "ascending")])
    )
    app_ids = [hour_app_id(table, hour) for hour in hours]
    snapshot = lake.open(table)
    replayed = sum(
        snapshot is not None and snapshot.transaction_version(app) == silver_version
        for app in app_ids
    )
    version = lake.replace_partitions(
        table,
        stamped,
        PARTITION_HOUR,
        hours,
        commit_metadata,
        app_versions=dict.fromkeys(app_ids, silver_version),
    )
    return WrittenHours(version, rows.num_rows, len(hours), replayed, stamped)

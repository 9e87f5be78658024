"""silver_ticks: the Delta table a feed writes; observed by Dagster, never materialized by it."""

from datetime import datetime, timedelta

from dagster import (
    AssetExecutionContext,
    DataVersion,
    MetadataValue,
    ObserveResult,
    observable_source_asset,
)
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from beta_assets.metrics import (
    final_before,
    side_high_water_marks,
    typed_ticks,
    valid_ticks,
)
from beta_assets.settings import EVENT_TIME, SILVER_TABLE
from beta_assets.storage import read_silver
from resources.lake import DeltaLake

GROUP = "tickbeta"
# A run reads this silver version when the tag is set (the sensor sets it), else the latest.
SILVER_VERSION_TAG = "tickbeta/silver_version"
_FIRST_LOOKBACK = timedelta(hours=6)


@observable_source_asset(
    name=SILVER_TABLE,
    group_name=GROUP,
    description=(
        "Raw ticks written by a feed (`tickbeta simulate`, `tickbeta import`, or your own): "
        "columns s, currentPrice, changePercent, event_time (UTC). Observed: its data version "
        "is the Delta table version."
    ),
)
def silver_ticks(lake: DeltaLake) -> ObserveResult:
    snapshot = lake.require(SILVER_TABLE)
    low, high = lake.column_range(snapshot, EVENT_TIME)
    files = lake.files_overlapping(snapshot, None, datetime.min, datetime.max)
    return ObserveResult(
        data_version=DataVersion(str(snapshot.version())),
        metadata={
            "silver_version": MetadataValue.int(snapshot.version()),
            "files": MetadataValue.int(files.total_files),
            "bytes": MetadataValue.int(files.total_bytes),
            "event_time_min": MetadataValue.text(str(low or "")),
            "event_time_max": MetadataValue.text(str(high or "")),
        },
    )


def silver_snapshot(context: AssetExecutionContext, lake: DeltaLake) -> DeltaTable:
    """The silver snapshot every step of this run reads."""
    tagged = context.run.tags.get(SILVER_VERSION_TAG)
    return lake.pinned(SILVER_TABLE, int(tagged) if tagged else None)


def silver_final_before(
    spark: SparkSession, lake: DeltaLake, snapshot: DeltaTable, market_symbol: str
) -> datetime | None:
    """The is_final cutoff of this silver snapshot, from its latest ticks on each side.

    Only the newest files are read: the lookback grows until both the market and the other
    symbols have a latest tick, or the whole table was read.
    """
    _, newest = lake.column_range(snapshot, EVENT_TIME)
    lookback = _FIRST_LOOKBACK
    while True:
        since = newest - lookback if isinstance(newest, datetime) else datetime.min
        recent = read_silver(spark, lake, snapshot, since, datetime.max)
        latest_market, latest_ticker = side_high_water_marks(
            valid_ticks(typed_ticks(recent.frame)), market_symbol
        )
        read_everything = len(recent.files.uris) == recent.files.total_files
        if (latest_market and latest_ticker) or read_everything:
            return final_before(latest_market, latest_ticker)
        lookback *= 4

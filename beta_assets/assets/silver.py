"""silver_ticks: the Delta table a feed writes; observed by Dagster, never materialized by it."""

from collections.abc import Mapping
from datetime import datetime, timezone

from dagster import (
    AssetExecutionContext,
    DataVersion,
    MetadataValue,
    ObserveResult,
    observable_source_asset,
)
from deltalake import DeltaTable

from beta_assets.partitions import floor_hour
from beta_assets.settings import EVENT_TIME, PARTITION_SPAN, SILVER_TABLE
from resources.lake import DeltaLake

GROUP = "tickbeta"
# A run reads this silver version when the tag is set (the sensor sets it), else the latest.
SILVER_VERSION_TAG = "tickbeta/silver_version"


def writer_pool(table: str) -> str:
    """The concurrency pool of a table's writers: one at a time (deploy/dagster.yaml)."""
    return f"delta_{table}"


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
    return pinned_silver(context.run.tags, lake)


def pinned_silver(tags: Mapping[str, str], lake: DeltaLake) -> DeltaTable:
    """Silver at the run's tagged version (the sensor tags it), else as first seen."""
    tagged = tags.get(SILVER_VERSION_TAG)
    return lake.pinned(SILVER_TABLE, int(tagged) if tagged else None)


def whole_table_hours(lake: DeltaLake, snapshot: DeltaTable) -> tuple[datetime, datetime]:
    """Every hour silver's statistics say it holds (all time when it has none)."""
    first, last = lake.column_range(snapshot, EVENT_TIME)
    if not isinstance(first, datetime) or not isinstance(last, datetime):
        return datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc)
    return floor_hour(first), floor_hour(last) + PARTITION_SPAN

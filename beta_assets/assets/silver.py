"""silver_ticks: the Delta table a feed writes; observed by Dagster, never materialized by it."""

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    DataVersion,
    MetadataValue,
    ObserveResult,
    multi_observable_source_asset,
)
from deltalake import DeltaTable

from beta_assets.assets.catalog import COLUMN_SCHEMA, GROUP, LAYER, OWNERS, SILVER_COLUMN_SCHEMA
from beta_assets.partitions import ceil_hour, floor_bucket, floor_hour
from beta_assets.settings import BAND, EVENT_TIME, PARTITION_SPAN, SILVER_TABLE, SLIDE
from resources.lake import DeltaLake

# The silver version the sensor saw when it requested the run. Information only: a run reads
# the newest silver when it starts (a re-execution of an old run too), so no run computes from
# a version older than what the lake already holds.
SILVER_VERSION_SEEN_TAG = "tickbeta/silver_version_seen"
# Set by the sensor on every run it requests: why (an append, a full recompute, hours owed).
SENSOR_TRIGGER_TAG = "tickbeta/trigger"
# The version a run actually read, added to every run so the Runs page finds it by version.
SILVER_VERSION_READ_TAG = "tickbeta/silver_version_read"


# Set by the sensor on incremental runs: the event-time span the new silver versions changed.
# Steps then recompute only the hours that span can reach; the rest of the range is unchanged.
CHANGED_FIRST_TAG = "tickbeta/changed_first"
CHANGED_LAST_TAG = "tickbeta/changed_last"
# A changed tick changes the buckets of the ticks within one band of it: joined_returns
# recomputes, and reads silver over, the hours that close to a change (spy_returns fewer).
SILVER_READ_REACH = BAND


def hours_to_recompute(
    context: AssetExecutionContext, reach: timedelta
) -> tuple[datetime, datetime] | None:
    """The hours of the run's range that ticks changed within `reach` of can affect.

    The whole range when the run says nothing about what changed; None when nothing in
    the range can have changed (the step then keeps its hours as they are).
    """
    return changed_hours_within(tuple(context.partition_time_window), context.run.tags, reach)


def changed_hours_within(
    hours: tuple[datetime, datetime], tags: Mapping[str, str], reach: timedelta
) -> tuple[datetime, datetime] | None:
    """The hours of [start, end) within `reach` of the changed span a run's tags name (all of
    them when the tags name none; None when none is that close)."""
    buckets = changed_buckets_within(hours, tags, reach)
    return (floor_hour(buckets[0]), ceil_hour(buckets[1])) if buckets else None


def changed_buckets_within(
    hours: tuple[datetime, datetime], tags: Mapping[str, str], reach: timedelta
) -> tuple[datetime, datetime] | None:
    """The 5-minute buckets of [start, end) holding ticks within `reach` of the changed span a
    run's tags name, as [first bucket's start, last bucket's end) (all of [start, end) when
    the tags name none; None when no bucket is that close).

    Finer than the hours: a minute appended just after an hour's end reaches back one band,
    into the last bucket of the hour before, not into all of it."""
    start, end = hours
    first = tags.get(CHANGED_FIRST_TAG)
    last = tags.get(CHANGED_LAST_TAG)
    if not first or not last:
        return start, end
    low = max(start, floor_bucket(datetime.fromisoformat(first) - reach))
    high = min(end, floor_bucket(datetime.fromisoformat(last) + reach) + SLIDE)
    return (low, high) if low < high else None


# An observable source with a spec (rather than @observable_source_asset) so that it can carry
# owners and kinds like the assets computed from it.
silver_spec = AssetSpec(
    SILVER_TABLE,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"delta"},
    tags={LAYER: "silver"},
    metadata={COLUMN_SCHEMA: SILVER_COLUMN_SCHEMA},
    description=(
        "Raw ticks written by a feed (`tickbeta simulate`, `tickbeta import`, or your own), "
        "one row per quote: s, currentPrice, changePercent, event_time (UTC); other columns "
        "are ignored. Not partitioned: Dagster observes it (*Observe*), never writes it; its "
        "data version is the Delta table version, and each run reads one pinned version."
    ),
)


@multi_observable_source_asset(specs=[silver_spec], name="observe_silver_ticks")
def silver_ticks(lake: DeltaLake) -> ObserveResult:
    snapshot = lake.require(SILVER_TABLE)
    low, high = lake.column_range(snapshot, EVENT_TIME)
    files = lake.files_overlapping(snapshot, None, datetime.min, datetime.max)
    return ObserveResult(
        asset_key=silver_spec.key,
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
    """The silver snapshot every step of this run reads; the run is tagged with its version."""
    snapshot = pinned_silver(lake)
    context.instance.add_run_tags(
        context.run_id, {SILVER_VERSION_READ_TAG: str(snapshot.version())}
    )
    return snapshot


def pinned_silver(lake: DeltaLake) -> DeltaTable:
    """Silver as this run first saw it: the newest version when the run's first step read it,
    then the same version for every step (a feed appending meanwhile changes nothing)."""
    return lake.pinned(SILVER_TABLE)


def whole_table_hours(lake: DeltaLake, snapshot: DeltaTable) -> tuple[datetime, datetime]:
    """Every hour silver's statistics say it holds (all time when it has none)."""
    first, last = lake.column_range(snapshot, EVENT_TIME)
    if not isinstance(first, datetime) or not isinstance(last, datetime):
        return datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc)
    return floor_hour(first), floor_hour(last) + PARTITION_SPAN

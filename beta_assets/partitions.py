"""Hourly UTC partitions and the dependencies between them (DESIGN.md, "The picture")."""

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone

from dagster import HourlyPartitionsDefinition, TimeWindowPartitionMapping
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from beta_assets.settings import BAND, PARTITION_SPAN, SLIDE, WINDOW, partitions_start

hourly_partitions = HourlyPartitionsDefinition(
    start_date=datetime.fromisoformat(partitions_start()).replace(tzinfo=timezone.utc),
    timezone="UTC",
    fmt="%Y-%m-%d-%H:%M",
    # The hour in progress is a partition too: a live feed's provisional windows belong there.
    end_offset=1,
)


def _whole_partitions(span: timedelta) -> int:
    return -(-span // PARTITION_SPAN)


# Market ticks that ticks of hour P pair with lie in [P - BAND, P + 1h + BAND]: whole hours
# around P. Exact at the end: a market tick at P + 1h + BAND pairs with no tick of P.
BAND_REACH = _whole_partitions(BAND) * PARTITION_SPAN

# The windows starting in hour P cover buckets in [P, P + 1h + WINDOW - SLIDE].
WINDOW_REACH = _whole_partitions(WINDOW) * PARTITION_SPAN

# What Dagster is told: hour P of a table depends on hour P of the one above it. The reads reach
# further (BAND_REACH, WINDOW_REACH: joined_returns P reads spy_returns P-1 ... P+1, gold P reads
# joined_returns P ... P+2), but Dagster's asset backfill runs a child in its parent's run only
# under an identity or zero-offset mapping: with the true offsets, one UI launch over a range
# became a run per asset, each with its own Spark. The sensor, not Dagster's mapping, decides
# which hours a change reaches (sensors.py), and the neighbour hours a step reads are already
# materialized tables.
same_hour_mapping = TimeWindowPartitionMapping(start_offset=0, end_offset=0)

# On-disk partition value of an hour: sorts like time, no characters file systems dislike.
HOUR_FORMAT = "%Y-%m-%dT%H"


def hour_label(moment: datetime) -> str:
    return floor_hour(moment).strftime(HOUR_FORMAT)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    start = floor_hour(moment)
    return start if start == moment else start + PARTITION_SPAN


def floor_bucket(moment: datetime) -> datetime:
    """The start of the 5-minute bucket (of joined_returns, on the windows' grid) of `moment`."""
    hour = floor_hour(moment)
    return hour + (moment - hour) // SLIDE * SLIDE


def hours_between(start: datetime, end: datetime) -> Iterator[datetime]:
    """Hour starts in [start, end), with start and end on hour boundaries."""
    hour = floor_hour(start)
    while hour < end:
        yield hour
        hour += PARTITION_SPAN


def hour_labels(start: datetime, end: datetime) -> list[str]:
    return [hour_label(hour) for hour in hours_between(start, end)]


def hours_holding(first_tick: datetime, last_tick: datetime) -> tuple[datetime, datetime]:
    """Hours [start, end) of every partition that ticks in [first_tick, last_tick] touch.

    The earliest window holding the first tick starts WINDOW - SLIDE before its bucket.
    """
    return floor_hour(first_tick - (WINDOW - SLIDE)), floor_hour(last_tick) + PARTITION_SPAN


def partition_keys_covering(first_tick: datetime, last_tick: datetime) -> tuple[str, str]:
    start, end = hours_holding(first_tick, last_tick)
    return partition_key(start), partition_key(end - PARTITION_SPAN)


def partition_key(moment: datetime) -> str:
    return floor_hour(moment).strftime(hourly_partitions.fmt)


def hour_of_key(key: str) -> datetime:
    return datetime.strptime(key, hourly_partitions.fmt).replace(tzinfo=timezone.utc)


def hours_of_run(tags: Mapping[str, str]) -> tuple[datetime, datetime] | None:
    """The hours [start, end) of a partitioned run (one partition or a range); else None."""
    first = tags.get(ASSET_PARTITION_RANGE_START_TAG) or tags.get(PARTITION_NAME_TAG)
    last = tags.get(ASSET_PARTITION_RANGE_END_TAG) or tags.get(PARTITION_NAME_TAG)
    if not first or not last:
        return None
    return hour_of_key(first), hour_of_key(last) + PARTITION_SPAN

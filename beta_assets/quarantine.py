"""Rows that cannot be used: kept in the quarantine table with their reason, and counted.

Nothing is lost: a bad row keeps its raw values (as text), the reason it failed and the silver
version it came from. Rows with a usable event time belong to that hour's partition and are
replaced with it on a rerun; rows without one go to the `unparsed` partition once each
(identified by their raw values), whichever run meets them first.
"""

from collections import Counter
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from beta_assets.metrics import (
    KEPT_ROWS,
    MARKET_SCHEMA,
    QUALITY_KEYS,
    QUARANTINE_REASON,
    RAW_PREFIX,
)
from beta_assets.partitions import HOUR_FORMAT
from beta_assets.settings import (
    CHANGE,
    EVENT_TIME,
    MARKET_EVENT_TIME,
    MARKET_PRICE,
    MARKET_RETURN,
    PARTITION_HOUR,
    PRICE,
    QUARANTINE_TABLE,
    SILVER_COLUMNS,
    SILVER_VERSION,
)
from beta_assets.storage import hour_app_id, recorded_versions, writable_hours
from resources.lake import DeltaLake

UNPARSED_HOUR = "unparsed"
ROW_KEY = "row_key"
PARSED_EVENT_TIME = "event_time_utc"


def counts_and_kept_rows(grouped: pa.Table) -> tuple[pd.DataFrame, pa.Table]:
    """(silver's tick counts per group, the rows kept for spy_returns) of
    `quality_counts_with_kept_rows`' output."""
    rows = pa.Table.from_struct_array(pc.list_flatten(grouped.column(KEPT_ROWS)))
    counts = _one_row_per_group(grouped.drop_columns([KEPT_ROWS]))
    # The hour as Spark's toPandas gives it (naive, in the session's UTC).
    naive_hour = counts.column("hour").cast(pa.timestamp("ns"))
    counts = counts.set_column(counts.schema.get_field_index("hour"), "hour", naive_hour)
    return counts.to_pandas(), rows


def _one_row_per_group(counts: pa.Table) -> pa.Table:
    """The counts with a group's parts summed (the file tasks count file by file)."""
    summed = counts.group_by(QUALITY_KEYS, use_threads=False).aggregate(
        [("count", "sum"), ("latest_micros", "max")]
    )
    return pa.table(
        {
            **{key: summed.column(key) for key in QUALITY_KEYS},
            "count": summed.column("count_sum"),
            "latest_micros": summed.column("latest_micros_max"),
        }
    )


def split_rows(rows: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(valid market rows, rejected rows) of `market_and_rejected_rows`' output."""
    rejected = pc.is_valid(rows.column(QUARANTINE_REASON))
    return rows.filter(pc.invert(rejected)), rows.filter(rejected)


def market_series_rows(market_rows: pa.Table) -> tuple[pa.Table, int]:
    """spy_returns rows, exact duplicate ticks counted once; and how many were dropped."""
    unique = market_rows.group_by([EVENT_TIME, PRICE, CHANGE]).aggregate([])
    series = pa.table(
        {
            MARKET_EVENT_TIME: unique.column(EVENT_TIME),
            MARKET_RETURN: unique.column(CHANGE),
            MARKET_PRICE: unique.column(PRICE),
        },
        schema=MARKET_SCHEMA,
    ).sort_by([(MARKET_EVENT_TIME, "ascending"), (MARKET_PRICE, "ascending")])
    return series, market_rows.num_rows - unique.num_rows


def reason_counts(rejected: pa.Table) -> dict[str, int]:
    return dict(sorted(Counter(rejected.column(QUARANTINE_REASON).to_pylist()).items()))


def quarantine_rows(rejected: pa.Table, silver_version: int) -> pa.Table:
    """Raw values as text, reason, parsed event time (if any), lineage and partition."""
    raw = {name: rejected.column(RAW_PREFIX + name) for name in SILVER_COLUMNS}
    times = rejected.column(EVENT_TIME)
    hours = pc.fill_null(pc.strftime(times, format=HOUR_FORMAT), UNPARSED_HOUR)
    key_parts = [pc.fill_null(column, "<null>") for column in raw.values()]
    return pa.table(
        {
            **raw,
            PARSED_EVENT_TIME: times,
            QUARANTINE_REASON: rejected.column(QUARANTINE_REASON),
            ROW_KEY: pc.binary_join_element_wise(*key_parts, "\x1f"),
            SILVER_VERSION: pa.array([silver_version] * rejected.num_rows, pa.int64()),
            PARTITION_HOUR: hours,
        }
    )


def write_quarantine(
    lake: DeltaLake,
    rows: pa.Table,
    start: datetime,
    end: datetime,
    silver_version: int,
    commit_metadata: dict[str, str],
) -> tuple[str, ...]:
    """Replace the hours [start, end) of the quarantine; add unseen rows without a time.

    As with the derived tables, an hour recorded from a newer silver version is kept as it is
    (returned): a slow or re-executed run must not bring back rows that silver no longer has.
    """
    recorded = recorded_versions(lake, QUARANTINE_TABLE, start, end)
    hours, kept = writable_hours(recorded, silver_version)
    unparsed = pc.equal(rows.column(PARTITION_HOUR), UNPARSED_HOUR)
    timed = rows.filter(
        pc.and_(
            pc.invert(unparsed), pc.is_in(rows.column(PARTITION_HOUR), pa.array(hours, pa.string()))
        )
    )
    lake.replace_partitions(
        QUARANTINE_TABLE,
        timed,
        PARTITION_HOUR,
        hours,
        commit_metadata,
        app_versions={hour_app_id(QUARANTINE_TABLE, hour): silver_version for hour in hours},
    )
    untimed = rows.filter(unparsed)
    if untimed.num_rows:
        lake.insert_missing(QUARANTINE_TABLE, untimed, ROW_KEY, commit_metadata)
    return kept

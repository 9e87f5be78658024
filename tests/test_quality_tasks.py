"""Local mode counts silver's ticks for spy_returns in Python tasks that read silver's files:
the same counts and kept rows as Spark's typing, and Spark's path wherever a row must be
quarantined with Spark's text."""

from datetime import datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from beta_assets.assets.returns import FILE_TASKS_PATH, SPARK_TYPING_PATH
from beta_assets.band import epoch_us
from beta_assets.metrics import (
    QUALITY_KEYS,
    QUARANTINE_REASON,
    MetricSettings,
    latest_event_micros_per_side,
    quality_counts_with_kept_rows,
    typed_ticks,
)
from beta_assets.quality_tasks import (
    QUALITY_GROUPS_SCHEMA,
    latest_micros_from_files,
    needs_spark_typing,
    quality_groups_from_files,
)
from beta_assets.quarantine import counts_and_kept_rows
from beta_assets.settings import (
    CHANGE,
    EVENT_TIME,
    PRICE,
    QUARANTINE_REASONS,
    SILVER_TABLE,
    SPY_RETURNS_TABLE,
    SYMBOL,
)
from beta_assets.storage import files_for_local_tasks, latest_micros_per_side, read_silver
from resources.lake import DeltaLake
from tests import datasets
from tests.pipeline import covering_keys, materialized_metadata, run_range, write_silver
from tests.test_bad_input import dirty

COUNTED = (datasets.at(14), datasets.at(21))
KEPT = (datasets.at(16), datasets.at(21))  # the bad rows (15:07) are counted, not kept
MARKET_ROW = [SYMBOL, PRICE, CHANGE, EVENT_TIME, QUARANTINE_REASON]


def silver_with_bad_rows(lake_root: str, with_timeless_row: bool = False) -> DeltaLake:
    ticks = dirty(datasets.simulated(symbols=3, interval=90.0, seed=83))
    if not with_timeless_row:
        ticks = ticks.filter(pc.is_valid(ticks.column(EVENT_TIME)))
    write_silver(lake_root, ticks.slice(0, 500))
    write_silver(lake_root, ticks.slice(500))  # two files, each task counts its own
    return DeltaLake(root=lake_root)


def both_paths(spark, lake: DeltaLake) -> tuple[pa.Table, pa.Table]:
    """`quality_counts_with_kept_rows`' groups from the file tasks and from Spark."""
    snapshot = lake.open(SILVER_TABLE)
    silver = read_silver(spark, lake, snapshot, *COUNTED)
    read = files_for_local_tasks(spark, lake, snapshot, silver.files)
    by_files = quality_groups_from_files(spark, read, "SPY", COUNTED, KEPT, cores=2).toArrow()
    typed = typed_ticks(silver.frame)
    by_spark = quality_counts_with_kept_rows(typed, MetricSettings(), COUNTED, KEPT).toArrow()
    return by_files, by_spark


def sorted_counts(counts: pd.DataFrame) -> pd.DataFrame:
    return counts.sort_values(QUALITY_KEYS, na_position="first").reset_index(drop=True)


def test_file_tasks_count_as_spark_types(spark, lake_root):
    by_files, by_spark = both_paths(spark, silver_with_bad_rows(lake_root))
    assert not needs_spark_typing(by_files)
    # Spark's columns and types (its nullability aside).
    assert by_spark.cast(QUALITY_GROUPS_SCHEMA).schema.equals(by_files.schema)

    counts, rows = counts_and_kept_rows(by_files)
    spark_counts, spark_rows = counts_and_kept_rows(by_spark)
    pd.testing.assert_frame_equal(sorted_counts(counts), sorted_counts(spark_counts))
    reasons = set(counts[QUARANTINE_REASON].dropna())
    assert reasons == set(QUARANTINE_REASONS) - {"bad_event_time"}
    assert counts["is_market"].any() and (~counts["is_market"]).any()

    order = [(EVENT_TIME, "ascending"), (PRICE, "ascending")]
    market = rows.select(MARKET_ROW).sort_by(order)
    assert market.num_rows > 100 and set(market.column(SYMBOL).to_pylist()) == {"SPY"}
    first = pc.min(market.column(EVENT_TIME)).as_py()
    assert first >= KEPT[0] and isinstance(first, datetime)
    assert market.equals(spark_rows.select(MARKET_ROW).sort_by(order))


def test_a_row_to_quarantine_sends_the_count_to_spark(spark, lake_root):
    by_files, _ = both_paths(spark, silver_with_bad_rows(lake_root, with_timeless_row=True))
    assert needs_spark_typing(by_files)


def quality_path(result) -> str:
    return materialized_metadata(result, SPY_RETURNS_TABLE)["quality_path"]


def test_spy_returns_counts_by_file_tasks_on_clean_silver_by_spark_on_bad(lake_root, tmp_path):
    clean = datasets.simulated(symbols=2, interval=300.0, seed=84)
    write_silver(lake_root, clean)
    assert quality_path(run_range(lake_root, *covering_keys(clean))) == FILE_TASKS_PATH

    dirty_lake = str(tmp_path / "dirty")
    write_silver(dirty_lake, dirty(clean))
    result = run_range(dirty_lake, *covering_keys(clean), max_bad_share=0.2)
    assert quality_path(result) == SPARK_TYPING_PATH


def test_file_tasks_find_each_sides_latest_tick_as_spark_does(spark, lake_root):
    """Silver's high-water marks from the file tasks: a ticker tick of unusable price moves its
    side, a loosely spelled market symbol is the market's, a blank symbol or a missing event
    time moves nothing; equal to Spark's typing and to the planted ticks."""
    ticks = dirty(datasets.simulated(symbols=3, interval=90.0, seed=85))
    latest = pc.max(ticks.column(EVENT_TIME)).as_py()
    seconds = [timedelta(seconds=n) for n in (30, 45, 60, 75)]
    after = datasets.ticks(
        [
            ("T002", float("nan"), 0.1, latest + seconds[0]),
            (" spy", 10.0, 0.1, latest + seconds[1]),
            ("\t", 10.0, 0.1, latest + seconds[2]),
            (None, 10.0, 0.1, latest + seconds[3]),
            ("T001", 10.0, 0.1, None),
        ]
    )
    write_silver(lake_root, ticks)
    write_silver(lake_root, after)
    lake = DeltaLake(root=lake_root)
    snapshot = lake.open(SILVER_TABLE)
    silver = read_silver(spark, lake, snapshot, datasets.at(0), latest + timedelta(hours=1))
    read = files_for_local_tasks(spark, lake, snapshot, silver.files)
    assert not needs_spark_typing(latest_micros_from_files(spark, read, "SPY", 2).toArrow())

    by_files = latest_micros_per_side(spark, lake, snapshot, silver, "SPY")
    by_spark = latest_event_micros_per_side(typed_ticks(silver.frame), "SPY").collect()
    assert by_files == {row["is_market"]: row["latest_micros"] for row in by_spark}
    planted = {True: latest + seconds[1], False: latest + seconds[0]}
    assert by_files == {side: epoch_us(moment) for side, moment in planted.items()}

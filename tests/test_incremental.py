"""Gold kept current by the sensor equals gold computed once over everything."""

from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from beta_assets.assets.silver import (
    CHANGED_FIRST_TAG,
    CHANGED_LAST_TAG,
    changed_buckets_within,
    changed_hours_within,
)
from beta_assets.settings import (
    BAND,
    CHANGE,
    GOLD_COLUMNS,
    GOLD_TABLE,
    JOINED_RETURNS_TABLE,
    PRICE,
)
from tests import datasets
from tests.compare import assert_same_windows
from tests.pipeline import read_table, run_all, run_range, write_silver
from tests.reference import notebook_gold
from tests.sensing import SensorDriver

KEY = ["s", "window_start"]
# silver_version is lineage: an hour computed at an earlier version says so.
COMPARED = [*GOLD_COLUMNS, "partition_hour"]


def in_appends(ticks: pa.Table, count: int) -> list[pa.Table]:
    ordered = ticks.sort_by("event_time")
    cuts = [i * ordered.num_rows // count for i in range(count + 1)]
    return [ordered.slice(cuts[i], cuts[i + 1] - cuts[i]) for i in range(count)]


def replay(lake_root: str, appends: list[pa.Table]) -> SensorDriver:
    driver = SensorDriver(lake_root)
    for batch in appends:
        write_silver(lake_root, batch)
        assert driver.run_requested(driver.evaluate()) == 1
    return driver


def test_sensor_driven_appends_equal_one_full_materialization(lake_root, tmp_path):
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=31)
    replay(lake_root, in_appends(ticks, 12))
    incremental = read_table(lake_root, GOLD_TABLE)[COMPARED]
    full = run_all(str(tmp_path / "full"), ticks)[COMPARED]
    pd.testing.assert_frame_equal(
        incremental.sort_values(KEY).reset_index(drop=True),
        full.sort_values(KEY).reset_index(drop=True),
    )
    assert incremental["is_final"].any() and not incremental["is_final"].all()


def test_a_tick_five_hours_late_updates_its_windows(spark, lake_root):
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=32)
    driver = replay(lake_root, in_appends(ticks, 3))
    late = datasets.ticks([("T001", 55.0, 0.8, datasets.at(15, 31))])  # 5h+ after its time
    write_silver(lake_root, late)
    before = read_table(lake_root, GOLD_TABLE).set_index(KEY)
    result = driver.evaluate()
    assert result.run_requests[0].tags["tickbeta/late_ticks"] == "1"
    driver.run_requested(result)
    after = read_table(lake_root, GOLD_TABLE)
    everything = pa.concat_tables([ticks, late])
    assert_same_windows(after, notebook_gold(spark.createDataFrame(everything)).toPandas())
    changed = after.set_index(KEY)["sample_size"] - before["sample_size"]
    assert (changed.xs("T001", level="s") > 0).sum() == 24  # every window holding 15:31


def test_an_incremental_run_recomputes_only_the_hours_the_change_reaches(lake_root):
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=33)
    driver = replay(lake_root, in_appends(ticks, 2))
    late = datasets.ticks([("T001", 55.0, 0.8, datasets.at(17, 10))])
    write_silver(lake_root, late)
    (request,) = driver.evaluate().run_requests
    tags = request.tags
    assert tags["tickbeta/changed_first"].startswith("2026-01-05T17:10")
    result = run_range(
        lake_root,
        tags["dagster/asset_partition_range_start"],
        tags["dagster/asset_partition_range_end"],
        tags=tags,
    )

    def recomputed_hours(asset: str) -> list[str]:
        events = result.asset_materializations_for_node(asset)
        return sorted(
            e.partition
            for e in events
            if e.metadata.get("recomputed", None) is None or e.metadata["recomputed"].value
        )

    assert recomputed_hours("spy_returns") == ["2026-01-05-17:00"]
    assert recomputed_hours("joined_returns") == [f"2026-01-05-{h}:00" for h in (16, 17, 18)]
    gold_hours = recomputed_hours("gold_beta_metrics")
    assert "2026-01-05-14:00" in gold_hours and "2026-01-05-18:00" in gold_hours


def _prices_as_text(ticks: pa.Table) -> pa.Table:
    """Silver whose prices are text: Arrow does not type them as Spark does, so joined_returns
    takes Spark's path (the file tasks serve typed columns only)."""
    for column in (PRICE, CHANGE):
        index = ticks.schema.get_field_index(column)
        ticks = ticks.set_column(index, column, ticks.column(column).cast(pa.string()))
    return ticks


@pytest.mark.parametrize("prices", ["typed", "text"])
def test_a_minute_across_an_hour_computes_only_the_buckets_it_reaches(lake_root, tmp_path, prices):
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=34).sort_by("event_time")
    if prices == "text":
        ticks = _prices_as_text(ticks)
    times = ticks.column("event_time")
    before = ticks.filter(pc.less(times, datasets.at(16, 58)))
    minute = ticks.filter(
        pc.and_(pc.greater_equal(times, datasets.at(16, 58)), pc.less(times, datasets.at(17, 1)))
    )
    rest = ticks.filter(pc.greater_equal(times, datasets.at(17, 1)))
    driver = replay(lake_root, [before])
    write_silver(lake_root, minute)
    (request,) = driver.evaluate().run_requests
    result = run_range(
        lake_root,
        request.tags["dagster/asset_partition_range_start"],
        request.tags["dagster/asset_partition_range_end"],
        tags=request.tags,
    )
    # The minute's ticks pair with ticks one band back: from 15:58, in the bucket of 15:55;
    # hour 15's earlier buckets are kept, not computed again from silver.
    first, last = pc.min(minute["event_time"]).as_py(), pc.max(minute["event_time"]).as_py()
    assert first < datasets.at(17) and first >= datasets.at(16, 58)
    reach_end = last + timedelta(hours=1)
    last_bucket = reach_end.replace(minute=reach_end.minute // 5 * 5, second=0, microsecond=0)
    (joined,) = result.asset_materializations_for_node("joined_returns")[:1]
    computed = joined.metadata["buckets_computed"].value
    path = joined.metadata["bucket_path"].value
    assert path.startswith("spark" if prices == "text" else "file tasks")
    last_bucket_end = last_bucket + timedelta(minutes=5)
    assert computed == f"{datasets.at(15, 55).isoformat()} ... {last_bucket_end.isoformat()}"
    write_silver(lake_root, rest)
    driver.run_requested(driver.evaluate())
    incremental = read_table(lake_root, GOLD_TABLE)[COMPARED]
    full = run_all(str(tmp_path / "full"), ticks)[COMPARED]
    pd.testing.assert_frame_equal(
        incremental.sort_values(KEY).reset_index(drop=True),
        full.sort_values(KEY).reset_index(drop=True),
    )
    counts = ["s", "bucket_start", "pair_count", "paired_ticks", "unpaired_ticks"]
    pd.testing.assert_frame_equal(
        read_table(lake_root, JOINED_RETURNS_TABLE)[counts]
        .sort_values(counts[:2])
        .reset_index(drop=True),
        read_table(str(tmp_path / "full"), JOINED_RETURNS_TABLE)[counts]
        .sort_values(counts[:2])
        .reset_index(drop=True),
    )


def test_a_change_reaches_the_buckets_one_band_around_it():
    at = datasets.at
    tags = {
        CHANGED_FIRST_TAG: at(20, 59, 59.5).isoformat(),
        CHANGED_LAST_TAG: at(21, 0, 58).isoformat(),
    }
    hours = (at(14), at(23))
    assert changed_buckets_within(hours, tags, BAND) == (at(19, 55), at(22, 5))
    assert changed_hours_within(hours, tags, BAND) == (at(19), at(23))
    assert changed_buckets_within((at(14), at(21)), tags, BAND) == (at(19, 55), at(21))
    assert changed_buckets_within((at(10), at(19)), tags, BAND) is None
    assert changed_hours_within((at(10), at(19)), tags, BAND) is None
    assert changed_buckets_within(hours, {}, BAND) == hours  # a run that names no change

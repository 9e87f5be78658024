"""Gold kept current by the sensor equals gold computed once over everything."""

import pandas as pd
import pyarrow as pa

from beta_assets.settings import GOLD_COLUMNS, GOLD_TABLE
from tests import datasets
from tests.compare import assert_same_windows
from tests.pipeline import read_table, run_all, write_silver
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
    from tests.pipeline import run_range

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

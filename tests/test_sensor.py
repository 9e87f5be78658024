"""The silver sensor against real Delta tables in temporary folders."""

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster import AssetKey, DagsterRun, DagsterRunStatus
from dagster._core.utils import make_new_run_id
from deltalake import DeltaTable

from beta_assets.assets.silver import SENSOR_TRIGGER_TAG
from beta_assets.definitions import beta_pipeline
from beta_assets.sensors import SilverCursor
from beta_assets.settings import GOLD_TABLE, SILVER_TABLE
from tests import datasets
from tests.pipeline import write_silver
from tests.sensing import SensorDriver, requested_ranges


def between(ticks: pa.Table, start, end) -> pa.Table:
    times = ticks.column("event_time")
    return ticks.filter(
        pc.and_(pc.greater_equal(times, pa.scalar(start)), pc.less(times, pa.scalar(end)))
    )


@pytest.fixture
def day() -> pa.Table:
    return datasets.simulated(symbols=2, interval=120.0, seed=4)


@pytest.fixture
def driver(lake_root, day) -> SensorDriver:
    """A sensor that has handled silver's first version (ticks until 16:00)."""
    write_silver(lake_root, between(day, datasets.at(0), datasets.at(16)))
    driver = SensorDriver(lake_root)
    first = driver.evaluate()
    assert requested_ranges(first) == [("2026-01-05-12:00", "2026-01-05-15:00")]  # everything
    return driver


def test_nothing_new_launches_nothing(driver):
    result = driver.evaluate()
    assert result.run_requests == [] and "still at version 0" in result.skip_message


def test_append_requests_the_hours_whose_windows_change(driver, lake_root, day):
    write_silver(lake_root, between(day, datasets.at(16), datasets.at(17)))
    result = driver.evaluate()
    # Ticks in [16:00, 16:58]: windows starting in (13:00, 17:58].
    assert requested_ranges(result) == [("2026-01-05-13:00", "2026-01-05-17:00")]
    assert result.run_requests[0].tags["tickbeta/silver_version_seen"] == "1"
    assert SilverCursor.from_json(result.cursor).version == 1
    (observation,) = result.asset_events
    assert (
        observation.metadata["rows_added"].value
        == between(day, datasets.at(16), datasets.at(17)).num_rows
    )


def test_two_appends_between_evaluations_make_one_run(driver, lake_root, day):
    write_silver(lake_root, between(day, datasets.at(16), datasets.at(17)))
    write_silver(lake_root, between(day, datasets.at(17), datasets.at(18)))
    result = driver.evaluate()
    assert requested_ranges(result) == [("2026-01-05-13:00", "2026-01-05-18:00")]
    assert len(result.asset_events) == 2


def test_reevaluating_the_same_versions_gives_the_same_run_key(driver, lake_root, day):
    cursor = driver.cursor
    write_silver(lake_root, between(day, datasets.at(16), datasets.at(17)))
    first = driver.evaluate(cursor)
    again = driver.evaluate(cursor)
    assert [r.run_key for r in first.run_requests] == [r.run_key for r in again.run_requests]


def test_optimize_launches_nothing(driver, lake_root, day):
    write_silver(lake_root, between(day, datasets.at(16), datasets.at(17)))
    driver.evaluate()
    DeltaTable(str(Path(lake_root) / SILVER_TABLE)).optimize.compact()
    result = driver.evaluate()
    assert result.run_requests == []
    assert SilverCursor.from_json(result.cursor).version == 2
    assert result.asset_events[0].metadata["operation"].value == "OPTIMIZE"


def test_restore_recomputes_everything(driver, lake_root, day):
    write_silver(lake_root, between(day, datasets.at(16), datasets.at(21)))
    driver.evaluate()
    DeltaTable(str(Path(lake_root) / SILVER_TABLE)).restore(0)
    result = driver.evaluate()
    # Everything silver held (until 21:00) is recomputed, not only what version 0 holds.
    assert requested_ranges(result) == [("2026-01-05-12:00", "2026-01-05-20:00")]
    assert result.run_requests[0].tags[SENSOR_TRIGGER_TAG] == "full_recompute"


def test_recreated_table_recomputes_everything(driver, lake_root, day):
    write_silver(lake_root, between(day, datasets.at(16), datasets.at(17)))
    write_silver(lake_root, between(day, datasets.at(17), datasets.at(18)))
    driver.evaluate()
    shutil.rmtree(Path(lake_root) / SILVER_TABLE)
    write_silver(lake_root, between(day, datasets.at(15), datasets.at(16)))
    result = driver.evaluate()
    assert requested_ranges(result) == [("2026-01-05-12:00", "2026-01-05-17:00")]
    assert SilverCursor.from_json(result.cursor).version == 0


def test_versions_whose_log_was_cleaned_up_fall_back_to_the_snapshot(driver, lake_root, day):
    for hour in (16, 17, 18):
        write_silver(lake_root, between(day, datasets.at(hour), datasets.at(hour + 1)))
    table = DeltaTable(str(Path(lake_root) / SILVER_TABLE))
    table.create_checkpoint()
    (Path(lake_root) / SILVER_TABLE / "_delta_log" / f"{1:020d}.json").unlink()
    result = driver.evaluate()
    assert requested_ranges(result) == [("2026-01-05-12:00", "2026-01-05-18:00")]


def test_huge_backfills_split_into_one_run_per_evaluation_in_order(lake_root, day):
    write_silver(lake_root, day)
    driver = SensorDriver(lake_root, max_partitions=4)
    ranges = [requested_ranges(driver.evaluate()) for _ in range(4)]
    assert ranges == [
        [("2026-01-05-12:00", "2026-01-05-15:00")],
        [("2026-01-05-16:00", "2026-01-05-19:00")],
        [("2026-01-05-20:00", "2026-01-05-20:00")],
        [],
    ]


def test_a_run_in_flight_holds_new_versions_for_the_next_run(driver, lake_root, day):
    in_flight = DagsterRun(job_name=beta_pipeline.name, run_id=make_new_run_id())
    driver.instance.add_run(in_flight.with_status(DagsterRunStatus.STARTED))
    write_silver(lake_root, between(day, datasets.at(16), datasets.at(17)))
    write_silver(lake_root, between(day, datasets.at(17), datasets.at(18)))

    held = driver.evaluate()
    assert held.run_requests == [] and "folds into the next run" in held.skip_message
    assert SilverCursor.from_json(driver.cursor).version == 0

    driver.instance.report_run_canceled(driver.instance.get_run_by_id(in_flight.run_id))
    result = driver.evaluate()
    # Both appends in one run: ticks in [16:00, 17:58] change windows starting in (13:00, 18:58].
    assert requested_ranges(result) == [("2026-01-05-13:00", "2026-01-05-18:00")]
    assert result.run_requests[0].run_key.startswith("silver-v0-v2:")


def test_a_ui_launch_of_the_assets_in_flight_holds_the_sensor_too(driver, lake_root, day):
    launched = DagsterRun(
        job_name="__ASSET_JOB",
        run_id=make_new_run_id(),
        asset_selection=frozenset({AssetKey(GOLD_TABLE)}),
    )
    driver.instance.add_run(launched.with_status(DagsterRunStatus.STARTING))
    write_silver(lake_root, between(day, datasets.at(16), datasets.at(17)))
    assert driver.evaluate().run_requests == []


def test_late_ticks_are_counted_and_their_windows_requested(lake_root, day):
    write_silver(lake_root, day)
    driver = SensorDriver(lake_root)
    driver.evaluate()
    late = datasets.ticks([("T001", 50.0, 0.3, datasets.at(15, 2))])  # 6h behind the last tick
    write_silver(lake_root, late)
    result = driver.evaluate()
    assert result.run_requests[0].tags["tickbeta/late_ticks"] == "1"
    assert requested_ranges(result) == [("2026-01-05-12:00", "2026-01-05-16:00")]


def snapshot_marks(lake_root):
    from beta_assets.watermarks import snapshot_high_water_marks

    return snapshot_high_water_marks(DeltaTable(str(Path(lake_root) / SILVER_TABLE)), "SPY")


def test_after_appends_the_marks_come_from_the_added_rows_and_equal_the_snapshots(
    driver, lake_root, day, monkeypatch
):
    expected = []
    write_silver(lake_root, between(day, datasets.at(16), datasets.at(17)))
    expected.append(snapshot_marks(lake_root))
    # A late ticker tick, then market ticks alone: each side's mark moves on its own.
    write_silver(lake_root, datasets.ticks([("T001", 50.0, 0.3, datasets.at(13, 2))]))
    write_silver(lake_root, datasets.ticks([("SPY", 400.0, 0.1, datasets.at(17, 30))]))
    expected.append(snapshot_marks(lake_root))
    assert expected[1].market > expected[0].market and expected[1].tickers == expected[0].tickers

    def no_snapshot_read(*args):
        raise AssertionError("the marks were read from silver's snapshot")

    monkeypatch.setattr("beta_assets.sensors.snapshot_high_water_marks", no_snapshot_read)
    cursor = SilverCursor.from_json(driver.evaluate().cursor)
    assert cursor.version == 3 and cursor.marks == expected[1]


def test_a_delete_of_the_newest_ticks_reads_the_marks_from_the_snapshot(driver, lake_root):
    before = SilverCursor.from_json(driver.cursor).marks
    table = DeltaTable(str(Path(lake_root) / SILVER_TABLE))
    table.delete(f"event_time >= '{datasets.at(15).isoformat()}'")
    cursor = SilverCursor.from_json(driver.evaluate().cursor)
    after = snapshot_marks(lake_root)
    assert after.tickers < before.tickers and cursor.marks == after

"""Writes never go back in time: no run replaces an hour with results from an older silver
version than the one the hour records, and a re-executed old run leaves gold equal to silver.
"""

import pyarrow as pa
import pyarrow.compute as pc
from dagster import DagsterInstance, ReexecutionOptions, execute_job
from deltalake import DeltaTable

from beta_assets.band import BUCKET_START
from beta_assets.metrics import QUARANTINE_REASON, RAW_PREFIX
from beta_assets.partitions import hour_labels, hour_of_key
from beta_assets.quarantine import quarantine_rows, write_quarantine
from beta_assets.settings import (
    EVENT_TIME,
    GOLD_TABLE,
    JOINED_RETURNS_TABLE,
    MARKET_EVENT_TIME,
    PARTITION_HOUR,
    PARTITION_SPAN,
    PRICE,
    QUARANTINE_TABLE,
    SILVER_COLUMNS,
    SILVER_TABLE,
    SILVER_VERSION,
    SPY_RETURNS_TABLE,
)
from beta_assets.storage import hour_app_id, recorded_versions, write_hours
from resources.lake import DeltaLake
from tests import datasets
from tests.job_from_environment import reconstructable_pipeline
from tests.pipeline import (
    covering_keys,
    differences,
    materialized_metadata,
    recomputed_from_scratch,
    run_range,
    sorted_rows,
    write_silver,
)
from tests.sensing import SensorDriver


def market_rows(minutes: list[int], value: float) -> pa.Table:
    times = [datasets.at(14, minute) for minute in minutes]
    return pa.table(
        {
            MARKET_EVENT_TIME: pa.array(times, pa.timestamp("us", tz="UTC")),
            "m_return": [value] * len(times),
            "m_price": [500.0] * len(times),
        }
    )


def test_an_hour_from_a_newer_silver_version_is_kept(lake_root):
    lake = DeltaLake(root=lake_root)
    hours = (datasets.at(14), datasets.at(16))  # 14:00 and 15:00
    first_hour = (datasets.at(14), datasets.at(15))
    write_hours(
        lake, SPY_RETURNS_TABLE, market_rows([5], 1.0), MARKET_EVENT_TIME, *first_hour, 5, {}
    )

    older = write_hours(
        lake, SPY_RETURNS_TABLE, market_rows([5, 70], 2.0), MARKET_EVENT_TIME, *hours, 3, {}
    )

    assert older.kept_newer == ("2026-01-05T14",)
    rows = sorted_rows(lake, SPY_RETURNS_TABLE)
    assert rows.column("m_return").to_pylist() == [1.0, 2.0]  # 14:05 kept, 15:10 written
    assert rows.column(SILVER_VERSION).to_pylist() == [5, 3]
    table = lake.require(SPY_RETURNS_TABLE)
    assert table.transaction_version(hour_app_id(SPY_RETURNS_TABLE, "2026-01-05T14")) == 5
    assert table.transaction_version(hour_app_id(SPY_RETURNS_TABLE, "2026-01-05T15")) == 3


def test_recorded_versions_come_from_one_log_replay(lake_root, monkeypatch):
    """Each hour's silver version, read once for the whole range: delta-rs replays the log on
    every per-hour lookup, which made a re-run over N hours cost N replays per table."""
    lake = DeltaLake(root=lake_root)
    day = (datasets.at(12), datasets.at(18))
    write_hours(lake, SPY_RETURNS_TABLE, market_rows([5], 1.0), MARKET_EVENT_TIME, *day, 2, {})
    one_hour = (datasets.at(14), datasets.at(15))
    write_hours(lake, SPY_RETURNS_TABLE, market_rows([5], 1.0), MARKET_EVENT_TIME, *one_hour, 4, {})
    table = lake.require(SPY_RETURNS_TABLE)
    expected = {
        hour: table.transaction_version(hour_app_id(SPY_RETURNS_TABLE, hour))
        for hour in hour_labels(datasets.at(11), datasets.at(19))
    }

    def per_hour_lookup(self, app_id):
        raise AssertionError(f"a per-hour lookup of {app_id}")

    monkeypatch.setattr(DeltaTable, "transaction_version", per_hour_lookup)
    got = recorded_versions(lake, SPY_RETURNS_TABLE, datasets.at(11), datasets.at(19))
    assert got == expected
    assert got["2026-01-05T11"] is None and got["2026-01-05T18"] is None  # never written
    assert got["2026-01-05T14"] == 4 and got["2026-01-05T17"] == 2


def test_re_executing_an_old_sensor_run_leaves_gold_equal_to_silver(spark, tmp_path):
    """Silver v0 -> the sensor's run; an append and an UPDATE of the market -> the next run;
    then the first run again through Dagster's re-execution API with its own tags, as the UI
    re-executes it. Gold must equal a fresh computation over the latest silver."""
    lake_root = str(tmp_path / "lake")
    day = datasets.simulated(symbols=2, interval=120.0, seed=8)
    hour = pc.hour(day.column(EVENT_TIME))
    write_silver(lake_root, day.filter(pc.less(hour, 17)))
    (tmp_path / "dagster_home").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster_home"))
    job = reconstructable_pipeline(lake_root)
    sensor = SensorDriver(lake_root)

    (first_request,) = sensor.evaluate().run_requests
    first = execute_job(job, instance, tags=first_request.tags)
    write_silver(lake_root, day.filter(pc.greater_equal(hour, 17)))
    DeltaTable(str(tmp_path / "lake" / SILVER_TABLE)).update(
        predicate="s = 'SPY' AND event_time < '2026-01-05T16:00:00Z'",
        updates={"changePercent": "changePercent * 3"},
    )
    (second_request,) = sensor.evaluate().run_requests
    assert execute_job(job, instance, tags=second_request.tags).success
    again = execute_job(
        job,
        instance,
        tags=first.dagster_run.tags,
        reexecution_options=ReexecutionOptions(parent_run_id=first.run_id),
    )

    assert first.success and again.success
    fresh_root = str(tmp_path / "fresh")
    recomputed_from_scratch(lake_root, fresh_root)
    # The UPDATE rewrote silver in another row order: gold and the market to the contract's 1e-9.
    for table in (SPY_RETURNS_TABLE, GOLD_TABLE):
        assert differences(lake_root, fresh_root, table) is None
    assert set(sorted_rows(lake_root, GOLD_TABLE).column(SILVER_VERSION).to_pylist()) == {2}


def test_a_run_whose_hours_are_all_kept_newer_passes_its_checks(lake_root):
    """A slow run finishing after a newer one writes nothing; its checks must not cry wolf
    (the ticks it counted in silver are in the buckets it computed, not in those it wrote)."""
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=12)
    write_silver(lake_root, ticks)
    keys = covering_keys(ticks)
    run_range(lake_root, *keys)
    lake = DeltaLake(root=lake_root)
    joined = lake.require(JOINED_RETURNS_TABLE).to_pyarrow_table()
    start, end = hour_of_key(keys[0]), hour_of_key(keys[1]) + PARTITION_SPAN
    # As if a run of a newer silver version had written these hours meanwhile.
    newer = joined.drop_columns([SILVER_VERSION, PARTITION_HOUR])
    write_hours(lake, JOINED_RETURNS_TABLE, newer, BUCKET_START, start, end, 99, {})

    result = run_range(lake_root, *keys)

    metadata = materialized_metadata(result, JOINED_RETURNS_TABLE)
    assert metadata["hours_replaced"] == 0 and len(metadata["hours_kept_newer"]) > 0
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    counted = checks["every_ticker_tick_in_a_bucket"]
    assert counted.passed, counted.description
    assert counted.metadata["ticks_in_buckets"].value > 0


def rejected_rows(minutes: list[int], price: str) -> pa.Table:
    """Rows the pipeline rejected in hour 14, as `quarantine_rows` receives them."""
    times = pa.array([datasets.at(14, m) for m in minutes], pa.timestamp("us", tz="UTC"))
    raw = {f"{RAW_PREFIX}{name}": [price] * len(minutes) for name in SILVER_COLUMNS}
    return pa.table(
        {**raw, EVENT_TIME: times, QUARANTINE_REASON: ["non_positive_price"] * len(minutes)}
    )


def test_a_quarantined_hour_from_a_newer_silver_version_is_kept(lake_root):
    lake = DeltaLake(root=lake_root)
    hour = (datasets.at(14), datasets.at(15))
    write_quarantine(lake, quarantine_rows(rejected_rows([5], "-1"), 5), *hour, 5, {})

    kept = write_quarantine(lake, quarantine_rows(rejected_rows([5, 6], "-2"), 3), *hour, 3, {})

    assert kept == ("2026-01-05T14",)
    rows = lake.require(QUARANTINE_TABLE).to_pyarrow_table()
    assert rows.column(PRICE).to_pylist() == ["-1"]  # raw values are kept as text
    assert rows.column(SILVER_VERSION).to_pylist() == [5]

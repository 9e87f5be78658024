"""Runs that die, race or meet a broken Spark: nothing lost, nothing duplicated."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml
from deltalake import DeltaTable

import beta_assets.assets.gold as gold_module
from beta_assets.definitions import build_definitions
from beta_assets.settings import GOLD_TABLE, JOINED_RETURNS_TABLE, SPY_RETURNS_TABLE
from beta_assets.storage import hour_app_id
from resources.lake import DeltaLake
from tests import datasets
from tests.compare import assert_same_windows
from tests.pipeline import covering_keys, materialized_metadata, read_table, run_range, write_silver
from tests.reference import notebook_gold

ROOT = Path(__file__).resolve().parent.parent
KEY = ["s", "window_start"]


def pipeline_process(lake_root: str, first: str, last: str, *options: str, env=None):
    command = [sys.executable, "-m", "tests.pipeline_process", lake_root, first, last, *options]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_a_run_killed_while_writing_gold_leaves_the_previous_version(spark, lake_root, tmp_path):
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=51)
    morning = ticks.filter(pa.compute.less(ticks.column("event_time"), pa.scalar(datasets.at(17))))
    write_silver(lake_root, morning)
    first, last = covering_keys(ticks)
    run_range(lake_root, first, last)
    before = DeltaTable(str(Path(lake_root) / GOLD_TABLE))
    rows_before = before.to_pyarrow_table().to_pandas()

    write_silver(
        lake_root,
        ticks.filter(
            pa.compute.greater_equal(ticks.column("event_time"), pa.scalar(datasets.at(17)))
        ),
    )
    marker = tmp_path / "writing_gold"
    process = pipeline_process(lake_root, first, last, "--slow-gold-write", str(marker))
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the run never reached the gold write"
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    after = DeltaTable(str(Path(lake_root) / GOLD_TABLE))
    assert after.version() == before.version()
    pd.testing.assert_frame_equal(after.to_pyarrow_table().to_pandas(), rows_before)
    run_range(lake_root, first, last)  # the rerun completes it
    assert_same_windows(
        read_table(lake_root, GOLD_TABLE), notebook_gold(spark.createDataFrame(ticks)).toPandas()
    )


def test_racing_writers_of_the_same_hours_neither_lose_nor_duplicate(lake_root):
    lake = DeltaLake(root=lake_root)
    hours = ["2026-01-05T14", "2026-01-05T15"]

    def rows(writer: int) -> pa.Table:
        return pa.table(
            {"writer": [writer] * 400, "partition_hour": hours * 200, "n": list(range(400))}
        )

    lake.replace_partitions(GOLD_TABLE, rows(0), "partition_hour", hours)
    errors = []

    def write_many(writer: int) -> None:
        for _ in range(5):
            try:
                lake.replace_partitions(GOLD_TABLE, rows(writer), "partition_hour", hours)
            except Exception as error:  # noqa: BLE001 - the test reports any
                errors.append(error)

    threads = [threading.Thread(target=write_many, args=(w,)) for w in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = read_table(lake_root, GOLD_TABLE)
    assert (
        len(final) == 400 and final["writer"].nunique() == 1 and not final["n"].duplicated().any()
    )
    operations = [entry["operation"] for entry in DeltaTable(lake.uri(GOLD_TABLE)).history()]
    assert len(operations) == 11  # every one of the ten racing writes committed, in turn


def test_every_table_writer_is_in_a_pool_of_one(tmp_path):
    graph = build_definitions({"TICKBETA_LAKE": str(tmp_path)}).resolve_asset_graph()
    pools = {key.to_user_string(): graph.get(key).pools for key in graph.materializable_asset_keys}
    assert pools == {
        SPY_RETURNS_TABLE: {f"delta_{SPY_RETURNS_TABLE}"},
        JOINED_RETURNS_TABLE: {f"delta_{JOINED_RETURNS_TABLE}"},
        GOLD_TABLE: {f"delta_{GOLD_TABLE}"},
    }
    instance = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    assert instance["concurrency"]["pools"]["default_limit"] == 1


def test_writes_record_the_silver_version_and_replays_are_recognized(lake_root):
    ticks = datasets.simulated(symbols=1, interval=300.0, seed=52)
    version = write_silver(lake_root, ticks)
    first, last = covering_keys(ticks)
    fresh = run_range(lake_root, first, last)
    assert materialized_metadata(fresh, GOLD_TABLE)["hours_replayed"] == 0
    gold = DeltaTable(str(Path(lake_root) / GOLD_TABLE))
    assert gold.transaction_version(hour_app_id(GOLD_TABLE, "2026-01-05T15")) == version
    replay = run_range(lake_root, first, last)
    metadata = materialized_metadata(replay, GOLD_TABLE)
    assert metadata["hours_replayed"] == metadata["hours_replaced"] > 0


def test_a_spark_failure_fails_the_step_before_it_commits(lake_root):
    ticks = datasets.simulated(symbols=1, interval=300.0, seed=53)
    write_silver(lake_root, ticks)
    first, last = covering_keys(ticks)
    # Python workers cannot start: the first Spark stage that needs them fails.
    process = pipeline_process(
        lake_root, first, last, env={"PYSPARK_PYTHON": "/nonexistent/python"}
    )
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "joined_returns" in output and "nonexistent" in output
    lake = DeltaLake(root=lake_root)
    assert lake.open(JOINED_RETURNS_TABLE) is None and lake.open(GOLD_TABLE) is None


def test_a_transient_failure_is_retried(lake_root, monkeypatch):
    ticks = datasets.simulated(symbols=1, interval=300.0, seed=54)
    write_silver(lake_root, ticks)
    real = gold_module.window_rows
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionRefusedError("Spark Connect server restarting")
        return real(*args, **kwargs)

    monkeypatch.setattr(gold_module, "window_rows", flaky)
    monkeypatch.setattr("beta_assets.assets.retries.SECONDS_BETWEEN_RETRIES", 0)
    result = run_range(lake_root, *covering_keys(ticks))
    assert result.success and len(calls) == 2
    assert len(read_table(lake_root, GOLD_TABLE)) > 0


@pytest.mark.parametrize("error", [ValueError("bad data"), KeyError("column")])
def test_a_non_transient_failure_is_not_retried(lake_root, monkeypatch, error):
    write_silver(lake_root, datasets.simulated(symbols=1, interval=300.0, seed=55))

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(gold_module, "window_rows", broken)
    result = run_range(lake_root, "2026-01-05-14:00", "2026-01-05-14:00", raise_on_error=False)
    assert not result.success
    assert len(result.get_step_failure_events()) == 1

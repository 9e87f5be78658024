"""Partitioned runs: ranges, hour by hour, reruns, and the noise option."""

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetSelection, PartitionKeyRange

from beta_assets.assets.gold import gold_beta_metrics
from beta_assets.assets.returns import joined_returns, spy_returns
from beta_assets.partitions import hourly_partitions
from beta_assets.settings import GOLD_TABLE, JOINED_RETURNS_TABLE, SPY_RETURNS_TABLE
from resources.lake import DeltaLake
from tests import datasets
from tests.pipeline import (
    covering_keys,
    read_table,
    run_all,
    run_partition,
    run_range,
    write_silver,
)


def sorted_rows(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)


def afternoon() -> pa.Table:
    """A few hours of ticks: enough partitions to matter, few enough runs to be quick."""
    ticks = datasets.simulated(symbols=2, interval=90.0, seed=8)
    return ticks.filter(pc.less(ticks.column("event_time"), pa.scalar(datasets.at(17, 30))))


def test_range_run_equals_hourly_runs(lake_root, tmp_path):
    ticks = afternoon()
    ranged = run_all(lake_root, ticks)

    hourly_root = str(tmp_path / "hourly")
    write_silver(hourly_root, ticks)
    first, last = covering_keys(ticks)
    keys = hourly_partitions.get_partition_keys_in_range(PartitionKeyRange(first, last))
    assert len(keys) >= 5
    # As a multi-run backfill would: every hour of an asset before the asset downstream.
    for asset in (spy_returns, joined_returns, gold_beta_metrics):
        for key in keys:
            run_partition(hourly_root, key, AssetSelection.assets(asset))
    hourly = read_table(hourly_root, GOLD_TABLE)
    key = ["s", "window_start"]
    pd.testing.assert_frame_equal(sorted_rows(ranged, key), sorted_rows(hourly, key))


def test_rerun_of_a_partition_leaves_the_same_rows(lake_root):
    ticks = afternoon()
    first_run = run_all(lake_root, ticks)
    lake = DeltaLake(root=lake_root)
    versions = {t: lake.require(t).version() for t in (SPY_RETURNS_TABLE, GOLD_TABLE)}
    run_range(lake_root, *covering_keys(ticks))
    middle = "2026-01-05-16:00"
    run_range(lake_root, middle, middle)
    rerun = read_table(lake_root, GOLD_TABLE)
    key = ["s", "window_start"]
    assert not rerun.duplicated(key).any()
    pd.testing.assert_frame_equal(sorted_rows(first_run, key), sorted_rows(rerun, key))
    for table, version in versions.items():
        assert lake.require(table).version() > version  # rewritten, not skipped
    joined = read_table(lake_root, JOINED_RETURNS_TABLE)
    assert not joined.duplicated(["s", "bucket_start"]).any()


def test_noise_is_deterministic_and_bounded(lake_root, tmp_path):
    ticks = afternoon()
    noisy = run_all(lake_root, ticks, noise=True)
    run_range(lake_root, *covering_keys(ticks), noise=True)
    again = read_table(lake_root, GOLD_TABLE)
    key = ["s", "window_start"]
    pd.testing.assert_frame_equal(sorted_rows(noisy, key), sorted_rows(again, key))

    clean = sorted_rows(run_all(str(tmp_path / "clean"), ticks), key)
    noisy = sorted_rows(noisy, key)
    assert (noisy["momentum"] != clean["momentum"]).all()
    # Uniform noise in [-0.05, 0.05): a mean of noisy values moves by less than 0.05.
    assert ((noisy["momentum"] - clean["momentum"]).abs() < 0.05).all()


def test_spy_returns_holds_the_market_ticks_of_each_hour(lake_root):
    ticks = afternoon()
    run_all(lake_root, ticks)
    spy = read_table(lake_root, SPY_RETURNS_TABLE)
    market = ticks.filter(pc.equal(ticks.column("s"), "SPY"))
    assert len(spy) == market.num_rows
    hours = spy["m_event_time"].dt.strftime("%Y-%m-%dT%H")
    assert (hours == spy["partition_hour"]).all()

"""Compare the two ways silver reaches Spark in local mode on a local lake, warm, twice each.

    .venv/bin/python -m bench.read_paths --size 500x1s

Spark's own parquet reader over the selected files, against Spark's tasks opening their files
with pyarrow (the path of every other mode, and of tables with deletion vectors or column
mapping). Each pass is spy_returns' and joined_returns' Spark work over the whole day, without
the Delta writes.
"""

import argparse
import os
import sys
import time
from datetime import datetime
from unittest import mock

from bench.run_bench import SIZES, lake_for, silver_hours
from beta_assets import storage
from beta_assets.metrics import (
    MetricSettings,
    bucket_sums,
    in_time_range,
    market_and_rejected_rows,
    market_series,
    prepared_ticks,
    ticker_ticks,
    typed_ticks,
)
from beta_assets.quarantine import market_series_rows, split_rows
from beta_assets.settings import SILVER_TABLE
from resources.lake import DeltaLake
from resources.spark import SparkSessionResource


def returns_seconds(spark, lake: DeltaLake, start: datetime, end: datetime) -> tuple[float, float]:
    """(spy_returns, joined_returns) seconds of Spark work over [start, end)."""
    settings = MetricSettings()
    snapshot = lake.require(SILVER_TABLE)
    began = time.perf_counter()
    silver = storage.read_silver(spark, lake, snapshot, start, end)
    rows = market_and_rejected_rows(typed_ticks(silver.frame), settings, start, end).toArrow()
    market, _ = market_series_rows(split_rows(rows)[0])
    spy_done = time.perf_counter()
    first_tick = start - settings.bar
    silver = storage.read_silver(spark, lake, snapshot, first_tick, end)
    ticks = prepared_ticks(in_time_range(typed_ticks(silver.frame), first_tick, end), settings)
    tickers = ticker_ticks(ticks, settings.market_symbol)
    bucket_sums(tickers, market_series(market), settings, start).toArrow()
    return spy_done - began, time.perf_counter() - spy_done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="500x1s", choices=list(SIZES))
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = SparkSessionResource(master="local[*]", ui_enabled=False).create_session()
    lake = lake_for(SIZES[args.size])
    start, end = silver_hours(lake)
    returns_seconds(spark, lake, start, end)  # warm the session and the page cache
    print("| read path | pass | spy_returns s | joined_returns s |\n|---|---:|---:|---:|")
    for label, plain in (("Spark's parquet reader", True), ("tasks with pyarrow", False)):
        for attempt in (1, 2):
            with mock.patch.object(storage, "_plain_files", return_value=plain):
                spy, joined = returns_seconds(spark, lake, start, end)
            print(f"| {label} | {attempt} | {spy:.1f} | {joined:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""joined_returns' numpy kernel on one task's share of a day, in more or fewer parts.

    PYTHONPATH=. .venv/bin/python -m bench.kernel_parts [--size 500x1s] [--parts 1 6 24 48]

In this one process, as one of local mode's two file tasks runs it (`file_tasks`): read
every silver file of the bench's feed-generated day, keep the share's valid ticker ticks
split into parts of whole symbols, and run the kernel (`band.bucket_sums`) part after part.
Prints the seconds of the split and of the kernel, three times per number of parts, and
checks that every number of parts gives the same buckets.
"""

import argparse
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc

from bench.run_bench import SIZES, lake_for, silver_hours
from beta_assets.band import MarketSeries, bucket_sums, epoch_micros, epoch_us
from beta_assets.file_tasks import Shares, _Scope, _valid_ticker_ticks
from beta_assets.metrics import MetricSettings, bucket_geometry
from beta_assets.settings import CHANGE, EVENT_TIME, MARKET_SYMBOL, PRICE, SILVER_TABLE, SYMBOL
from beta_assets.storage import silver_schema, spark_compatible
from resources.delta_files import data_files, read_data_file, table_filesystem, table_layout
from resources.lake import DeltaLake

TASKS = 2  # local mode's file tasks on this 2-core machine
ORDER = [(SYMBOL, "ascending"), ("bucket_start", "ascending")]


def market_of(silver: pa.Table) -> MarketSeries:
    market = silver.filter(pc.equal(silver.column(SYMBOL), MARKET_SYMBOL))
    return MarketSeries.from_arrays(
        epoch_micros(market.column(EVENT_TIME)),
        market.column(CHANGE).to_numpy(),
        market.column(PRICE).to_numpy(),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="500x1s", choices=list(SIZES))
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 6, 24, 48])
    parser.add_argument("--lake", help="another lake's silver (default: the size's feed day)")
    args = parser.parse_args()
    lake = DeltaLake(root=args.lake) if args.lake else lake_for(SIZES[args.size])
    start, end = silver_hours(lake)
    snapshot = lake.require(SILVER_TABLE)
    layout = table_layout(snapshot, spark_compatible(silver_schema(snapshot)))
    filesystem = table_filesystem(layout.table_uri, {})
    files = [read_data_file(layout, file, filesystem) for file in data_files(snapshot, None)]
    market = market_of(snapshot.to_pyarrow_table(columns=[SYMBOL, PRICE, CHANGE, EVENT_TIME]))
    settings = MetricSettings()
    geometry = bucket_geometry(settings, start)
    span = (epoch_us(start - settings.bar), epoch_us(end))
    print(f"\nkernel of one share of {TASKS}, {args.lake or args.size}, seconds\n")
    print("| parts | run | ticks | split | kernel |")
    print("|---:|---:|---:|---:|---:|")
    expected = None
    for parts in args.parts:
        scope = _Scope(0, Shares(TASKS, parts), MARKET_SYMBOL, *span)
        for run in range(1, 4):
            started = time.perf_counter()
            per_file = [_valid_ticker_ticks(rows, scope) for rows in files]
            split = [pa.concat_tables(part) for part in zip(*per_file, strict=True)]
            kernel_start = time.perf_counter()
            buckets = [bucket_sums(ticks, market, geometry) for ticks in split if ticks.num_rows]
            done = time.perf_counter()
            ticks = sum(part.num_rows for part in split)
            print(
                f"| {parts} | {run} | {ticks:,} | {kernel_start - started:.2f} "
                f"| {done - kernel_start:.2f} |",
                flush=True,
            )
        rows = pa.Table.from_batches(buckets).sort_by(ORDER)
        if expected is None:
            expected = rows
        elif not rows.equals(expected):
            raise AssertionError(f"{parts} parts give other buckets than {args.parts[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

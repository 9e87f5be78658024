"""Benchmark: tickbeta's gold computation against the notebook's plan, at several tick rates,
and against the same semantics in Polars (bench/polars_peer.py).

    .venv/bin/python -m bench.run_bench            # every size (about 20-30 minutes)
    .venv/bin/python -m bench.run_bench --sizes 20x10s 20x5s --cap 300
    .venv/bin/python -m bench.run_bench --sizes 500x1s --cap 0 --peer polars

Prints two markdown tables (and writes them to bench/results/table.md): the notebook's plan as
the baseline, and the Polars peer, whose gold must equal tickbeta's (1e-9 relative on floats,
everything else exactly) or the run fails. Lakes are generated with the feed into
bench/results/lakes/ and reused. All Spark timings share one warm local session with the same
settings; the Polars peer and the Dagster end-to-end runs are separate processes (interpreter,
imports and, for Dagster, the Spark start included), as a user runs them.
"""

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from bench.polars_peer import PeerSettings, settings_argument
from beta_assets.assets.gold import window_rows
from beta_assets.assets.returns import bucket_rows as joined_bucket_rows
from beta_assets.assets.returns import quality_groups as spy_quality_groups
from beta_assets.assets.returns import spark_ticker_ticks
from beta_assets.feed.feed import append_sessions
from beta_assets.feed.simulator import FeedState, SimulationSpec, initial_state, simulate_span
from beta_assets.metrics import (
    MARKET_SCHEMA,
    MetricSettings,
    market_series,
)
from beta_assets.partitions import BAND_REACH, hours_holding, partition_key
from beta_assets.quarantine import counts_and_kept_rows, market_series_rows, split_rows
from beta_assets.settings import EVENT_TIME, GOLD_TABLE, SILVER_TABLE
from beta_assets.storage import read_silver, silver_high_water_marks
from resources.lake import DeltaLake
from resources.spark import SparkSessionResource

RESULTS = Path(__file__).resolve().parent / "results"
# The instance a user sets up as the README says (deploy/dagster.yaml in $DAGSTER_HOME), and
# one on Dagster's own storages, to compare with.
SHIPPED_INSTANCE = (Path(__file__).resolve().parent.parent / "deploy" / "dagster.yaml").read_text()
INSTANCES = {"shipped": SHIPPED_INSTANCE, "dagster-default": "telemetry:\n  enabled: false\n"}
DERIVED = ("spy_returns", "joined_returns", "gold_beta_metrics", "quarantine_ticks")


@dataclass(frozen=True)
class Size:
    name: str
    symbols: int
    interval: float

    def spec(self) -> SimulationSpec:
        return SimulationSpec(symbols=self.symbols, interval_seconds=self.interval, seed=17)


SIZES = {
    size.name: size
    for size in (
        Size("20x10s", 20, 10.0),
        Size("20x5s", 20, 5.0),
        Size("100x1s", 100, 1.0),
        Size("500x1s", 500, 1.0),
    )
}


@dataclass
class Row:
    size: str
    ticks: int = 0
    pairs: int = 0
    notebook_seconds: float | None = None
    notebook_note: str = ""
    ours_seconds: float = 0.0
    peak_driver_mb: float = 0.0
    dagster_seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    peer: "PeerRun | None" = None
    gold_rows: int = 0
    marks_seconds: float = 0.0


@dataclass(frozen=True)
class PeerRun:
    """One run of the Polars peer in its own process."""

    process_seconds: float  # the whole process: interpreter, imports, read, compute, write
    compute_seconds: float  # from the scan of silver to the collected gold rows
    threads: int


# --- data


def lake_for(size: Size) -> DeltaLake:
    lake = DeltaLake(root=str(RESULTS / "lakes" / size.name))
    if lake.open(SILVER_TABLE) is None:
        append_sessions(lake, size.spec(), lambda line: print(f"  {size.name}: {line}"))
    return lake


def silver_hours(lake: DeltaLake) -> tuple[datetime, datetime]:
    first, last = lake.column_range(lake.require(SILVER_TABLE), EVENT_TIME)
    return hours_holding(first, last)


# --- measurements


class PeakMemory:
    """Peak resident memory of this process (unless `children_only`) and the processes it
    started (its Spark JVM and Python workers, a dagster command), sampled every 50 ms."""

    def __init__(self, children_only: bool = False) -> None:
        self.peak_bytes = 0
        self._children_only = children_only  # the processes this one starts, not itself
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            processes = [*([] if self._children_only else [me]), *me.children(recursive=True)]
            total = 0
            for process in processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += process.memory_info().rss
            self.peak_bytes = max(self.peak_bytes, total)
            time.sleep(0.05)


def our_gold(
    spark,
    lake: DeltaLake,
    start: datetime,
    end: datetime,
    final_before: datetime | None = None,
) -> tuple[pa.Table, int]:
    """The three assets' computations, warm, without the Delta writes; (gold, pairs).

    `final_before`: the is_final cutoff (the gold asset takes it from silver's high-water
    marks); None marks no window final."""
    settings = MetricSettings()
    snapshot = lake.require(SILVER_TABLE)
    wide_start, wide_end = start - BAND_REACH, end + BAND_REACH
    silver = read_silver(spark, lake, snapshot, wide_start, wide_end)
    # As spy_returns: silver's blocking counts and the market's rows in one pass (the file
    # tasks in local mode where they apply, else Spark's typing).
    wide = (wide_start, wide_end)
    grouped, _ = spy_quality_groups(spark, lake, snapshot, silver, settings, wide, wide)
    market, _ = market_series_rows(split_rows(counts_and_kept_rows(grouped)[1])[0])
    first_tick = start - settings.bar
    series = market_series(market.cast(MARKET_SCHEMA))
    # As joined_returns: the file tasks in local mode where they apply, else Spark's shuffle.
    tickers = cache(lambda: spark_ticker_ticks(silver.frame, settings, first_tick, end))
    bucket_rows, _ = joined_bucket_rows(
        spark, lake, snapshot, silver, tickers, series, settings, start, end
    )
    # As gold: in the run process while the buckets are few, else in Spark's tasks.
    gold, _ = window_rows(spark, bucket_rows, settings, (start, end), final_before)
    return gold, sum(bucket_rows.column("pair_count").to_pylist())


def notebook_seconds(spark, lake: DeltaLake, cap_seconds: float) -> tuple[float | None, str]:
    """The notebook's plan in batch over the same silver, cancelled at the cap."""
    from tests.reference import notebook_gold

    frame = spark.read.parquet(*lake.require(SILVER_TABLE).file_uris())
    timer = threading.Timer(cap_seconds, spark.sparkContext.cancelAllJobs)
    started = time.monotonic()
    timer.start()
    try:
        notebook_gold(frame).write.format("noop").mode("overwrite").save()
    except Exception as error:  # noqa: BLE001 - cancelled at the cap
        if time.monotonic() - started >= cap_seconds:
            return None, f"> {cap_seconds:.0f} s (cancelled at the cap)"
        raise RuntimeError("the notebook's plan failed") from error
    finally:
        timer.cancel()
    return time.monotonic() - started, ""


@contextlib.contextmanager
def fresh_dagster_home(instance_yaml: str = SHIPPED_INSTANCE) -> Iterator[str]:
    """A new DAGSTER_HOME holding `instance_yaml` as its dagster.yaml; removed after."""
    with tempfile.TemporaryDirectory() as home:
        Path(home, "dagster.yaml").write_text(instance_yaml)
        yield home


def dagster_end_to_end(
    lake: DeltaLake, start: datetime, end: datetime, instance_yaml: str = SHIPPED_INSTANCE
) -> float:
    """`dagster asset materialize --partition-range` in a new process, derived tables fresh,
    on a new instance (by default set up as the README says)."""
    for table in DERIVED:
        shutil.rmtree(lake.uri(table), ignore_errors=True)
    from tests.pipeline import materialize_from_cli

    env = {**os.environ, "TICKBETA_LAKE": lake.root, "TICKBETA_SPARK_UI": "false"}
    with fresh_dagster_home(instance_yaml) as home:
        started = time.monotonic()
        result = materialize_from_cli(
            {**env, "DAGSTER_HOME": home},
            partition_key(start),
            partition_key(end - timedelta(hours=1)),
        )
        seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])
    return seconds


def incremental_seconds(loaded: DeltaLake, size: Size) -> dict[str, float]:
    """Append one minute after the day, run what the sensor requests; seconds to new gold.

    On a copy of the loaded lake, so that the benchmark's lakes stay as generated.
    """
    from tests.sensing import SensorDriver

    copy = RESULTS / "lakes" / f"{size.name}-incremental"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(loaded.root, copy)
    lake = DeltaLake(root=str(copy))
    driver = SensorDriver(lake.root)
    driver.evaluate()  # the cursor now stands at the loaded day
    gold_before = lake.require(GOLD_TABLE).version()
    minute = append_minute_and_run(lake, driver, size.spec())
    assert lake.require(GOLD_TABLE).version() > gold_before
    shutil.rmtree(copy)
    return {
        "warm_seconds": minute.seconds,
        "to_gold_commit_seconds": minute.to_gold_commit,
        "partitions": _partitions(minute.sensor_result),
    }


@dataclass
class AppendedMinute:
    sensor_result: object  # the sensor's SensorResult
    runs: list  # the ExecuteInProcessResult of each run it requested
    sensor_seconds: float
    seconds: float  # from the append to the end of the last run
    # From the append to gold's last commit: the new windows are in gold from then on; the
    # run then still draws gold's plot and runs its checks.
    to_gold_commit: float


def append_minute_and_run(
    lake: DeltaLake, driver, spec: SimulationSpec, instance=None
) -> AppendedMinute:
    """Append one simulated minute after silver's last tick, evaluate the sensor (a
    tests.sensing.SensorDriver) and run, in this process, what it requests (on `instance`, a
    DagsterInstance; by default an ephemeral one, in memory)."""
    from tests.pipeline import run_range

    _, last = lake.column_range(lake.require(SILVER_TABLE), EVENT_TIME)
    state = _state_after(spec, last)
    minute = simulate_span(state, spec, last, last + timedelta(minutes=1), _rng())
    started, started_at = time.monotonic(), time.time()
    lake.append(SILVER_TABLE, minute)
    result = driver.evaluate()
    sensor_seconds = time.monotonic() - started
    runs = [
        run_range(
            lake.root,
            request.tags["dagster/asset_partition_range_start"],
            request.tags["dagster/asset_partition_range_end"],
            tags=request.tags,
            instance=instance,
        )
        for request in result.run_requests
    ]
    seconds = time.monotonic() - started
    (gold_commit,) = lake.require(GOLD_TABLE).history(1)
    to_gold_commit = gold_commit["timestamp"] / 1000 - started_at
    return AppendedMinute(result, runs, sensor_seconds, seconds, to_gold_commit)


def _partitions(result) -> float:
    from beta_assets.partitions import hour_of_key

    total = 0
    for request in result.run_requests:
        first = hour_of_key(request.tags["dagster/asset_partition_range_start"])
        last = hour_of_key(request.tags["dagster/asset_partition_range_end"])
        total += int((last - first) / timedelta(hours=1)) + 1
    return float(total)


def _state_after(spec: SimulationSpec, moment: datetime) -> FeedState:
    import numpy as np

    state = initial_state(spec)
    state.next_tick_us = np.full(len(state.symbols), int(moment.timestamp() * 1_000_000) + 1)
    return state


def _rng():
    import numpy as np

    return np.random.default_rng(99)


def read_cost(lake: DeltaLake, start: datetime) -> str:
    snapshot = lake.require(SILVER_TABLE)
    one_hour = lake.files_overlapping(
        snapshot, EVENT_TIME, start + timedelta(hours=3), start + timedelta(hours=4)
    )
    return (
        f"1 h of silver reads {len(one_hour.uris)}/{one_hour.total_files} files, "
        f"{one_hour.bytes / 1e6:.1f}/{one_hour.total_bytes / 1e6:.1f} MB"
    )


# --- the table


def measure(
    spark, size: Size, cap: float, with_dagster: bool, with_incremental: bool, with_peer: bool
) -> Row:
    print(f"== {size.name}", flush=True)
    lake = lake_for(size)
    start, end = silver_hours(lake)
    row = Row(size.name, ticks=lake.require(SILVER_TABLE).to_pyarrow_dataset().count_rows())
    # The peer marks final windows: so does tickbeta's gold then, as the gold asset does.
    cutoff = final_before(spark, lake) if with_peer else None
    our_gold(spark, lake, start, end, cutoff)  # warm the session and the page cache
    with PeakMemory() as memory:
        started = time.monotonic()
        gold, row.pairs = our_gold(spark, lake, start, end, cutoff)
        row.ours_seconds = time.monotonic() - started
    row.peak_driver_mb = memory.peak_bytes / 1e6
    row.gold_rows = gold.num_rows
    row.notes.append(f"{gold.num_rows} gold rows")
    if with_peer:
        started = time.monotonic()
        final_before(spark, lake)
        row.marks_seconds = time.monotonic() - started
        row.peer, peer_gold = polars_peer(lake, start, end)
        check_peer_equal(gold, peer_gold)
        print(f"   Polars peer: {row.peer}, gold equal", flush=True)
    row.notebook_seconds, row.notebook_note = _notebook(spark, lake, row, cap)
    if with_dagster:
        row.dagster_seconds = dagster_end_to_end(lake, start, end)
        if with_incremental:
            inc = incremental_seconds(lake, size)
            row.notes.append(
                f"+1 min appended -> gold committed in {inc['to_gold_commit_seconds']:.1f} s, "
                f"run ended in {inc['warm_seconds']:.1f} s warm "
                f"({inc['partitions']:.0f} partitions)"
            )
    row.notes.append(read_cost(lake, start))
    print(f"   {row}", flush=True)
    return row


# --- the Polars peer

# Gold's columns as the peer is checked on them: to 1e-9 relative, or exactly.
PEER_CLOSE = [
    "beta",
    "volatility",
    "momentum",
    "cost_of_equity",
    "beta_aligned",
    "beta_aligned_se",
    "beta_aligned_r2",
    "beta_aligned_blume",
]
PEER_EXACT = ["window_end", "close_price", "sample_size", "is_final", "aligned_bars"]


class PeerMismatch(AssertionError):
    """The Polars peer's gold is not tickbeta's."""


def final_before(spark, lake: DeltaLake) -> datetime | None:
    """The is_final cutoff as the gold asset takes it from silver's high-water marks."""
    snapshot = lake.require(SILVER_TABLE)
    marks = silver_high_water_marks(spark, lake, snapshot, MetricSettings().market_symbol)
    return marks.final_before()


def polars_peer(lake: DeltaLake, start: datetime, end: datetime) -> tuple[PeerRun, pa.Table]:
    """`python -m bench.polars_peer` over silver in a new process, timed whole; its gold.

    Polars takes POLARS_MAX_THREADS threads: every core unless the caller says otherwise.
    """
    env = {**os.environ}
    env.setdefault("POLARS_MAX_THREADS", str(os.cpu_count()))
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "gold.parquet"
        command = [
            sys.executable,
            *("-m", "bench.polars_peer", lake.uri(SILVER_TABLE)),
            *("--start", start.isoformat(), "--end", end.isoformat(), "--out", str(out)),
            *("--settings", settings_argument(PeerSettings.of(MetricSettings()))),
        ]
        started = time.monotonic()
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            raise RuntimeError(f"the Polars peer failed:\n{result.stderr[-3000:]}")
        report = json.loads(result.stdout.strip().splitlines()[-1])
        gold = pq.read_table(out)
    return PeerRun(seconds, report["compute_seconds"], report["threads"]), gold


def check_peer_equal(ours: pa.Table, peer: pa.Table) -> None:
    """Raises unless the two golds have the same (s, window_start) rows and values."""
    from tests.compare import gold_differences

    problems = gold_differences(peer.to_pandas(), ours.to_pandas(), PEER_CLOSE, PEER_EXACT)
    if problems:
        raise PeerMismatch(
            f"the Polars peer's gold ({peer.num_rows} rows) differs from tickbeta's "
            f"({ours.num_rows} rows):\n  " + "\n  ".join(problems)
        )


def peer_table(rows: list[Row]) -> str:
    header = (
        "size",
        "ticks",
        "gold rows (equal)",
        "Polars threads",
        "Polars whole process s",
        "Polars compute s",
        "tickbeta warm compute s",
        "tickbeta warm + high-water marks s",
        "tickbeta dagster e2e s",
    )
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        if row.peer is None:
            continue
        base = row.peer.compute_seconds

        def versus(seconds: float | None, base: float = base) -> str:
            return f"{seconds:.2f} ({seconds / base:.2f}x)" if seconds else "-"

        lines.append(
            f"| {row.size} | {row.ticks:,} | {row.gold_rows:,} | {row.peer.threads} "
            f"| {versus(row.peer.process_seconds)} | {base:.2f} | {versus(row.ours_seconds)} "
            f"| {versus(row.ours_seconds + row.marks_seconds)} | {versus(row.dagster_seconds)} |"
        )
    return "\n".join(lines)


def _notebook(spark, lake: DeltaLake, row: Row, cap: float) -> tuple[float | None, str]:
    if cap <= 0:
        return None, "not run (--cap 0)"
    # The plan's cost is linear in pairs: skip what the previous size says cannot finish.
    predicted = _PAIR_RATE.get("pairs_per_second")
    if predicted and row.pairs / predicted > 2 * cap:
        return None, f"skipped: ~{row.pairs / predicted:.0f} s predicted > cap {cap:.0f} s"
    seconds, note = notebook_seconds(spark, lake, cap)
    if seconds:
        _PAIR_RATE["pairs_per_second"] = row.pairs / seconds
    return seconds, note


_PAIR_RATE: dict[str, float] = {}


def table(rows: list[Row]) -> str:
    header = (
        "size",
        "ticks",
        "pairs (notebook plan)",
        "notebook plan s",
        "tickbeta gold s (warm)",
        "ratio",
        "ticks/s",
        "peak driver MB",
        "dagster e2e s",
        "notes",
    )
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * 8 + "---|"]
    for row in rows:
        notebook = f"{row.notebook_seconds:.1f}" if row.notebook_seconds else row.notebook_note
        ratio = f"{row.notebook_seconds / row.ours_seconds:.0f}x" if row.notebook_seconds else "-"
        dagster = f"{row.dagster_seconds:.1f}" if row.dagster_seconds else "-"
        lines.append(
            f"| {row.size} | {row.ticks:,} | {row.pairs:,} | {notebook} | {row.ours_seconds:.2f} "
            f"| {ratio} | {row.ticks / row.ours_seconds:,.0f} | {row.peak_driver_mb:,.0f} "
            f"| {dagster} | {'; '.join(row.notes)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument(
        "--cap", type=float, default=600.0, help="seconds for the notebook's plan (0: skip it)"
    )
    parser.add_argument("--no-dagster", action="store_true", help="skip the end-to-end runs")
    parser.add_argument(
        "--peer",
        choices=["polars", "none"],
        default="polars",
        help="the same semantics in another tool, checked equal and timed (default: polars)",
    )
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = SparkSessionResource(ui_enabled=False).create_session()
    rows = [
        measure(
            spark,
            SIZES[name],
            args.cap,
            not args.no_dagster,
            with_incremental=True,
            with_peer=args.peer == "polars",
        )
        for name in args.sizes
    ]
    machine = f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"
    stamp = time.strftime("%Y-%m-%d")
    output = f"Machine: {machine}; Spark local[*], 4g driver; {stamp}\n\n{table(rows)}\n"
    if args.peer == "polars":
        output += (
            "\nThe Polars peer (bench/polars_peer.py), gold equal to tickbeta's; ratios to "
            f"Polars compute:\n\n{peer_table(rows)}\n"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "table.md").write_text(output)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

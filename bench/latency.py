"""Append -> gold latency under a live feed (issue 13, DESIGN.md "Runs under load").

For each setup: `dagster dev` on the project's workspace with the sensor running (every 5 s),
while `tickbeta simulate --live` appends the last 5 s of ticks (one per second per symbol)
every 5 s. Per silver version appended after the warm-up, the latency is the time from its
commit until the first successful pipeline run that read it, or a newer version, ended (gold
is written just before a run ends). Prints median, p90 and max per setup.

    .venv/bin/python -m bench.latency [--minutes 4] [--setups cold,warm,warm500]

Setups: `cold` is plain `dg dev -w workspace.yaml` (every run starts its own local Spark);
`warm` is what `make ui` / `make live` run (a local Spark Connect server kept between runs);
`warm500` is `warm` with 500 symbols.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.storage.dagster_run import RunRecord
from deltalake import DeltaTable

from beta_assets.assets.silver import SILVER_VERSION_READ_TAG
from beta_assets.definitions import beta_pipeline
from beta_assets.sensors import DEFAULT_INTERVAL_SECONDS
from beta_assets.settings import (
    LAKE_ENV,
    SENSOR_INTERVAL_ENV,
    SENSOR_STATUS_ENV,
    SILVER_TABLE,
    SPARK_REMOTE_ENV,
    SPARK_UI_ENV,
)
from tests.dagster_dev import REPOSITORY, running_dagster_dev
from tests.servers import spark_connect_server

APPEND_EVERY_SECONDS = 5.0
TICK_INTERVAL_SECONDS = 1.0
# Appends in the first minute meet the sensor's first run, a full recompute of a cold start.
WARM_UP_SECONDS = 60.0
CATCH_UP_SECONDS = 180.0
CONNECT_MEMORY = "4g"


@dataclass(frozen=True)
class Setup:
    name: str
    symbols: int
    warm: bool


SETUPS = {
    "cold": Setup("plain dg dev (a Spark per run)", 20, warm=False),
    "warm": Setup("make ui / make live (warm Spark Connect)", 20, warm=True),
    "warm500": Setup("make live, 500 symbols", 500, warm=True),
}


@dataclass(frozen=True)
class Measured:
    setup: Setup
    latencies: list[float]
    runs: list[RunRecord]
    appends: int

    def row(self) -> str:
        failed = sum(run.dagster_run.status != DagsterRunStatus.SUCCESS for run in self.runs)
        timed = [run for run in self.runs if run.start_time and run.end_time]
        # Where a run's time goes: requested -> started (queue, launch), started -> ended.
        waiting = statistics.median([r.start_time - r.create_timestamp.timestamp() for r in timed])
        running = statistics.median([r.end_time - r.start_time for r in timed])
        if not self.latencies:
            return f"| {self.setup.name} | {self.setup.symbols} | {self.appends} | 0 | - | - | - |"
        p90 = statistics.quantiles(self.latencies, n=10)[-1] if len(self.latencies) > 1 else 0
        return (
            f"| {self.setup.name} | {self.setup.symbols} | {self.appends} | {len(self.runs)} "
            f"({failed} failed) | {waiting:.1f} | {running:.1f} | "
            f"{statistics.median(self.latencies):.1f} | {p90 or max(self.latencies):.1f} | "
            f"{max(self.latencies):.1f} |"
        )


def append_to_gold_latencies(
    appended: list[tuple[int, float]], runs: list[RunRecord]
) -> list[float]:
    """Per (silver version, commit time): seconds until the first successful run that read that
    version or a newer one ended; appends no run reached are left out."""
    done = [
        (run.end_time, int(run.dagster_run.tags[SILVER_VERSION_READ_TAG]))
        for run in runs
        if run.dagster_run.status == DagsterRunStatus.SUCCESS
        and SILVER_VERSION_READ_TAG in run.dagster_run.tags
        and run.end_time is not None
    ]
    latencies = []
    for version, appended_at in appended:
        ends = [end for end, read in done if read >= version]
        if ends:
            latencies.append(min(ends) - appended_at)
    return latencies


def silver_commits(lake_root: str) -> list[tuple[int, float]]:
    """Every silver version with its commit time (seconds since the epoch), oldest first."""
    history = DeltaTable(str(Path(lake_root) / SILVER_TABLE)).history()
    return sorted((entry["version"], entry["timestamp"] / 1000) for entry in history)


def pipeline_runs(home: Path) -> list[RunRecord]:
    instance = DagsterInstance.from_config(str(home))
    try:
        return list(
            instance.get_run_records(
                filters=RunsFilter(job_name=beta_pipeline.name), ascending=True
            )
        )
    finally:
        instance.dispose()


def feed_command(lake_root: str, symbols: int, seconds: float) -> list[str]:
    return [
        *[sys.executable, "-m", "beta_assets.feed.cli", "--lake", lake_root, "simulate", "--live"],
        *["--every", str(APPEND_EVERY_SECONDS), "--symbols", str(symbols)],
        *["--interval", str(TICK_INTERVAL_SECONDS), "--duration", str(seconds)],
    ]


def caught_up(home: Path, lake_root: str) -> bool:
    """Every run finished and the last one read the newest silver version."""
    runs = pipeline_runs(home)
    if not runs or not all(run.dagster_run.is_finished for run in runs):
        return False
    newest = silver_commits(lake_root)[-1][0]
    return runs[-1].dagster_run.tags.get(SILVER_VERSION_READ_TAG) == str(newest)


def measure(key: str, minutes: float, work: Path) -> Measured:
    setup = SETUPS[key]
    lake_root, home = str(work / "lake"), work / "dagster_home"
    env = {
        LAKE_ENV: lake_root,
        SENSOR_STATUS_ENV: "running",
        SENSOR_INTERVAL_ENV: str(DEFAULT_INTERVAL_SECONDS),
        SPARK_UI_ENV: "false",
    }
    with ExitStack() as stack:
        if setup.warm:
            url = stack.enter_context(spark_connect_server(work, memory=CONNECT_MEMORY))
            env[SPARK_REMOTE_ENV] = url
        stack.enter_context(
            running_dagster_dev(lake_root, home, env, log_name=f"latency_{key}.log")
        )
        started = time.time()
        feed = feed_command(lake_root, setup.symbols, minutes * 60)
        subprocess.run(feed, check=True, cwd=REPOSITORY, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while time.monotonic() < deadline and not caught_up(home, lake_root):
            time.sleep(2)
    runs = pipeline_runs(home)
    measured = [(v, t) for v, t in silver_commits(lake_root) if t >= started + WARM_UP_SECONDS]
    return Measured(setup, append_to_gold_latencies(measured, runs), runs, len(measured))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="feed duration per setup")
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"of {', '.join(SETUPS)}")
    args = parser.parse_args()
    rows = []
    for key in args.setups.split(","):
        with tempfile.TemporaryDirectory(prefix=f"tickbeta-latency-{key}-") as work:
            rows.append(measure(key, args.minutes, Path(work)).row())
            print(rows[-1], flush=True)
    print(
        f"\nappend -> gold latency, s (feed: a batch every {APPEND_EVERY_SECONDS:g} s, a tick a "
        f"second per symbol; first {WARM_UP_SECONDS:g} s of appends left out)"
    )
    print(
        "| setup | symbols | appends measured | runs | run queued s (median) | "
        "run s (median) | latency median | p90 | max |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""Where an appended minute's seconds go: the sensor, then each step of the run it requests.

    PYTHONPATH=. .venv/bin/python -m bench.appended_minute [--size 500x1s] [--minutes 3]
    PYTHONPATH=. .venv/bin/python -m bench.appended_minute --lake LAKE [--size 500x1s]
    PYTHONPATH=. .venv/bin/python -m bench.appended_minute --instance shipped

On a copy of the bench's feed-generated day (bench/results/lakes/SIZE, silver only; or of
LAKE, the same day in another layout, such as bench.profile_steps' `_time10mb` copy), in one
warm process as `bench/run_bench.py`'s "+1 min appended" note: one run over the whole day,
then per minute: append one simulated minute after silver's last tick, evaluate the sensor,
run what it requests. Prints one row per minute: the sensor's evaluation, each step's duration
(Dagster's STEP_SUCCESS), the seconds from the append to gold's commit (the new windows are in
gold; the step then draws its plot and runs its checks) and to the run's end. The runs keep their
events in memory (Dagster's ephemeral instance), or with `--instance shipped` on disk, in a new
DAGSTER_HOME set up with deploy/dagster.yaml as the README says (`--instance dagster-default`:
Dagster's own SQLite storage); on disk, the last column is what each minute's runs added to
$DAGSTER_HOME/history.
"""

import argparse
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from unittest.mock import patch

from dagster import DagsterInstance

from bench.run_bench import (
    DERIVED,
    INSTANCES,
    RESULTS,
    SIZES,
    append_minute_and_run,
    fresh_dagster_home,
    lake_for,
    silver_hours,
)
from beta_assets.partitions import partition_key
from resources.lake import DeltaLake

STEPS = ("spy_returns", "joined_returns", "gold_beta_metrics")


def copy_of_silver(source_root: str) -> DeltaLake:
    copy = RESULTS / "lakes" / f"{Path(source_root).name}-appended-minute"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source_root, copy, ignore=shutil.ignore_patterns(*DERIVED))
    return DeltaLake(root=str(copy))


def one_minute(lake: DeltaLake, driver, size_name: str, instance=None) -> list[str]:
    """The minute's cells: sensor s, each step s, append -> gold commit s, append -> run end s,
    and the kB its runs added to the instance's history on disk ("-" in memory)."""
    history_before = history_bytes(instance)
    minute = append_minute_and_run(lake, driver, SIZES[size_name].spec(), instance)
    history_after = history_bytes(instance)
    steps = dict.fromkeys(STEPS, 0.0)
    for run in minute.runs:
        for event in run.all_events:
            if event.event_type_value == "STEP_SUCCESS":
                steps[event.step_key] += event.event_specific_data.duration_ms / 1000
    seconds = [minute.sensor_seconds, *steps.values(), minute.to_gold_commit, minute.seconds]
    added = "-" if instance is None else f"{(history_after - history_before) / 1000:,.0f}"
    return [*(f"{value:.2f}" for value in seconds), added]


def history_bytes(instance: DagsterInstance | None) -> int:
    """The size of $DAGSTER_HOME/history (runs, event logs, schedules) of an instance on disk."""
    if instance is None:
        return 0
    history = Path(os.environ["DAGSTER_HOME"], "history")
    return sum(path.stat().st_size for path in history.rglob("*") if path.is_file())


@contextmanager
def instance_for(name: str) -> Iterator[DagsterInstance | None]:
    """The runs' instance: None (each run's own, in memory) or one on a new DAGSTER_HOME."""
    if name == "memory":
        yield None
        return
    # The shipped storage keeps its runs under $DAGSTER_HOME, as a user's instance does.
    with (
        fresh_dagster_home(INSTANCES[name]) as home,
        patch.dict(os.environ, {"DAGSTER_HOME": home}),
        DagsterInstance.from_config(home) as instance,
    ):
        yield instance


def main() -> int:
    from tests.pipeline import run_range
    from tests.sensing import SensorDriver

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="500x1s", choices=list(SIZES))
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument(
        "--lake",
        help="a lake whose silver holds the size's day in another layout (e.g. bench.profile_steps"
        "' _time10mb or _appends1min copies); default: the bench's feed-generated day",
    )
    parser.add_argument(
        "--instance",
        choices=["memory", *INSTANCES],
        default="memory",
        help="where the runs keep their events (default: Dagster's ephemeral instance)",
    )
    args = parser.parse_args()
    lake = copy_of_silver(args.lake or lake_for(SIZES[args.size]).root)
    with instance_for(args.instance) as instance:
        start, end = silver_hours(lake)
        first, last = partition_key(start), partition_key(end - timedelta(hours=1))
        run_range(lake.root, first, last, instance=instance)
        driver = SensorDriver(lake.root)
        driver.evaluate()  # the cursor now stands at the loaded day
        rows = [one_minute(lake, driver, args.size, instance) for _ in range(args.minutes)]
    shutil.rmtree(lake.root)
    where = f"{args.lake or args.size}, {args.instance} instance"
    print(f"\nappended minute, {where}, warm, seconds\n")
    print(
        "| minute | sensor | "
        + " | ".join(STEPS)
        + " | append -> gold commit | append -> run end | history kB added |"
    )
    print("|---:|" + "---:|" * (len(STEPS) + 4))
    for number, row in enumerate(rows, 1):
        print(f"| {number} | " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

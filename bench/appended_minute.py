"""Where an appended minute's seconds go: the sensor, then each step of the run it requests.

    PYTHONPATH=. .venv/bin/python -m bench.appended_minute [--size 500x1s] [--minutes 3]
    PYTHONPATH=. .venv/bin/python -m bench.appended_minute --lake LAKE [--size 500x1s]

On a copy of the bench's feed-generated day (bench/results/lakes/SIZE, silver only; or of
LAKE, the same day in another layout, such as bench.profile_steps' `_time10mb` copy), in one
warm process as `bench/run_bench.py`'s "+1 min appended" note: one run over the whole day,
then per minute: append one simulated minute after silver's last tick, evaluate the sensor,
run what it requests. Prints one row per minute: the sensor's evaluation, each step's duration
(Dagster's STEP_SUCCESS) and the seconds from the append to the run's end.
"""

import argparse
import shutil
import sys
from datetime import timedelta
from pathlib import Path

from bench.run_bench import DERIVED, RESULTS, SIZES, append_minute_and_run, lake_for, silver_hours
from beta_assets.partitions import partition_key
from resources.lake import DeltaLake

STEPS = ("spy_returns", "joined_returns", "gold_beta_metrics")


def copy_of_silver(source_root: str) -> DeltaLake:
    copy = RESULTS / "lakes" / f"{Path(source_root).name}-appended-minute"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source_root, copy, ignore=shutil.ignore_patterns(*DERIVED))
    return DeltaLake(root=str(copy))


def one_minute(lake: DeltaLake, driver, size_name: str) -> list[float]:
    """[sensor s, each step s, append -> run end s] for one appended minute."""
    minute = append_minute_and_run(lake, driver, SIZES[size_name].spec())
    steps = dict.fromkeys(STEPS, 0.0)
    for run in minute.runs:
        for event in run.all_events:
            if event.event_type_value == "STEP_SUCCESS":
                steps[event.step_key] += event.event_specific_data.duration_ms / 1000
    return [minute.sensor_seconds, *steps.values(), minute.seconds]


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
    args = parser.parse_args()
    lake = copy_of_silver(args.lake or lake_for(SIZES[args.size]).root)
    start, end = silver_hours(lake)
    run_range(lake.root, partition_key(start), partition_key(end - timedelta(hours=1)))
    driver = SensorDriver(lake.root)
    driver.evaluate()  # the cursor now stands at the loaded day
    rows = [one_minute(lake, driver, args.size) for _ in range(args.minutes)]
    shutil.rmtree(lake.root)
    print(f"\nappended minute, {args.lake or args.size}, warm, seconds\n")
    print("| minute | sensor | " + " | ".join(STEPS) + " | append -> run end |")
    print("|---:|" + "---:|" * (len(STEPS) + 2))
    for number, row in enumerate(rows, 1):
        print(f"| {number} | " + " | ".join(f"{value:.2f}" for value in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

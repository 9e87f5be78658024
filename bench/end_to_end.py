"""`dagster asset materialize` over every hour of a lake's silver, end to end, as a user runs it.

    .venv/bin/python -m bench.end_to_end --lake bench/results/lakes/100x1s --repeat 2
    .venv/bin/python -m bench.end_to_end --lake A --lake B --instance dagster-default

Each run is `bench/run_bench.py`'s "dagster e2e" column: a new process on a new DAGSTER_HOME
set up as the README says (deploy/dagster.yaml; `--instance dagster-default` for Dagster's own
SQLite storage), the derived tables removed first. Unlike `bench.profile_steps` it turns
nothing on in Spark (no event log), so its seconds are the user's; beside them, the peak
resident memory of the run's processes.
"""

import argparse
import sys
from datetime import datetime
from pathlib import Path

from bench.run_bench import INSTANCES, PeakMemory, dagster_end_to_end, silver_hours
from beta_assets.settings import PARTITION_SPAN, SILVER_TABLE
from resources.lake import DeltaLake


def _measured_run(
    lake: DeltaLake, start: datetime, end: datetime, instance_yaml: str
) -> tuple[float, float]:
    """Seconds end to end, and the peak resident memory of the run's processes (the dagster
    command, its Spark JVM and Python workers) in MB."""
    with PeakMemory(children_only=True) as memory:
        seconds = dagster_end_to_end(lake, start, end, instance_yaml)
    return seconds, memory.peak_bytes / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", action="append", required=True, help="a lake with silver")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--instance", choices=list(INSTANCES), default="shipped")
    args = parser.parse_args()
    print(f"| silver | partitions | {args.instance} instance: seconds (peak MB), run by run |")
    print("|---|---:|---|")
    for root in args.lake:
        lake = DeltaLake(root=root)
        start, end = silver_hours(lake)
        files = list(Path(root, SILVER_TABLE).glob("*.parquet"))
        instance_yaml = INSTANCES[args.instance]
        runs = [_measured_run(lake, start, end, instance_yaml) for _ in range(args.repeat)]
        hours = (end - start) // PARTITION_SPAN
        cells = ", ".join(f"{seconds:.2f} ({peak_mb:,.0f})" for seconds, peak_mb in runs)
        print(f"| {root} ({len(files)} files) | {hours} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

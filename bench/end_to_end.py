"""`dagster asset materialize` over every hour of a lake's silver, end to end, as a user runs it.

    .venv/bin/python -m bench.end_to_end --lake bench/results/lakes/100x1s --repeat 2
    .venv/bin/python -m bench.end_to_end --lake A --lake B --instance dagster-default

Each run is `bench/run_bench.py`'s "dagster e2e" column: a new process on a new DAGSTER_HOME
set up as the README says (deploy/dagster.yaml; `--instance dagster-default` for Dagster's own
SQLite storage), the derived tables removed first. Unlike `bench.profile_steps` it turns
nothing on in Spark (no event log), so its seconds are the user's.
"""

import argparse
import sys
from pathlib import Path

from bench.run_bench import INSTANCES, dagster_end_to_end, silver_hours
from beta_assets.settings import PARTITION_SPAN, SILVER_TABLE
from resources.lake import DeltaLake


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", action="append", required=True, help="a lake with silver")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--instance", choices=list(INSTANCES), default="shipped")
    args = parser.parse_args()
    print(f"| silver | partitions | {args.instance} instance: seconds, run by run |")
    print("|---|---:|---|")
    for root in args.lake:
        lake = DeltaLake(root=root)
        start, end = silver_hours(lake)
        files = list(Path(root, SILVER_TABLE).glob("*.parquet"))
        runs = [
            dagster_end_to_end(lake, start, end, INSTANCES[args.instance])
            for _ in range(args.repeat)
        ]
        hours = (end - start) // PARTITION_SPAN
        seconds = ", ".join(f"{run:.2f}" for run in runs)
        print(f"| {root} ({len(files)} files) | {hours} | {seconds} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A lake for long ranges: two simulated trading days far apart, nearly every hour between empty.

    PYTHONPATH=. .venv/bin/python -m bench.sparse_lake --lake bench/results/lakes/sparse_20k \
        --first 2024-01-02 --last 2026-04-14
    TICKBETA_START=2024-01-01 PYTHONPATH=. .venv/bin/python -m bench.profile_steps \
        --lake bench/results/lakes/sparse_20k --repeat 1

A run over every hour of its silver spans as many hourly partitions as lie between the two days
(20,000 for the dates above), while its steps have little to compute: what grows with the
partitions alone (planned rows, per-partition events) shows. Each day is 20 symbols at one tick
a minute, as the feed simulates them. Partitions start at TICKBETA_START, which must lie before
`--first` in the runs over the lake.
"""

import argparse
import sys
from datetime import date

from beta_assets.feed.feed import append_sessions
from beta_assets.feed.simulator import SimulationSpec
from resources.lake import DeltaLake


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", required=True, help="a new lake's folder")
    parser.add_argument("--first", type=date.fromisoformat, required=True, help="a weekday")
    parser.add_argument("--last", type=date.fromisoformat, required=True, help="a weekday")
    args = parser.parse_args()
    lake = DeltaLake(root=args.lake)
    for day in (args.first, args.last):
        spec = SimulationSpec(symbols=20, days=1, start_date=day, interval_seconds=60.0)
        append_sessions(lake, spec, print)
    return 0


if __name__ == "__main__":
    sys.exit(main())

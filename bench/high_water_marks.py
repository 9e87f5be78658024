"""Silver's high-water marks read in one warm local session, as gold reads them when its run's
own counts of silver do not give them (`storage.silver_high_water_marks`).

    PYTHONPATH=. .venv/bin/python -m bench.high_water_marks --lake A --lake B [--calls 3]

Prints, per lake, the seconds of each call (the session's first call also pays its first Spark
jobs) and the marks found, which must not depend on the path that read them.
"""

import argparse
import os
import sys
import time

from beta_assets.config import BetaMetricsConfig
from beta_assets.settings import SILVER_TABLE
from beta_assets.storage import silver_high_water_marks
from resources.lake import DeltaLake
from resources.spark import SparkSessionResource


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", action="append", required=True, help="a lake with silver")
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = SparkSessionResource(ui_enabled=False).create_session()
    market_symbol = BetaMetricsConfig().settings().market_symbol
    print("| silver | seconds, call by call | market's mark | the others' mark |")
    print("|---|---|---|---|")
    for root in args.lake:
        lake = DeltaLake(root=root)
        seconds = []
        for _ in range(args.calls):
            started = time.monotonic()
            marks = silver_high_water_marks(spark, lake, lake.require(SILVER_TABLE), market_symbol)
            seconds.append(time.monotonic() - started)
        cells = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"| {root} | {cells} | {marks.market} | {marks.tickers} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

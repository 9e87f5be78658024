"""A pipeline run in its own process, for tests that kill it or break its Spark.

Usage: python -m tests.pipeline_process LAKE FIRST_KEY LAST_KEY [--slow-gold-write MARKER]

--slow-gold-write streams the gold rows to delta-rs a few at a time and creates MARKER when
the first ones are pulled: the process is then in the middle of writing gold.
"""

import argparse
import sys
import time
from pathlib import Path

import pyarrow as pa

import resources.lake
from beta_assets.settings import GOLD_TABLE
from tests.pipeline import run_range

BATCH_ROWS = 50
SECONDS_PER_BATCH = 0.3


def slow_gold_writes(marker: Path) -> None:
    write = resources.lake.write_deltalake

    def slowly(table_uri, data, **options):
        if not str(table_uri).rstrip("/").endswith(GOLD_TABLE) or not isinstance(data, pa.Table):
            return write(table_uri, data, **options)

        def batches():
            for index, batch in enumerate(data.to_batches(max_chunksize=BATCH_ROWS)):
                if index == 0:
                    marker.touch()
                time.sleep(SECONDS_PER_BATCH)
                yield batch

        return write(
            table_uri, pa.RecordBatchReader.from_batches(data.schema, batches()), **options
        )

    resources.lake.write_deltalake = slowly


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("lake")
    parser.add_argument("first_key")
    parser.add_argument("last_key")
    parser.add_argument("--slow-gold-write", type=Path)
    args = parser.parse_args()
    if args.slow_gold_write:
        slow_gold_writes(args.slow_gold_write)
    result = run_range(args.lake, args.first_key, args.last_key, raise_on_error=False)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())

"""A Spark job that runs until its Spark goes away, in a process of its own.

`python -m tests.spark_job_process (--remote sc://... | --master spark://...) MARKER [--oom]`
opens a session through tickbeta's resource and starts a job whose tasks touch MARKER once they
run, then wait. The fail-fast tests kill the Spark side once MARKER exists and time how long
this process takes to fail and exit. With --oom the job instead fills the driver's heap.
"""

import argparse
import sys
import time
from pathlib import Path

from resources.spark import SparkSessionResource

TASK_SECONDS = 600  # far longer than any test waits


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--remote")
    target.add_argument("--master")
    parser.add_argument("marker", type=Path)
    parser.add_argument("--oom", action="store_true")
    args = parser.parse_args(argv)
    resource = SparkSessionResource(
        master=args.master or "local[*]",
        remote=args.remote,
        ui_enabled=False,
        driver_memory="1g",
        executor_memory="1g",
    )
    spark = resource.create_session()
    print("session ready", flush=True)
    marker: Path = args.marker

    if args.oom:
        marker.touch()
        # One string larger than the whole heap of a small server's JVM.
        spark.range(1).selectExpr("length(repeat('x', 1500000000))").collect()
        return

    def wait_in_task(batches):
        marker.touch()
        time.sleep(TASK_SECONDS)
        yield from batches

    spark.range(0, 2, 1, 2).mapInArrow(wait_in_task, "id long").count()


if __name__ == "__main__":
    main(sys.argv[1:])

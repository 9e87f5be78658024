"""What a range run's planned events cost before its start and at it, by the number of partitions.

    PYTHONPATH=. .venv/bin/python -m bench.planned_events [--partitions 1000,6656,20000]

Before a run over N hourly partitions starts, Dagster stores the planned materializations of
its three assets and the planned evaluations of their partitioned checks. The shipped storage
(resources/event_log.py) takes each as one event naming the range and writes every partition's
rows; Dagster's own SQLite storage is handed one event per partition and asset. Each is timed
here on a new storage in a temporary folder, storing the events as Dagster's `create_run` does
(one `store_event` each), and the time is printed per partition. A range of more than 1,000
partitions gets its partitions' rows in the shipped storage as its run starts, on a thread beside
the Spark session's start: the time from storing the run's start to those rows written is the
second column. The checks are those of the
project's assets (`beta_assets.checks`). The partitions start in 2023 here (TICKBETA_START, unless
set), so that 20,000 of them lie before today.
"""

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import timedelta

# Before the project's modules read it: room for 20,000 hourly partitions before today.
os.environ.setdefault("TICKBETA_START", "2023-01-01")

from dagster import AssetKey  # noqa: E402
from dagster._core.events import (  # noqa: E402
    AssetCheckEvaluationPlanned,
    AssetMaterializationPlannedData,
    DagsterEvent,
    DagsterEventType,
)
from dagster._core.events.log import EventLogEntry  # noqa: E402
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage  # noqa: E402

from beta_assets.checks import GOLD_CHECKS, JOINED_CHECKS, SPY_CHECKS  # noqa: E402
from beta_assets.partitions import hourly_partitions, partition_key  # noqa: E402
from resources.event_log import RUN_START, BatchedSqliteEventLogStorage  # noqa: E402
from tests.event_entries import JOB, log_entry  # noqa: E402

ASSETS = ("spy_returns", "joined_returns", "gold_beta_metrics")


def planned_events(run_id: str, partitions: int, per_partition: bool) -> list[EventLogEntry]:
    """The run's planned events as Dagster stores them: a range per asset and check, or (for a
    storage without subsets) each asset's partitions one by one."""
    first = hourly_partitions.start
    keys = [partition_key(first + timedelta(hours=hour)) for hour in range(partitions)]
    subset = hourly_partitions.subset_with_partition_keys(keys)
    if len(subset) != partitions:
        raise ValueError(f"{partitions} partitions do not fit before today: set TICKBETA_START")
    events = []
    for name in ASSETS:
        plans = (
            [AssetMaterializationPlannedData(AssetKey(name), partition=key) for key in keys]
            if per_partition
            else [
                AssetMaterializationPlannedData(
                    AssetKey(name), partitions_subset=subset.to_serializable_subset()
                )
            ]
        )
        events += [
            DagsterEvent.build_asset_materialization_planned_event(JOB, name, p) for p in plans
        ]
    for spec in (*SPY_CHECKS, *JOINED_CHECKS, *GOLD_CHECKS):
        planned = AssetCheckEvaluationPlanned(
            asset_key=spec.asset_key,
            check_name=spec.name,
            partitions_subset=subset.to_serializable_subset(),
        )
        events.append(
            DagsterEvent(
                event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value,
                job_name=JOB,
                event_specific_data=planned,
            )
        )
    return [log_entry(run_id, event, time.time()) for event in events]


def seconds_to_store(
    storage_class: type[SqliteEventLogStorage], partitions: int
) -> tuple[float, float]:
    """Seconds to store the run's planned events, then to store its start and have every
    planned row written."""
    run_id = str(uuid.uuid4())
    per_partition = storage_class is SqliteEventLogStorage
    events = planned_events(run_id, partitions, per_partition)
    run_start = log_entry(run_id, DagsterEvent(RUN_START.value, job_name=JOB), time.time())
    with tempfile.TemporaryDirectory() as folder:
        storage = storage_class(folder)
        started = time.monotonic()
        for event in events:
            storage.store_event(event)
        created = time.monotonic()
        storage.store_event(run_start)
        storage.dispose()  # waits for the rows written as the run starts
        written = time.monotonic()
    return created - started, written - created


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", default="1000,6656,20000")
    parser.add_argument(
        "--dagster-up-to",
        type=int,
        default=6656,
        help="time Dagster's own storage only up to this many partitions (it is slow)",
    )
    args = parser.parse_args()
    print("\nplanned events of a range run (3 assets and their checks), seconds\n")
    print(
        "| partitions | shipped storage: before the run's start | at its start, beside Spark's "
        "| per partition, both | Dagster's SQLite storage, before the run's start |"
    )
    print("|---:|---:|---:|---:|---:|")
    for partitions in (int(count) for count in args.partitions.split(",")):
        before, at_start = seconds_to_store(BatchedSqliteEventLogStorage, partitions)
        dagsters = (
            f"{seconds_to_store(SqliteEventLogStorage, partitions)[0]:.2f}"
            if partitions <= args.dagster_up_to
            else "-"
        )
        per_partition = f"{(before + at_start) / partitions * 1000:.3f} ms"
        print(f"| {partitions} | {before:.2f} | {at_start:.2f} | {per_partition} | {dagsters} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dagster events as a run's log entries, for storing them straight into an event log storage
(tests/test_event_log.py, bench/planned_events.py)."""

from dagster._core.events import DagsterEvent
from dagster._core.events.log import EventLogEntry

JOB = "__ASSET_JOB"  # the job Dagster names a run of assets after


def log_entry(run_id: str, event: DagsterEvent, timestamp: float) -> EventLogEntry:
    return EventLogEntry(
        error_info=None,
        level="debug",
        user_message="",
        run_id=run_id,
        timestamp=timestamp,
        dagster_event=event,
        job_name=JOB,
    )

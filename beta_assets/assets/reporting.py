"""Materialization metadata people want to read: counts, lineage, time range, a preview."""

import time
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext, MetadataValue

from beta_assets.storage import SilverRead, WrittenHours

PREVIEW_ROWS = 20


class Stopwatch:
    def __init__(self) -> None:
        self._started = time.monotonic()

    def seconds(self) -> float:
        return round(time.monotonic() - self._started, 3)


def commit_metadata(context: AssetExecutionContext, silver_version: int) -> dict[str, str]:
    """What a Delta commit records about the run that wrote it (never settings or secrets)."""
    keys = context.partition_keys
    return {
        "dagster_run_id": context.run_id,
        "dagster_partitions": f"{keys[0]}...{keys[-1]}",
        "silver_version": str(silver_version),
    }


def written_metadata(
    rows: pa.Table, time_column: str, written: WrittenHours, silver_version: int, watch: Stopwatch
) -> dict:
    low, high = _time_range(rows, time_column)
    return {
        "dagster/row_count": MetadataValue.int(written.rows),
        "silver_version": MetadataValue.int(silver_version),
        "table_version": MetadataValue.int(written.table_version),
        "hours_replaced": MetadataValue.int(written.hours),
        # Hours this silver version had already produced: a replayed run, rewritten identically.
        "hours_replayed": MetadataValue.int(written.replayed_hours),
        "event_time_min": MetadataValue.text(low),
        "event_time_max": MetadataValue.text(high),
        "elapsed_seconds": MetadataValue.float(watch.seconds()),
    }


def read_metadata(silver: SilverRead) -> dict:
    files = silver.files
    return {
        "silver_files_read": MetadataValue.int(len(files.uris)),
        "silver_files_total": MetadataValue.int(files.total_files),
        "silver_bytes_read": MetadataValue.int(files.bytes),
        "silver_bytes_total": MetadataValue.int(files.total_bytes),
    }


def preview(rows: pa.Table, sort_by: list[tuple[str, str]]) -> MetadataValue:
    head = rows.sort_by(sort_by).slice(0, PREVIEW_ROWS).to_pandas()
    return MetadataValue.md(
        head.to_markdown(index=False, floatfmt=".6g") if len(head) else "(no rows)"
    )


def _time_range(rows: pa.Table, column: str) -> tuple[str, str]:
    if rows.num_rows == 0:
        return "", ""
    low, high = pc.min(rows.column(column)).as_py(), pc.max(rows.column(column)).as_py()
    return _iso(low), _iso(high)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""

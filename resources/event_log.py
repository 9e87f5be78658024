"""Dagster's SQLite event log, writing a batch of events in one transaction per database.

A run over N hourly partitions stores one "materialization planned" event per partition and
asset before its first step, and each step one materialization per partition. Dagster's SQLite
storage writes every event through its own engine, connection and commit, once in the run's
database and once more in the index: 9-11 ms an event here, 8.6-13.5 s to the start of a
273-partition run. Dagster hands these events over as batches where the environment asks for
it (`DAGSTER_EVENT_BATCH_SIZE`), and its SQLite storage then still stores them one by one; this
one writes the batch's rows in one transaction per database. It also tells Dagster that it takes
a range's planned events as one event per asset naming the partitions, and writes from it the
rows of the per-partition events Dagster would otherwise have built and logged one by one (0.8
ms a partition before the run's start). The rows are the same ones, so the UI marks each
partition planned, in progress or failed as before.

A range of more than `planned_rows_at_start_above` partitions (default
PLANNED_ROWS_AT_START_ABOVE) has its partitions' rows written to the index as its run starts, on
a thread beside resource initialisation and the first step, not before the run's start: 12 rows
a partition (3 in the run's database, 3 in the index, 6 check rows) took 4-5 s at 20,000
partitions. Until then the run's log holds one planned event per asset naming its partitions,
as Dagster's own subset mode does; the steps start and work meanwhile, and their
materializations and check evaluations wait for the rows.

Use it from the instance's `dagster.yaml` (deploy/dagster.yaml does):

    event_log_storage:
      module: resources.event_log
      class: BatchedSqliteEventLogStorage
      config:
        planned_rows_at_start_above: 1000   # optional
"""

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as db
import sqlalchemy.exc as db_exc
from dagster import DagsterInvariantViolationError, Field, StringSource
from dagster._config.config_schema import UserConfigSchema
from dagster._core.definitions.partitions.subset import PartitionsSubset
from dagster._core.events import (
    ASSET_CHECK_EVENTS,
    ASSET_EVENTS,
    EVENT_TYPE_TO_PIPELINE_RUN_STATUS,
    DagsterEventType,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetKeyTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._serdes import ConfigurableClassData, deserialize_value, serialize_value
from sqlalchemy.engine import Connection, Dialect

# Events Dagster buffers before it hands a batch over: more than a long backfill's partitions,
# so a run's planned events and a step's materializations each arrive as one batch.
EVENT_BATCH_SIZE = "100000"

# Ranges up to this many partitions have their planned rows written with the run's creation,
# so that a queued run's partitions show as planned; longer ones as their run starts (0.2 ms a
# partition, about 0.2 s here).
PLANNED_ROWS_AT_START_ABOVE = 1000

# Rows of a range planned at its run's start per index transaction: about 25 ms each.
PLANNED_ROWS_PER_TRANSACTION = 1000

PLANNED = DagsterEventType.ASSET_MATERIALIZATION_PLANNED
CHECK_PLANNED = DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
RUN_START = DagsterEventType.RUN_START
# A step's events that neither read nor follow the run's planned rows.
_BESIDE_PLANNED_ROWS = {
    DagsterEventType.STEP_START,
    DagsterEventType.STEP_INPUT,
    DagsterEventType.LOADED_INPUT,
    DagsterEventType.STEP_OUTPUT,
    DagsterEventType.HANDLED_OUTPUT,
    DagsterEventType.LOGS_CAPTURED,
}
# A run's end: its partitions must be planned before Dagster counts them failed or done.
_RUN_ENDS = {
    DagsterEventType.RUN_SUCCESS,
    DagsterEventType.RUN_FAILURE,
    DagsterEventType.RUN_CANCELED,
}
# Event types as the rows hold them. Dagster's SQLite storage mirrors these in the index
# database, beside the run's own.
_ASSET_TYPES = {kind.value for kind in ASSET_EVENTS}
_CHECK_TYPES = {kind.value for kind in ASSET_CHECK_EVENTS}
# The asset events whose tags Dagster indexes (`_tags_for_asset_event`).
_TAGGED = {
    DagsterEventType.ASSET_MATERIALIZATION.value,
    DagsterEventType.ASSET_OBSERVATION.value,
}
_INDEXED_TYPES = (
    _ASSET_TYPES | _CHECK_TYPES | {kind.value for kind in EVENT_TYPE_TO_PIPELINE_RUN_STATUS}
)


def default_runs_directory() -> str:
    """Where Dagster's default SQLite storage keeps the event logs of $DAGSTER_HOME."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise DagsterInvariantViolationError(
            "BatchedSqliteEventLogStorage keeps its runs in $DAGSTER_HOME/history/runs: set "
            "DAGSTER_HOME to the instance's folder, or give the storage a base_dir in dagster.yaml"
        )
    return os.path.join(home, "history", "runs")


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log storage (the same files and rows as Dagster's) that stores a batch of a
    run's events in one transaction on the run's database and one on the index."""

    def __init__(
        self,
        base_dir: str,
        inst_data: ConfigurableClassData | None = None,
        planned_rows_at_start_above: int = PLANNED_ROWS_AT_START_ABOVE,
    ):
        super().__init__(base_dir, inst_data=inst_data)
        # Dagster buffers events into batches only where this is set; an explicit value wins.
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        self._planned_rows_at_start_above = planned_rows_at_start_above
        # Runs whose partitions' planned rows a thread is writing, by run id.
        self._planned_rows_writers: dict[str, _PlannedRowsWriter] = {}

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {
            "base_dir": Field(StringSource, is_required=False),
            "planned_rows_at_start_above": Field(
                int, is_required=False, default_value=PLANNED_ROWS_AT_START_ABOVE
            ),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> "BatchedSqliteEventLogStorage":
        return cls(
            config_value.get("base_dir") or default_runs_directory(),
            inst_data=inst_data,
            planned_rows_at_start_above=config_value.get(
                "planned_rows_at_start_above", PLANNED_ROWS_AT_START_ABOVE
            ),
        )

    @property
    def supports_partition_subset_in_asset_materialization_planned_events(self) -> bool:
        # Dagster then plans a range run with one event per asset naming its partitions, not
        # one per partition built, logged and serialized in turn (0.8 ms a partition before a
        # run's start); this storage writes the per-partition rows from it.
        return True

    def store_event(self, event: EventLogEntry) -> None:
        if _planned_subset(event) is not None:
            self.store_event_batch([event])
            return
        self._wait_for_planned_rows([event])
        super().store_event(event)
        self._start_planned_rows_of_started_runs([event])

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if len({event.run_id for event in events}) != 1:
            super().store_event_batch([e for event in events for e in _per_partition(event)])
            return
        self._wait_for_planned_rows(events)
        # Dagster's rows, inserted as one statement over many rows: a statement per row was
        # half the batch's time (SQLAlchemy keys each one's values for its cache).
        batch = _ExpandedBatch(self, events, self._planned_at_start)
        with self.run_connection(events[0].run_id) as conn:
            _insert_rows(conn, SqlEventLogStorageTable, batch.rows)
        for event, event_id in self._index_events(batch):
            self.store_asset_check_event(event, event_id)
        self._start_planned_rows_of_started_runs(events)

    def dispose(self) -> None:
        for run_id in list(self._planned_rows_writers):
            self._planned_rows_writers.pop(run_id).wait()
        super().dispose()

    def _planned_at_start(self, subset: PartitionsSubset | None) -> bool:
        """Whether a planned range's partitions get their rows as its run starts."""
        return subset is not None and len(subset) > self._planned_rows_at_start_above

    def _index_events(self, batch: "_ExpandedBatch") -> list[tuple[EventLogEntry, int]]:
        """Mirror the batch's asset, check and run-status events in the index as Dagster's
        `store_event` does, in one transaction; the check events with their index ids, for the
        check tables (written through their own connection, as in Dagster)."""
        indexed = batch.indexed_positions()
        if not indexed:
            return []
        with self.index_transaction() as conn:
            return self._index_rows(conn, batch, indexed)

    def _index_rows(
        self, conn: Connection, batch: "_ExpandedBatch", indexed: list[int]
    ) -> list[tuple[EventLogEntry, int]]:
        event_ids = _insert_numbered(conn, [batch.rows[position] for position in indexed])
        asset_ids = {
            position: event_id
            for position, event_id in zip(indexed, event_ids, strict=True)
            if batch.rows[position]["dagster_event_type"] in _ASSET_TYPES
        }
        if asset_ids:
            # Only these carry tags (Dagster's `_tags_for_asset_event`); planned events have
            # none, so a long range's partitions need not be built into events here.
            tagged = [p for p in asset_ids if batch.rows[p]["dagster_event_type"] in _TAGGED]
            self._store_asset_event_tags(
                conn, [batch.event(p) for p in tagged], [asset_ids[p] for p in tagged]
            )
            self._store_asset_records(conn, batch, asset_ids)
        return [
            (batch.event(position), event_id)
            for position, event_id in zip(indexed, event_ids, strict=True)
            if batch.rows[position]["dagster_event_type"] in _CHECK_TYPES
        ]

    def _store_asset_records(
        self, conn: Connection, batch: "_ExpandedBatch", asset_ids: Mapping[int, int]
    ) -> None:
        """Each asset's row as Dagster's `_store_asset_event` leaves it after the events one by
        one, written once: its updates only set columns, so the later event's values win."""
        with_timestamps = self._has_asset_key_index_cols_on_connection(conn)
        values_by_asset: dict[str, dict[str, Any]] = {}
        for position in _last_of_each_kind(batch.rows, asset_ids):
            event = batch.event(position)
            values = self._get_asset_entry_values(event, asset_ids[position], with_timestamps)
            if values:
                values_by_asset.setdefault(batch.rows[position]["asset_key"], {}).update(values)
        for asset_key, values in values_by_asset.items():
            try:  # SQLite undoes the failed statement only, as Dagster's own upsert relies on
                conn.execute(AssetKeyTable.insert().values(asset_key=asset_key, **values))
            except db_exc.IntegrityError:
                conn.execute(
                    AssetKeyTable.update()
                    .values(**values)
                    .where(AssetKeyTable.c.asset_key == asset_key)
                )

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        if self._planned_at_start(_check_subset(event)):
            return  # written as the run starts (_start_planned_rows)
        with self.index_connection() as conn:
            _insert_rows(conn, AssetCheckExecutionsTable, self._check_planned_rows(event, event_id))

    def _check_planned_rows(self, event: EventLogEntry, event_id: int | None) -> list[dict]:
        """Dagster's rows, one per planned partition, with the event serialized once: Dagster
        serializes it again for each partition (0.26 s a check at 1,281 partitions, 0.03 s
        serialized once)."""
        planned = event.get_dagster_event().event_specific_data
        subset = planned.partitions_subset
        row = dict(
            asset_key=planned.asset_key.to_string(),
            check_name=planned.check_name,
            run_id=event.run_id,
            execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
            evaluation_event=serialize_value(event),
            evaluation_event_timestamp=self._event_insert_timestamp(event),
            evaluation_event_storage_id=event_id,
        )
        partitions = subset.get_partition_keys() if subset else [None]
        return [{**row, "partition": partition} for partition in partitions]

    # --- a long range's planned rows, written as its run starts

    def _start_planned_rows_of_started_runs(self, events: Sequence[EventLogEntry]) -> None:
        for event in events:
            if event.dagster_event_type == RUN_START:
                self._start_planned_rows(event.run_id)

    def _start_planned_rows(self, run_id: str) -> None:
        """Write the partitions' rows of the run's ranges planned at its start, on a thread: the
        run initialises its resources meanwhile (a JVM starts in its own process)."""
        assets, checks = self._ranges_planned_at_start(run_id)
        if not assets and not checks:
            return
        writer = _PlannedRowsWriter(functools.partial(self._write_planned_rows, assets, checks))
        self._planned_rows_writers[run_id] = writer
        writer.start()

    def _ranges_planned_at_start(
        self, run_id: str
    ) -> tuple[list[EventLogEntry], list[tuple[EventLogEntry, int]]]:
        """The run's planned asset ranges (in its own database only) and check ranges (with
        their index ids) whose partitions' rows wait for its start."""
        type_column = SqlEventLogStorageTable.c.dagster_event_type
        query = db.select(SqlEventLogStorageTable.c.id, SqlEventLogStorageTable.c.event)
        with self.run_connection(run_id) as conn:
            rows = conn.execute(
                query.where(
                    type_column == PLANNED.value, SqlEventLogStorageTable.c.partition.is_(None)
                )
            ).fetchall()
        assets = [deserialize_value(row.event, EventLogEntry) for row in rows]
        with self.index_connection() as conn:
            rows = conn.execute(
                query.where(
                    type_column == CHECK_PLANNED.value, SqlEventLogStorageTable.c.run_id == run_id
                )
            ).fetchall()
        checks = [(deserialize_value(row.event, EventLogEntry), row.id) for row in rows]
        return (
            [event for event in assets if self._planned_at_start(_planned_subset(event))],
            [(event, id_) for event, id_ in checks if self._planned_at_start(_check_subset(event))],
        )

    def _write_planned_rows(
        self, assets: list[EventLogEntry], checks: list[tuple[EventLogEntry, int]]
    ) -> None:
        """The rows Dagster writes for each planned partition, PLANNED_ROWS_PER_TRANSACTION per
        index transaction: between them the run's own writes get their turn (a step's claim of
        its pool's slot waited 1.9 s for one transaction of 50,000 partitions' rows). Rows of
        an interrupted run stay as far as they were written."""
        batch = _ExpandedBatch(self, assets, planned_at_start=lambda subset: False)
        for positions in _in_turns(batch.indexed_positions()):
            with self.index_transaction() as conn:
                self._index_rows(conn, batch, positions)
        for event, event_id in checks:
            for rows in _in_turns(self._check_planned_rows(event, event_id)):
                with self.index_connection() as conn:
                    _insert_rows(conn, AssetCheckExecutionsTable, rows)

    def _wait_for_planned_rows(self, events: Sequence[EventLogEntry]) -> None:
        """Before a step's outcomes or the run's end, the run's planned rows: a materialization
        must follow its partition's planned row, a check's evaluation updates its planned row,
        and at its end Dagster counts a run's planned partitions failed or done. A step starts
        and works meanwhile."""
        if not self._planned_rows_writers:
            return
        for event in events:
            if _needs_planned_rows(event):
                writer = self._planned_rows_writers.pop(event.run_id, None)
                if writer is not None:
                    writer.wait()


def _in_turns(items: list) -> Iterator[list]:
    """`items` in slices of PLANNED_ROWS_PER_TRANSACTION, a pause after each: the storage's lock
    is free then, and a thread waiting for it takes it while this one sleeps."""
    for first in range(0, len(items), PLANNED_ROWS_PER_TRANSACTION):
        yield items[first : first + PLANNED_ROWS_PER_TRANSACTION]
        time.sleep(0.001)


class _PlannedRowsWriter(threading.Thread):
    """A run's planned rows being written; `wait` raises what writing them raised. Not a daemon:
    the process ends after the rows."""

    def __init__(self, write: Callable[[], None]):
        super().__init__(name="tickbeta-planned-rows")
        self._write = write
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._write()
        except BaseException as error:  # re-raised by wait, in the run's own thread
            self._error = error

    def wait(self) -> None:
        self.join()
        if self._error is not None:
            raise self._error


class _ExpandedBatch:
    """A batch's rows, each planned range written as the rows of its partitions' events (those
    Dagster plans without a subset), and the event of any row, built only where asked: a long
    range's 20k events cost 0.3 s to build, and the index needs a few of them. A range whose
    partitions get their rows as its run starts stays one row, kept out of the index."""

    def __init__(
        self,
        storage: SqliteEventLogStorage,
        events: Sequence[EventLogEntry],
        planned_at_start: Callable[[PartitionsSubset], bool],
    ):
        self.rows: list[dict[str, Any]] = []
        self._sources: list[tuple[EventLogEntry, str | None]] = []
        self._at_start: set[int] = set()
        for event in events:
            subset = _planned_subset(event)
            if subset is None or planned_at_start(subset):
                if subset is not None:
                    self._at_start.add(len(self.rows))
                self.rows.append(storage._event_to_row(event))
                self._sources.append((event, None))
                continue
            partitions = list(subset.get_partition_keys())
            # One event serialized; each partition's row differs from it in the key alone.
            template = storage._event_to_row(_with_partition(event, _KEY_PLACEHOLDER))
            placeholder = json.dumps(_KEY_PLACEHOLDER)
            for partition in partitions:
                event_json = template["event"].replace(placeholder, json.dumps(partition))
                self.rows.append({**template, "event": event_json, "partition": partition})
                self._sources.append((event, partition))

    def indexed_positions(self) -> list[int]:
        """Rows Dagster mirrors in the index, but for ranges planned at the run's start."""
        return [
            position
            for position, row in enumerate(self.rows)
            if row["dagster_event_type"] in _INDEXED_TYPES and position not in self._at_start
        ]

    def event(self, position: int) -> EventLogEntry:
        event, partition = self._sources[position]
        return event if partition is None else _with_partition(event, partition)


# Stands for a partition key in a planned event serialized once for all its partitions.
_KEY_PLACEHOLDER = "\x00tickbeta-partition-key\x00"


def _needs_planned_rows(event: EventLogEntry) -> bool:
    """Whether the event must follow its run's planned rows: a step's, but for those that go
    with its start and work (a log message, its inputs and outputs), or the run's end. A step
    in a process of its own (the multiprocess executor) waits at its worker's start."""
    dagster_event = event.dagster_event
    if dagster_event is None:
        return False
    if dagster_event.event_type in _RUN_ENDS:
        return True
    of_a_step = event.step_key is not None or dagster_event.step_key is not None
    return of_a_step and dagster_event.event_type not in _BESIDE_PLANNED_ROWS


def _planned_subset(event: EventLogEntry) -> PartitionsSubset | None:
    """The partitions subset a planned event names, if it names one; else None."""
    dagster_event = event.dagster_event
    if dagster_event is None or dagster_event.event_type != PLANNED:
        return None
    return dagster_event.asset_materialization_planned_data.partitions_subset


def _check_subset(event: EventLogEntry) -> PartitionsSubset | None:
    """The partitions subset a planned check evaluation names, if any."""
    return event.get_dagster_event().event_specific_data.partitions_subset


def _per_partition(event: EventLogEntry) -> list[EventLogEntry]:
    subset = _planned_subset(event)
    if subset is None:
        return [event]
    return [_with_partition(event, partition) for partition in subset.get_partition_keys()]


def _with_partition(event: EventLogEntry, partition: str) -> EventLogEntry:
    """A range's planned event as Dagster plans one partition of it."""
    dagster_event = event.get_dagster_event()
    planned = dagster_event.asset_materialization_planned_data._replace(
        partition=partition, partitions_subset=None
    )
    return event._replace(dagster_event=dagster_event._replace(event_specific_data=planned))


def _last_of_each_kind(rows: Sequence[Mapping[str, Any]], positions: Iterable[int]) -> list[int]:
    """The last of `positions` for each asset and event type, in the batch's order: an asset's
    row takes each column from the last event that sets it, and which columns an event sets
    depends on its type alone, so these leave the row as all of them would."""
    last: dict[tuple[str, str], int] = {}
    for position in positions:
        row = rows[position]
        if row["asset_key"] is not None:
            last[(row["asset_key"], row["dagster_event_type"])] = position
    return sorted(last.values())


def _insert_rows(conn: Connection, table: db.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows (dicts with the same keys) in one executemany of the driver, each column's
    value made as SQLAlchemy binds it. SQLAlchemy's own executemany rebuilds every row's
    parameters in Python: 0.8 s of the 2.9 s that a 6,656-partition range's planned rows took."""
    if not rows:
        return
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=list(rows[0]))
    binders = [
        (name, _value_binder(table.c[name].type, conn.dialect)) for name in compiled.positiontup
    ]
    conn.exec_driver_sql(
        compiled.string, [tuple(bind(row[name]) for name, bind in binders) for row in rows]
    )


def _value_binder(column_type: db.types.TypeEngine, dialect: Dialect) -> Callable[[Any], Any]:
    """The column's bind processing for the dialect (e.g. SQLite's timestamps as text); a
    range's rows share their values, so each distinct one is processed once."""
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return lambda value: value
    return functools.lru_cache(maxsize=16)(process)


def _insert_numbered(conn: Connection, rows: Sequence[dict[str, Any]]) -> range:
    """Insert event rows in one statement and return their ids, in the rows' order.

    SQLAlchemy asked for ids in order (RETURNING) inserts SQLite rows one statement each (SQLite
    does not order RETURNING): 20k planned rows of a long range took 1-2 s. In a write
    transaction no other connection writes, and SQLite numbers new rows one above the largest,
    so the batch's ids are consecutive and end at the last inserted one (checked).
    """
    _insert_rows(conn, SqlEventLogStorageTable, rows)
    last = conn.execute(db.text("SELECT last_insert_rowid()")).scalar_one()
    ids = range(last - len(rows) + 1, last + 1)
    column = SqlEventLogStorageTable.c.id
    numbered = conn.execute(
        db.select(db.func.count()).where(column.between(ids.start, ids.stop - 1))
    ).scalar_one()
    if numbered != len(rows):
        raise RuntimeError(f"{len(rows)} event rows inserted, {numbered} in ids {ids}")
    return ids

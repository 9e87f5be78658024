"""The shipped event log storage (resources/event_log.py): a batch of events leaves the same rows
as Dagster's SQLite storage writing them one by one, and runs through it keep Dagster's marks
of planned, materialized and failed partitions."""

import os
import time
import uuid
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSpec,
    AssetKey,
    AssetMaterialization,
    DagsterEventType,
    DagsterInstance,
    DagsterInvariantViolationError,
    DailyPartitionsDefinition,
    EventRecordsFilter,
    MaterializeResult,
    asset,
    materialize,
)
from dagster._core.events import (
    AssetCheckEvaluationPlanned,
    AssetMaterializationPlannedData,
    DagsterEvent,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from dagster._serdes import serialize_value

from resources import event_log
from resources.event_log import (
    EVENT_BATCH_SIZE,
    PLANNED_ROWS_AT_START_ABOVE,
    BatchedSqliteEventLogStorage,
)
from tests.commands import dagster_home
from tests.event_entries import JOB, log_entry

BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
PARTITIONS = [f"2026-01-0{day}" for day in range(5, 9)]
daily = DailyPartitionsDefinition(start_date="2026-01-05")


@pytest.fixture
def batch_size_env(monkeypatch):
    """DAGSTER_EVENT_BATCH_SIZE unset for the test, and unset again after it."""
    monkeypatch.setenv(BATCH_SIZE_ENV, "0")
    monkeypatch.delenv(BATCH_SIZE_ENV)


def _entry(run_id: str, event: DagsterEvent) -> EventLogEntry:
    return log_entry(run_id, event, timestamp=1767600000.0)


def _run_events(run_id: str) -> list[EventLogEntry]:
    """What a partitioned run stores in batches: planned events for two assets (one with a
    check), then one asset's materializations, tagged."""
    events = []
    for name in ("spy_returns", "gold_beta_metrics"):
        for partition in PARTITIONS:
            planned = AssetMaterializationPlannedData(AssetKey(name), partition=partition)
            events.append(
                DagsterEvent.build_asset_materialization_planned_event(JOB, name, planned)
            )
    check_planned = AssetCheckEvaluationPlanned(
        asset_key=AssetKey("gold_beta_metrics"),
        check_name="gold_contract",
        partitions_subset=daily.subset_with_partition_keys(PARTITIONS).to_serializable_subset(),
    )
    events.append(
        DagsterEvent(
            event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value,
            job_name=JOB,
            event_specific_data=check_planned,
            step_key="gold_beta_metrics",
        )
    )
    for partition in PARTITIONS[:3]:
        materialization = AssetMaterialization(
            "spy_returns", partition=partition, tags={"dagster/data_version": partition}
        )
        events.append(
            DagsterEvent(
                event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                job_name=JOB,
                event_specific_data=StepMaterializationData(materialization),
                step_key="spy_returns",
            )
        )
    return [_entry(run_id, event) for event in events]


def _raw_rows(storage: SqliteEventLogStorage, run_id: str) -> dict:
    """The event rows as SQLite holds them (timestamps as text), in the run's database and the
    index, and the check rows but for the time of their insert."""
    check_columns = "asset_key, check_name, partition, run_id, execution_status, "
    check_columns += "evaluation_event, evaluation_event_timestamp, evaluation_event_storage_id"
    queries = {
        "run": "SELECT * FROM event_logs ORDER BY id",
        "index": "SELECT * FROM event_logs ORDER BY id",
        "checks": f"SELECT id, {check_columns} FROM asset_check_executions ORDER BY id",
    }
    rows = {}
    for name, query in queries.items():
        connect = storage.run_connection(run_id) if name == "run" else storage.index_connection()
        with connect as conn:
            rows[name] = [tuple(row) for row in conn.exec_driver_sql(query)]
    return rows


def _stored_rows(storage: SqliteEventLogStorage, run_id: str) -> dict:
    """Everything Dagster reads back from the run's and the index's databases for the run."""
    run_log = [
        (record.storage_id, record.event_log_entry.dagster_event_type)
        for record in storage.get_records_for_run(run_id).records
    ]
    index = {}
    for event_type in (
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_MATERIALIZATION,
    ):
        records = storage.get_event_records(EventRecordsFilter(event_type), ascending=True)
        index[event_type] = [
            (record.storage_id, record.asset_key, record.partition_key) for record in records
        ]
    assets = {
        record.asset_entry.asset_key: (
            record.asset_entry.last_materialization_record.storage_id
            if record.asset_entry.last_materialization_record
            else None,
            record.asset_entry.last_run_id,
        )
        for record in storage.get_asset_records()
    }
    spy, gold = AssetKey("spy_returns"), AssetKey("gold_beta_metrics")
    attempts = storage.get_latest_asset_partition_materialization_attempts_without_materializations
    return {
        "run log": run_log,
        "index": index,
        "assets": assets,
        "materialized": {key: storage.get_materialized_partitions(key) for key in (spy, gold)},
        "attempted": {key: attempts(key) for key in (spy, gold)},
        "tags": storage.get_event_tags_for_asset(spy),
        "rows": _raw_rows(storage, run_id),
        "checks": [  # without create_timestamp, the database's clock at the write
            (record.id, record.run_id, record.status, record.event, record.partition)
            for record in storage.get_asset_check_execution_history(
                AssetCheckKey(gold, "gold_contract"), limit=10
            )
        ],
    }


def _stored_one_by_one_and_batched_storage(
    tmp_path: Path,
) -> tuple[str, list[EventLogEntry], SqliteEventLogStorage, BatchedSqliteEventLogStorage]:
    """A run's events stored one by one in Dagster's storage, and an empty batched storage."""
    run_id = str(uuid.uuid4())
    events = _run_events(run_id)
    dagsters = SqliteEventLogStorage(str(tmp_path / "dagster"))
    for event in events:
        dagsters.store_event(event)
    return run_id, events, dagsters, BatchedSqliteEventLogStorage(str(tmp_path / "batched"))


def test_a_batch_leaves_the_rows_of_one_by_one(tmp_path, batch_size_env):
    run_id, events, dagsters, batched = _stored_one_by_one_and_batched_storage(tmp_path)
    planned, materialized = events[:-3], events[-3:]
    batched.store_event_batch(planned)
    batched.store_event_batch(materialized)

    expected = _stored_rows(dagsters, run_id)
    assert len(expected["run log"]) == 12
    assert len(expected["index"][DagsterEventType.ASSET_MATERIALIZATION_PLANNED]) == 8
    assert expected["materialized"][AssetKey("spy_returns")] == set(PARTITIONS[:3])
    assert [check[-1] for check in expected["checks"]] == PARTITIONS[::-1]
    assert _stored_rows(batched, run_id) == expected


def _planned_range(run_id: str, name: str) -> EventLogEntry:
    subset = daily.subset_with_partition_keys(PARTITIONS).to_serializable_subset()
    planned = AssetMaterializationPlannedData(AssetKey(name), partitions_subset=subset)
    return _entry(
        run_id, DagsterEvent.build_asset_materialization_planned_event(JOB, name, planned)
    )


@pytest.mark.parametrize("in_a_batch", [True, False])
def test_a_planned_range_leaves_the_rows_of_its_partitions_planned_one_by_one(
    tmp_path, batch_size_env, in_a_batch
):
    run_id, events, dagsters, batched = _stored_one_by_one_and_batched_storage(tmp_path)
    assert batched.supports_partition_subset_in_asset_materialization_planned_events
    ranges = [_planned_range(run_id, name) for name in ("spy_returns", "gold_beta_metrics")]
    if in_a_batch:
        batched.store_event_batch([*ranges, events[-4]])
    else:
        for event in [*ranges, events[-4]]:
            batched.store_event(event)
    batched.store_event_batch(events[-3:])

    assert _stored_rows(batched, run_id) == _stored_rows(dagsters, run_id)
    # Each partition's stored event is the one Dagster plans for it alone, byte for byte.
    stored, expected = (
        [
            serialize_value(record.event_log_entry)
            for record in storage.get_records_for_run(run_id).records
        ]
        for storage in (batched, dagsters)
    )
    assert stored == expected


def _run_start(run_id: str) -> EventLogEntry:
    return _entry(run_id, DagsterEvent(DagsterEventType.RUN_START.value, job_name=JOB))


def test_a_long_planned_range_gets_its_partitions_rows_as_its_run_starts(
    tmp_path, batch_size_env, monkeypatch
):
    # Rows in transactions of 3, so that the 8 planned and 4 check rows take several.
    monkeypatch.setattr(event_log, "PLANNED_ROWS_PER_TRANSACTION", 3)
    # The rows written slower than the step's events come: those still follow them.
    write = BatchedSqliteEventLogStorage._write_planned_rows
    monkeypatch.setattr(
        BatchedSqliteEventLogStorage,
        "_write_planned_rows",
        lambda *args: (time.sleep(0.5), write(*args)),
    )
    run_id, events, _, _ = _stored_one_by_one_and_batched_storage(tmp_path)
    batched = BatchedSqliteEventLogStorage(
        str(tmp_path / "at_start"), planned_rows_at_start_above=len(PARTITIONS) - 1
    )
    planned, check_planned, materialized = events[:-4], events[-4], events[-3:]
    batched.store_event_batch([_planned_range(run_id, "spy_returns"), check_planned])
    batched.store_event(_planned_range(run_id, "gold_beta_metrics"))
    before_start = _stored_rows(batched, run_id)
    batched.store_event(_run_start(run_id))
    step_start = DagsterEvent(DagsterEventType.STEP_START.value, JOB, step_key="spy_returns")
    batched.store_event(_entry(run_id, step_start))  # the step starts beside the rows' writing
    at_step_start = _stored_rows(batched, run_id)
    batched.store_event_batch(materialized)  # waits for the planned rows

    for rows in (before_start, at_step_start):
        assert rows["index"][DagsterEventType.ASSET_MATERIALIZATION_PLANNED] == []
        assert rows["checks"] == []
    # Dagster's storage, each partition planned as the run starts.
    dagsters = SqliteEventLogStorage(str(tmp_path / "dagster_at_start"))
    for event in [check_planned, _run_start(run_id), *planned, *materialized]:
        dagsters.store_event(event)
    stored, expected = _stored_rows(batched, run_id), _stored_rows(dagsters, run_id)
    assert len(expected["index"][DagsterEventType.ASSET_MATERIALIZATION_PLANNED]) == 8
    assert len(expected["checks"]) == len(PARTITIONS)
    for rows in (stored, expected):  # the run's own log: its ranges as planned, one by one
        del rows["run log"], rows["rows"]["run"]
    assert stored == expected
    kinds = [
        record.event_log_entry.dagster_event_type
        for record in batched.get_records_for_run(run_id).records
    ]
    assert kinds == [
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.RUN_START,
        DagsterEventType.STEP_START,
        *[DagsterEventType.ASSET_MATERIALIZATION] * 3,
    ]


def test_the_storage_asks_dagster_for_batches(tmp_path, batch_size_env):
    BatchedSqliteEventLogStorage(str(tmp_path))
    assert os.environ[BATCH_SIZE_ENV] == EVENT_BATCH_SIZE


def test_an_explicit_batch_size_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(BATCH_SIZE_ENV, "7")
    BatchedSqliteEventLogStorage(str(tmp_path))
    assert os.environ[BATCH_SIZE_ENV] == "7"


@pytest.fixture
def shipped_home(tmp_path, monkeypatch, batch_size_env) -> Path:
    """A DAGSTER_HOME made as the README says: deploy/dagster.yaml copied in."""
    home = dagster_home(tmp_path / "home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_without_dagster_home_the_storage_says_where_its_runs_go(shipped_home, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME")
    with pytest.raises(DagsterInvariantViolationError, match=r"\$DAGSTER_HOME/history/runs"):
        DagsterInstance.from_config(str(shipped_home))


def test_the_shipped_instance_keeps_its_runs_where_dagster_does(shipped_home):
    with DagsterInstance.from_config(str(shipped_home)) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, BatchedSqliteEventLogStorage)
        assert Path(storage._base_dir) == shipped_home / "history" / "runs"


def _toy_assets(fail: bool):
    @asset(partitions_def=daily)
    def upstream(context) -> None:
        if fail:
            raise RuntimeError("planted failure")

    @asset(partitions_def=daily, deps=[upstream])
    def downstream() -> None:
        pass

    return [upstream, downstream]


@pytest.fixture
def batched_instance(shipped_home, monkeypatch):
    """The shipped instance, its storage's batches counted."""
    batches = []
    store_batch = BatchedSqliteEventLogStorage.store_event_batch

    def counted(storage, events):
        batches.append([event.dagster_event_type for event in events])
        store_batch(storage, events)

    monkeypatch.setattr(BatchedSqliteEventLogStorage, "store_event_batch", counted)
    with DagsterInstance.from_config(str(shipped_home)) as instance:
        yield instance, batches


def _range_run(instance: DagsterInstance, fail: bool, assets=None) -> bool:
    return materialize(
        assets or _toy_assets(fail),
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": PARTITIONS[0],
            "dagster/asset_partition_range_end": PARTITIONS[-1],
        },
        raise_on_error=False,
    ).success


def test_a_range_run_writes_its_events_in_batches(batched_instance):
    instance, batches = batched_instance
    assert _range_run(instance, fail=False)
    planned = DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    materialized = DagsterEventType.ASSET_MATERIALIZATION
    assert [planned] * 2 in batches  # one per asset, naming the range's partitions
    assert batches.count([materialized] * 4) == 2
    for name in ("upstream", "downstream"):
        assert instance.get_materialized_partitions(AssetKey(name)) == set(PARTITIONS)
        records = instance.get_event_records(EventRecordsFilter(planned, AssetKey(name)))
        assert sorted(record.partition_key for record in records) == PARTITIONS


def test_a_failed_range_run_marks_its_partitions_failed(batched_instance):
    instance, _ = batched_instance
    assert not _range_run(instance, fail=True)
    for name in ("upstream", "downstream"):
        status = get_and_update_asset_status_cache_value(instance, AssetKey(name), daily)
        assert status.deserialize_failed_partition_subsets(daily).get_partition_keys() == (
            PARTITIONS
        )


def _checked_assets(fail: bool):
    @asset(partitions_def=daily, check_specs=[AssetCheckSpec("holds", asset="upstream")])
    def upstream() -> MaterializeResult:
        if fail:
            raise RuntimeError("planted failure")
        return MaterializeResult(check_results=[AssetCheckResult(passed=True)])

    @asset(partitions_def=daily, deps=[upstream])
    def downstream() -> None:
        pass

    return [upstream, downstream]


def _partition_marks(instance: DagsterInstance) -> dict:
    """What the UI shows of the assets' partitions and the check's executions."""
    marks = {}
    for name in ("upstream", "downstream"):
        key = AssetKey(name)
        status = get_and_update_asset_status_cache_value(instance, key, daily)
        planned = instance.get_event_records(
            EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION_PLANNED, key)
        )
        marks[name] = (
            sorted(instance.get_materialized_partitions(key)),
            status.deserialize_failed_partition_subsets(daily).get_partition_keys(),
            sorted(record.partition_key for record in planned),
        )
    history = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey("upstream"), "holds"), limit=20
    )
    marks["check"] = sorted((record.status.value, record.partition) for record in history)
    return marks


@pytest.mark.parametrize("fail", [False, True])
def test_a_range_planned_at_its_start_leaves_the_marks_of_one_planned_before(
    tmp_path, monkeypatch, batch_size_env, fail
):
    marks = []
    for above in (None, len(PARTITIONS) - 1):
        home = dagster_home(tmp_path / f"home_{above}")
        if above is not None:
            settings = home / "dagster.yaml"
            storage_class = "  class: BatchedSqliteEventLogStorage\n"
            settings.write_text(
                settings.read_text().replace(
                    storage_class,
                    f"{storage_class}  config:\n    planned_rows_at_start_above: {above}\n",
                )
            )
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        with DagsterInstance.from_config(str(home)) as instance:
            storage = instance.event_log_storage
            assert storage._planned_rows_at_start_above == (above or PLANNED_ROWS_AT_START_ABOVE)
            assert _range_run(instance, fail, _checked_assets(fail)) is not fail
            marks.append(_partition_marks(instance))
    assert marks[0] == marks[1]
    assert marks[1]["upstream"][2] == PARTITIONS  # every partition planned
    assert marks[1]["upstream"][0 if not fail else 1] == PARTITIONS  # done, or failed

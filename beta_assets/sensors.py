"""The sensor that keeps gold current: new silver versions -> the partitions they change.

DESIGN.md, "Partitions and automation": ticks in [a, b] change the gold windows that start in
(a - band - window, b + band]; windows also become final as silver's high-water marks move.
Both go into ONE run over a partition range (split only above a cap), keyed by the silver
versions it covers so that re-evaluating the same versions never launches a second run.
"""

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

from dagster import (
    AssetKey,
    AssetObservation,
    DagsterInstance,
    DagsterRun,
    DataVersion,
    DefaultSensorStatus,
    MetadataValue,
    PartitionKeyRange,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from deltalake import DeltaTable

from beta_assets.assets.silver import (
    CHANGED_FIRST_TAG,
    CHANGED_LAST_TAG,
    SENSOR_TRIGGER_TAG,
    SILVER_VERSION_SEEN_TAG,
)
from beta_assets.config import BetaMetricsConfig
from beta_assets.partitions import (
    floor_hour,
    hour_of_key,
    hourly_partitions,
    hours_holding,
    partition_key,
)
from beta_assets.settings import (
    BAND,
    EVENT_TIME,
    GOLD_TABLE,
    JOINED_RETURNS_TABLE,
    PARTITION_SPAN,
    SILVER_TABLE,
    SPY_RETURNS_TABLE,
    WINDOW,
)
from beta_assets.silver_log import SilverCommit, SilverLog
from beta_assets.watermarks import (
    HighWaterMarks,
    high_water_marks,
    late_tick_count,
    snapshot_high_water_marks,
)
from resources.lake import DeltaLake

DEFAULT_INTERVAL_SECONDS = 5  # cheap: a tick reads only the Delta log
DEFAULT_MAX_PARTITIONS_PER_RUN = 48
COMPUTED_ASSET_KEYS = {
    AssetKey(table) for table in (SPY_RETURNS_TABLE, JOINED_RETURNS_TABLE, GOLD_TABLE)
}


@dataclass(frozen=True)
class SilverCursor:
    """What the sensor has handled: a silver version and what it knew about silver then."""

    version: int | None = None
    first_event: datetime | None = None  # the event-time range silver has held
    last_event: datetime | None = None
    market_mark: datetime | None = None  # high-water marks of that version
    ticker_mark: datetime | None = None
    # Hours [pending_start, pending_end) still owed a run: the rest of a range above the cap.
    pending_start: datetime | None = None
    pending_end: datetime | None = None

    @property
    def marks(self) -> HighWaterMarks:
        return HighWaterMarks(self.market_mark, self.ticker_mark)

    @property
    def pending(self) -> tuple[datetime, datetime] | None:
        if self.pending_start is None or self.pending_end is None:
            return None
        return self.pending_start, self.pending_end

    def to_json(self) -> str:
        return json.dumps(
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}
        )

    @classmethod
    def from_json(cls, text: str | None) -> "SilverCursor":
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(
            version=raw.get("version"),
            **{
                name: datetime.fromisoformat(raw[name]) if raw.get(name) else None
                for name in (
                    "first_event",
                    "last_event",
                    "market_mark",
                    "ticker_mark",
                    "pending_start",
                    "pending_end",
                )
            },
        )


@dataclass
class SilverChanges:
    """Everything between the cursor's version and the current one."""

    to_version: int
    commits: list[SilverCommit] = field(default_factory=list)
    full_recompute_reason: str | None = None
    late_ticks: int = 0
    late_ticks_known: bool = True
    # The high-water marks after the changes, when the cursor's marks and the added rows alone
    # give them: appends only, every added file read. Else None (read them from the snapshot).
    marks_after: HighWaterMarks | None = None

    @property
    def data_commits(self) -> list[SilverCommit]:
        return [c for c in self.commits if c.changes_data]

    def changed_span(self) -> tuple[datetime, datetime] | None:
        firsts = [c.first_event for c in self.data_commits if c.first_event]
        lasts = [c.last_event for c in self.data_commits if c.last_event]
        return (min(firsts), max(lasts)) if firsts and lasts else None


def read_changes(
    log: SilverLog, cursor: SilverCursor, current_version: int, market_symbol: str
) -> SilverChanges:
    changes = SilverChanges(current_version)
    if cursor.version is None:
        changes.full_recompute_reason = "first evaluation: every hour silver holds"
        return changes
    if current_version < cursor.version:
        changes.full_recompute_reason = (
            f"silver is at version {current_version}, below the cursor's {cursor.version}: "
            "the table was recreated"
        )
        return changes
    marks = cursor.marks
    for version in range(cursor.version + 1, current_version + 1):
        commit = log.commit(version)
        if commit is None:
            changes.full_recompute_reason = f"the log of version {version} is gone (log cleanup)"
            return changes
        changes.commits.append(commit)
        if commit.needs_full_recompute:
            changes.full_recompute_reason = (
                f"version {version} ({commit.operation}) may have changed any hour"
            )
        marks = _count_late_ticks(log, commit, changes, marks, market_symbol)
    if _marks_follow_from_appends(cursor, changes):
        changes.marks_after = marks
    return changes


def _marks_follow_from_appends(cursor: SilverCursor, changes: SilverChanges) -> bool:
    """Whether the cursor's marks merged with the added rows' are the new version's marks: a
    maximum only grows under appends, and the cursor holds its version's marks (both sides
    known: a cursor without them may predate them)."""
    return (
        cursor.market_mark is not None
        and cursor.ticker_mark is not None
        and changes.full_recompute_reason is None
        and changes.late_ticks_known
        and not any(commit.removes_rows for commit in changes.commits)
    )


def _count_late_ticks(
    log: SilverLog,
    commit: SilverCommit,
    changes: SilverChanges,
    marks: HighWaterMarks,
    market_symbol: str,
) -> HighWaterMarks:
    if not commit.added_files:
        return marks
    added = log.added_ticks(commit)
    if added is None:
        changes.late_ticks_known = False
        return marks
    changes.late_ticks += late_tick_count(added, market_symbol, marks)
    return marks.merged(high_water_marks(added, market_symbol))


# --- which hours to recompute


def windows_changed_by(first: datetime, last: datetime) -> tuple[datetime, datetime]:
    """Hours [start, end) holding the windows that ticks in [first, last] change.

    A market tick at t pairs with ticker ticks up to one band away, whose windows start up
    to one window before them: windows starting in (first - band - window, last + band].
    """
    return floor_hour(first - BAND - WINDOW), floor_hour(last + BAND) + PARTITION_SPAN


def windows_finalized_between(
    old: datetime | None, new: datetime | None, earliest: datetime | None
) -> tuple[datetime, datetime] | None:
    """Hours holding the windows whose end moved from >= old to < new (final cutoffs).

    With no old cutoff, every window since the earliest tick may have become final.
    """
    if new is None or (old is not None and new <= old):
        return None
    lowest_end = old if old is not None else (earliest or new)
    if earliest is not None:  # a window holding data ends after the first tick
        lowest_end = max(lowest_end, earliest)
    if lowest_end >= new:
        return None
    return floor_hour(lowest_end - WINDOW), floor_hour(
        new - WINDOW - timedelta(microseconds=1)
    ) + PARTITION_SPAN


def hours_to_recompute(
    changes: SilverChanges,
    cursor: SilverCursor,
    snapshot_span: tuple[datetime, datetime] | None,
    new_marks: HighWaterMarks,
) -> tuple[datetime, datetime] | None:
    """The hull of every hour that the changes touch; None when nothing changed."""
    spans = []
    if changes.full_recompute_reason:
        known = [t for t in (*(snapshot_span or ()), cursor.first_event, cursor.last_event) if t]
        if known:
            spans.append(hours_holding(min(known), max(known)))
    else:
        changed = changes.changed_span()
        if changed:
            spans.append(windows_changed_by(*changed))
        finalized = windows_finalized_between(
            cursor.marks.final_before(), new_marks.final_before(), cursor.first_event
        )
        if finalized:
            spans.append(finalized)
    if not spans:
        return None
    return min(s for s, _ in spans), max(e for _, e in spans)


def partition_chunks(start: datetime, end: datetime, max_partitions: int) -> Iterator[list[str]]:
    """The partition keys of hours [start, end) that exist, in order, at most N at a time."""
    first = max(start, hourly_partitions.start)
    last_key = hourly_partitions.get_last_partition_key()
    if last_key is None or first >= end:
        return
    last = min(
        end - PARTITION_SPAN, hourly_partitions.time_window_for_partition_key(last_key).start
    )
    if last < first:
        return
    keys = hourly_partitions.get_partition_keys_in_range(
        PartitionKeyRange(partition_key(first), partition_key(last))
    )
    for index in range(0, len(keys), max_partitions):
        yield keys[index : index + max_partitions]


# --- the sensor


def build_silver_sensor(
    job,
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    max_partitions_per_run: int = DEFAULT_MAX_PARTITIONS_PER_RUN,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
):
    @sensor(
        name="silver_new_versions",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Watches the silver Delta table. For each new version it reads what the commit "
            "changed and requests one run over the partitions whose windows change or become "
            f"final (at most {max_partitions_per_run} partitions a run)."
        ),
    )
    def silver_new_versions(
        context: SensorEvaluationContext, lake: DeltaLake, metrics: BetaMetricsConfig
    ) -> SensorResult | SkipReason:
        snapshot = lake.open(SILVER_TABLE)
        if snapshot is None:
            return SkipReason(f"no silver table at {lake.uri(SILVER_TABLE)} yet")
        cursor = SilverCursor.from_json(context.cursor)
        if cursor.version == snapshot.version() and cursor.pending is None:
            return SkipReason(f"silver is still at version {cursor.version}")
        in_flight = pipeline_run_in_flight(context.instance, job.name)
        if in_flight is not None:
            # Backpressure: what arrived meanwhile folds into the next run (the cursor stays).
            return SkipReason(
                f"run {in_flight.run_id} is {in_flight.status.value}: silver "
                f"v{cursor.version} -> v{snapshot.version()} folds into the next run"
            )
        market = metrics.settings().market_symbol
        log = SilverLog(snapshot, lake.storage_options())
        changes = read_changes(log, cursor, snapshot.version(), market)
        return evaluate_changes(
            context, lake, snapshot, cursor, changes, market, max_partitions_per_run
        )

    return silver_new_versions


def evaluate_changes(
    context: SensorEvaluationContext,
    lake: DeltaLake,
    snapshot: DeltaTable,
    cursor: SilverCursor,
    changes: SilverChanges,
    market_symbol: str,
    max_partitions: int,
) -> SensorResult:
    # Reading silver's newest hours costs seconds at 500 symbols; after appends the marks
    # follow from what the sensor read already.
    new_marks = changes.marks_after
    if new_marks is None:
        new_marks = snapshot_high_water_marks(snapshot, market_symbol)
    snapshot_span = lake.column_range(snapshot, EVENT_TIME)
    snapshot_span = snapshot_span if all(snapshot_span) else None
    if changes.full_recompute_reason:
        context.log.warning(f"full recompute: {changes.full_recompute_reason}")
    if changes.late_ticks:
        context.log.warning(f"{changes.late_ticks} late ticks (behind the 3h watermark)")
    if not changes.late_ticks_known:
        context.log.warning("some added files were vacuumed away: late ticks not all counted")
    changed_hours = hours_to_recompute(changes, cursor, snapshot_span, new_marks)
    hours = _hull(changed_hours, cursor.pending)
    chunks = list(partition_chunks(*hours, max_partitions)) if hours else []
    requests = list(_run_requests(changes, cursor, chunks[:1], owed=changed_hours != hours))
    pending = (hour_of_key(chunks[1][0]), hours[1]) if len(chunks) > 1 else (None, None)
    span = (
        f"{partition_key(hours[0])} ... {partition_key(hours[1] - PARTITION_SPAN)}"
        if hours
        else "-"
    )
    context.log.info(
        f"silver v{cursor.version} -> v{snapshot.version()}: {len(changes.data_commits)} data "
        f"commit(s), {len(requests)} run(s) over partitions {span}"
    )
    seen = [t for t in (*(snapshot_span or ()), cursor.first_event, cursor.last_event) if t]
    new_cursor = replace(
        cursor,
        version=snapshot.version(),
        first_event=min(seen) if seen else None,
        last_event=max(seen) if seen else None,
        market_mark=new_marks.market,
        ticker_mark=new_marks.tickers,
        pending_start=pending[0],
        pending_end=pending[1],
    )
    if pending[0] is not None:
        context.log.info(
            f"partitions from {partition_key(pending[0])} on are owed the next run (the cap is "
            f"{max_partitions} partitions a run, one run at a time)"
        )
    return SensorResult(
        run_requests=requests,
        asset_events=list(_observations(changes)),
        cursor=new_cursor.to_json(),
    )


def _run_requests(
    changes: SilverChanges, cursor: SilverCursor, chunks: list[list[str]], owed: bool
) -> Iterator[RunRequest]:
    """The run over the first chunk of hours. A run that also pays hours owed from an earlier
    evaluation recomputes its whole range (the changed span says nothing about those)."""
    versions = f"v{cursor.version if cursor.version is not None else 'none'}-v{changes.to_version}"
    for keys in chunks:
        yield RunRequest(
            run_key=f"silver-{versions}:{keys[0]}...{keys[-1]}",
            tags={
                ASSET_PARTITION_RANGE_START_TAG: keys[0],
                ASSET_PARTITION_RANGE_END_TAG: keys[-1],
                SILVER_VERSION_SEEN_TAG: str(changes.to_version),
                SENSOR_TRIGGER_TAG: _trigger(changes, owed),
                "tickbeta/late_ticks": _late_ticks_tag(changes),
                **({} if owed else _changed_span_tags(changes)),
            },
        )


def _trigger(changes: SilverChanges, owed: bool) -> str:
    if changes.full_recompute_reason:
        return "full_recompute"
    return "owed_partitions" if owed else "append"


def _hull(
    a: tuple[datetime, datetime] | None, b: tuple[datetime, datetime] | None
) -> tuple[datetime, datetime] | None:
    spans = [span for span in (a, b) if span is not None]
    return (min(s for s, _ in spans), max(e for _, e in spans)) if spans else None


def pipeline_run_in_flight(instance: DagsterInstance, job_name: str) -> DagsterRun | None:
    """A run of the pipeline that is queued or not finished, if any: the sensor's own job, or
    any run that materializes the computed assets (a launch from the UI)."""
    for run in instance.get_runs(filters=RunsFilter(statuses=NOT_FINISHED_STATUSES)):
        if run.job_name == job_name or (run.asset_selection or set()) & COMPUTED_ASSET_KEYS:
            return run
    return None


def _late_ticks_tag(changes: SilverChanges) -> str:
    """The count, with a `+` when vacuumed files kept some ticks from being counted."""
    return f"{changes.late_ticks}" + ("" if changes.late_ticks_known else "+")


def _changed_span_tags(changes: SilverChanges) -> dict[str, str]:
    """What the new versions changed, so that a run's steps recompute only what it reaches.

    A full recompute names no span: every hour of its range is recomputed.
    """
    span = None if changes.full_recompute_reason else changes.changed_span()
    if span is None:
        return {}
    return {CHANGED_FIRST_TAG: span[0].isoformat(), CHANGED_LAST_TAG: span[1].isoformat()}


def _observations(changes: SilverChanges) -> Iterator[AssetObservation]:
    for commit in changes.commits:
        yield AssetObservation(
            asset_key=SILVER_TABLE,
            metadata={
                "silver_version": MetadataValue.int(commit.version),
                "operation": MetadataValue.text(commit.operation),
                "rows_added": MetadataValue.int(commit.rows_added),
                "changes_data": MetadataValue.bool(commit.changes_data),
                "event_time_min": MetadataValue.text(_iso(commit.first_event)),
                "event_time_max": MetadataValue.text(_iso(commit.last_event)),
                "late_ticks_in_evaluation": MetadataValue.int(changes.late_ticks),
            },
            tags={DATA_VERSION_TAG: DataVersion(str(commit.version)).value},
        )


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""

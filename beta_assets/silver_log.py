"""What each silver commit changed, read from the Delta log (no Spark, no Dagster).

A commit either changes no data (OPTIMIZE, VACUUM: every action has dataChange = false),
changes a known event-time range (appends, deletes, overwrites: the statistics of the files
it added and removed), or may have changed anything (RESTORE, files without statistics).
"""

import json
import urllib.parse
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.fs as pa_fs
from deltalake import DeltaTable
from deltalake.fs import DeltaStorageHandler

from beta_assets.settings import EVENT_TIME, SYMBOL
from beta_assets.times import parse_utc
from resources.delta_files import (
    DataFile,
    added_data_file,
    read_data_file,
    statistics_name,
    table_layout,
)

# Operations that may change anything without saying what: recompute everything.
_UNBOUNDED_OPERATIONS = {"RESTORE"}


@dataclass(frozen=True)
class SilverCommit:
    version: int
    operation: str
    changes_data: bool
    rows_added: int = 0
    first_event: datetime | None = None  # event-time range of the rows added or removed
    last_event: datetime | None = None
    range_known: bool = True
    added_files: tuple[DataFile, ...] = field(default_factory=tuple)
    removes_rows: bool = False  # it removed data files (a delete, an overwrite, a new DV)

    @property
    def needs_full_recompute(self) -> bool:
        return self.changes_data and not self.range_known


class SilverLog:
    """The Delta log of silver, one commit at a time."""

    def __init__(self, snapshot: DeltaTable, storage_options: dict[str, str]) -> None:
        self.table_uri = snapshot.table_uri
        self.storage_options = storage_options
        self._snapshot = snapshot
        self._files = pa_fs.PyFileSystem(DeltaStorageHandler(self.table_uri, storage_options))
        schema = pa.schema(snapshot.schema().to_arrow())
        time_type = schema.field(EVENT_TIME).type
        # The added rows as their files hold them: column mapping and deletion vectors resolved.
        self._added_layout = table_layout(
            snapshot, pa.schema([(SYMBOL, pa.string()), (EVENT_TIME, time_type)])
        )
        self._time_statistics = statistics_name(snapshot, EVENT_TIME)
        # Text event times have statistics that do not order like time: read the rows instead.
        self._typed_times = pa.types.is_timestamp(time_type)
        # A commit's added rows are read once: for its range (text times) and its late ticks.
        self._added: dict[int, pa.Table | None] = {}

    def commit(self, version: int) -> SilverCommit | None:
        """The commit's change; None when its log entry is gone (log cleanup)."""
        actions = self._actions(version)
        if actions is None:
            return None
        info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        operation = str(info.get("operation", "UNKNOWN"))
        adds = [a["add"] for a in actions if "add" in a and a["add"].get("dataChange", True)]
        removes = [
            a["remove"] for a in actions if "remove" in a and a["remove"].get("dataChange", True)
        ]
        if not adds and not removes:
            return SilverCommit(version, operation, changes_data=False)
        commit = SilverCommit(
            version,
            operation,
            changes_data=True,
            rows_added=sum(_stats_rows(add.get("stats")) for add in adds),
            removes_rows=bool(removes),
            added_files=tuple(added_data_file(self._snapshot, add) for add in adds),
        )
        if self._typed_times:
            ranges = [_stats_range(add.get("stats"), self._time_statistics) for add in adds]
            ranges += self._removed_ranges(version, removes)
        else:
            ranges = [None] * len(removes) + [self._data_range(commit)]
        known = [r for r in ranges if r is not None]
        return replace(
            commit,
            first_event=min((r[0] for r in known), default=None),
            last_event=max((r[1] for r in known), default=None),
            range_known=len(known) == len(ranges) and operation not in _UNBOUNDED_OPERATIONS,
        )

    def _data_range(self, commit: SilverCommit) -> tuple[datetime, datetime] | None:
        ticks = self.added_ticks(commit)
        if ticks is None:
            return None
        times = parse_utc(ticks.column(EVENT_TIME).to_pandas()).dropna()
        if times.empty:
            return None
        return times.min().to_pydatetime(), times.max().to_pydatetime()

    def added_ticks(self, commit: SilverCommit) -> pa.Table | None:
        """(s, event_time) of the rows a commit added; None if a file was vacuumed away."""
        if commit.version not in self._added:
            self._added[commit.version] = self._read_added(commit)
        return self._added[commit.version]

    def _read_added(self, commit: SilverCommit) -> pa.Table | None:
        tables = []
        for file in commit.added_files:
            try:
                tables.append(read_data_file(self._added_layout, file, self._files))
            except FileNotFoundError:  # vacuumed; other errors (the store failing) raise
                return None
        return pa.concat_tables(tables, promote_options="permissive") if tables else None

    def _actions(self, version: int) -> list[dict] | None:
        try:
            with self._files.open_input_stream(f"_delta_log/{version:020d}.json") as stream:
                text = stream.read().decode()
        except FileNotFoundError:  # log cleanup; other errors raise: the tick is retried
            return None
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _removed_ranges(self, version: int, removes: list[dict]) -> list[tuple | None]:
        """delta-rs writes no statistics on remove actions: read them from the version before."""
        if not removes:
            return []
        try:
            before = DeltaTable(
                self.table_uri, version=version - 1, storage_options=self.storage_options
            )
        except Exception:  # that version's log is gone as well
            return [None] * len(removes)
        actions = pa.table(before.get_add_actions(flatten=True))
        low, high = f"min.{self._time_statistics}", f"max.{self._time_statistics}"
        if low not in actions.column_names:
            return [None] * len(removes)
        stats = {
            urllib.parse.unquote(path): (lo, hi)
            for path, lo, hi in zip(
                actions.column("path").to_pylist(),
                actions.column(low).to_pylist(),
                actions.column(high).to_pylist(),
                strict=True,
            )
        }
        return [_typed_range(stats.get(urllib.parse.unquote(r["path"]))) for r in removes]


def _stats_range(stats: str | None, column: str) -> tuple[datetime, datetime] | None:
    if not stats:
        return None
    parsed = json.loads(stats)
    low = parsed.get("minValues", {}).get(column)
    high = parsed.get("maxValues", {}).get(column)
    if not isinstance(low, str) or not isinstance(high, str):
        return None
    try:
        return _parse_stat_time(low), _parse_stat_time(high)
    except ValueError:  # event_time held as text that is not a time
        return None


def _typed_range(pair: tuple | None) -> tuple[datetime, datetime] | None:
    if pair is None or not all(isinstance(v, datetime) for v in pair):
        return None
    return tuple(v if v.tzinfo else v.replace(tzinfo=timezone.utc) for v in pair)


def _parse_stat_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    # timestamp_ntz statistics carry no zone: silver's contract is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _stats_rows(stats: str | None) -> int:
    return int(json.loads(stats).get("numRecords", 0)) if stats else 0

"""Which data files a read of a Delta table needs, and reading one of them where it is needed.

The run process plans: `data_files` lists the files of a snapshot that a read needs, each with
what a reader needs to open it alone (size, partition values, deletion vector), and
`table_layout` says how a file's columns become the table's logical columns. A Spark task
reads: `read_data_file` opens one file with pyarrow, picks the wanted columns by physical name
(or by parquet field id), drops the rows its deletion vector deletes and fills partition
columns. Nothing here touches Spark or Dagster, and no row passes through the planner.

Deletion vectors follow the Delta protocol ("Deletion Vectors", "Deletion Vector Format"):
inline as Z85 text or in a DV file with a CRC-32, holding a RoaringBitmapArray of the deleted
row positions (portable roaring bitmaps).
"""

import json
import re
import urllib.parse
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pa_fs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.fs import DeltaStorageHandler
from deltalake.schema import Field


@dataclass(frozen=True)
class DeletionVector:
    """An add action's deletionVector descriptor (Delta protocol)."""

    storage_type: str  # "i" inline, "u" relative path with uuid, "p" absolute path
    path_or_inline_dv: str
    offset: int | None
    size_in_bytes: int
    cardinality: int


@dataclass(frozen=True)
class DataFile:
    """One file of a snapshot a read needs; small and picklable."""

    # absolute: a local path or s3://bucket/key, as DeltaTable.file_uris gives it (except that a
    # local table root is unescaped: file_uris keeps "my%20lake" for the folder "my lake")
    uri: str
    size_bytes: int
    partition_values: dict[str, str | None]  # LOGICAL column name -> raw partition string
    deletion_vector: DeletionVector | None


@dataclass(frozen=True)
class TableLayout:
    """What a task needs to turn a file into logical columns; picklable."""

    table_uri: str
    columns: pa.Schema  # the wanted LOGICAL columns with their Arrow types
    physical_names: dict[str, str]  # logical -> physical name (identity without column mapping)
    field_ids: dict[str, int]  # logical -> parquet field id (column mapping "id" mode; else {})
    partition_columns: tuple[str, ...]  # logical names


class DeltaLogError(RuntimeError):
    """The Delta log cannot be replayed to the snapshot's version, or disagrees with delta-rs."""


class DeletionVectorError(ValueError):
    """A deletion vector is unreadable or does not match its descriptor."""


_MAPPING_MODE = "delta.columnMapping.mode"
_PHYSICAL_NAME = "delta.columnMapping.physicalName"
_COLUMN_ID = "delta.columnMapping.id"
_PARQUET_FIELD_ID = b"PARQUET:field_id"
# A table property: app transactions older than this are expired (the Delta protocol).
TRANSACTION_RETENTION = "delta.setTransactionRetentionDuration"
# Reader features whose tables' data files are plain parquet, read by column name as they are.
_PLAIN_FILE_READER_FEATURES = {"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck", "variantType"}
# Reader features this module resolves itself; any other one makes a read delta-aware.
_RESOLVED_READER_FEATURES = {"deletionVectors", "columnMapping"}


# --- the plan (run process)


def table_layout(snapshot: DeltaTable, columns: pa.Schema) -> TableLayout:
    """How the files of `snapshot` hold the wanted logical `columns`."""
    fields = {field.name: field for field in snapshot.schema().fields}
    missing = [name for name in columns.names if name not in fields]
    if missing:
        raise KeyError(
            f"Delta table {snapshot.table_uri} (version {snapshot.version()}) has no column "
            f"{missing}; it has {list(fields)}"
        )
    mode = _column_mapping_mode(snapshot)
    if mode != "none":
        _refuse_nested_mapped_columns(snapshot, columns)
    physical = {
        name: str(fields[name].metadata.get(_PHYSICAL_NAME, name)) if mode != "none" else name
        for name in columns.names
    }
    return TableLayout(
        table_uri=snapshot.table_uri,
        columns=columns,
        physical_names=physical,
        field_ids=_field_ids(fields, columns.names) if mode == "id" else {},
        partition_columns=tuple(snapshot.metadata().partition_columns),
    )


def data_files(snapshot: DeltaTable, file_pruning_predicate: str | None) -> list[DataFile]:
    """The files `file_uris(file_pruning_predicate=...)` selects, with sizes, partition values
    and deletion vectors.

    delta-rs 1.6.6 does not expose deletion vectors in `get_add_actions`, and
    `deletion_vectors()` expands every one into a bool per row in this process. So the
    descriptors come from replaying the Delta log from its newest complete checkpoint (classic,
    multi-part or v2 with sidecars) to the snapshot's version. delta-rs still decides which
    files the snapshot holds and which ones the predicate keeps; the replay must know every
    file it selects, or the plan fails naming it.
    """
    live = _live_files(snapshot)
    uris = snapshot.file_uris(file_pruning_predicate=file_pruning_predicate)
    chosen = [_path_in_table(snapshot.table_uri, uri) for uri in uris]
    unknown = [uri for uri, path in zip(uris, chosen, strict=True) if path not in live]
    if unknown:
        raise DeltaLogError(
            f"Delta table {snapshot.table_uri} (version {snapshot.version()}): the log replay "
            f"does not hold {len(unknown)} file(s) delta-rs selects, e.g. {unknown[0]}"
        )
    root, logical = _table_root(snapshot.table_uri), _logical_names(snapshot)
    return [_data_file(_file_uri(root, path), live[path], logical) for path in chosen]


def _path_in_table(table_uri: str, uri: str) -> str:
    """A `file_uris` uri as the log names the file: unquoted, relative to the root under it.

    delta-rs keeps the percent-escapes of a local table root in the uris it gives
    ("/lake/my%20table/part-0.parquet" for "/lake/my table"): both spellings are accepted.
    """
    for root in (_table_root(table_uri), table_uri.rstrip("/").removeprefix("file://")):
        if uri.startswith(root + "/"):
            return uri[len(root) + 1 :]
    return uri


def needs_delta_aware_read(snapshot: DeltaTable) -> bool:
    """True when the files cannot be read as plain parquet by column name.

    Column mapping counts by the table property, whatever the protocol lists: Databricks
    creates name mode on the legacy protocol (reader 2, writer 5) with no feature list.
    Deletion vectors count only when a file of the snapshot has one.
    """
    if _column_mapping_mode(snapshot) != "none":
        return True
    protocol = snapshot.protocol()
    if protocol.min_reader_version > 3:
        return True
    features = set(protocol.reader_features or [])
    if features - _RESOLVED_READER_FEATURES - _PLAIN_FILE_READER_FEATURES:
        return True
    if "deletionVectors" not in features:  # no file can have one
        return False
    return any(live.deletion_vector is not None for live in _live_files(snapshot).values())


def _field_ids(fields: dict[str, Field], names: list[str]) -> dict[str, int]:
    return {name: int(fields[name].metadata[_COLUMN_ID]) for name in names}


def _column_mapping_mode(snapshot: DeltaTable) -> str:
    return snapshot.metadata().configuration.get(_MAPPING_MODE, "none").lower()


def _refuse_nested_mapped_columns(snapshot: DeltaTable, columns: pa.Schema) -> None:
    nested = [field.name for field in columns if pa.types.is_nested(field.type)]
    if nested:  # their child fields have physical names of their own, not resolved here
        raise NotImplementedError(
            f"Delta table {snapshot.table_uri}: nested columns {nested} under column mapping"
        )


def statistics_name(snapshot: DeltaTable, column: str) -> str:
    """The name the log's file statistics give a column: its physical name under column
    mapping (delta-rs's add actions and the stats JSON both use it), else the column's."""
    if _column_mapping_mode(snapshot) == "none":
        return column
    field = next((f for f in snapshot.schema().fields if f.name == column), None)
    return str(field.metadata.get(_PHYSICAL_NAME, column)) if field is not None else column


def column_bounds(snapshot: DeltaTable, column: str) -> tuple[Any, Any]:
    """(min, max) of a column by the snapshot's file statistics; None where they say nothing."""
    actions = pa.table(snapshot.get_add_actions(flatten=True))
    name = statistics_name(snapshot, column)
    low, high = f"min.{name}", f"max.{name}"
    if actions.num_rows == 0 or low not in actions.column_names:
        return None, None
    return pc.min(actions.column(low)).as_py(), pc.max(actions.column(high)).as_py()


def added_data_file(snapshot: DeltaTable, add: dict) -> DataFile:
    """The file an add action of one commit adds (a reader of the log's changes, such as the
    sensor, sees it before any snapshot does)."""
    path = _file_uri(_table_root(snapshot.table_uri), urllib.parse.unquote(add["path"]))
    return _data_file(path, _live_file(add), _logical_names(snapshot))


def _logical_names(snapshot: DeltaTable) -> dict[str, str]:
    """Physical -> logical column name (partition values are keyed by physical names)."""
    if _column_mapping_mode(snapshot) == "none":
        return {}
    return {
        str(field.metadata.get(_PHYSICAL_NAME, field.name)): field.name
        for field in snapshot.schema().fields
    }


@dataclass(frozen=True)
class _LiveFile:
    """An add action of the snapshot, as the log holds it."""

    size_bytes: int
    partition_values: dict[str, str | None]  # physical names
    deletion_vector: DeletionVector | None


def _data_file(uri: str, live: _LiveFile, logical: dict[str, str]) -> DataFile:
    partitions = {logical.get(name, name): raw for name, raw in live.partition_values.items()}
    return DataFile(uri, live.size_bytes, partitions, live.deletion_vector)


# --- replaying the Delta log


_COMMIT = re.compile(r"^(\d{20})\.json$")
_SINGLE_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.parquet$")
_UUID_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.[0-9a-fA-F-]{36}\.(json|parquet)$")
_PART_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.(\d{10})\.(\d{10})\.parquet$")
_ADD_COLUMNS = ["add.path", "add.size", "add.partitionValues", "add.deletionVector"]


@dataclass(frozen=True)
class _LogSegment:
    """What a replay of the log to a snapshot's version reads: the newest complete checkpoint
    at or before it (its files), then every commit after the checkpoint."""

    files: pa_fs.FileSystem
    root: str
    checkpoint_parts: list[str]
    commits: range

    def commit_actions(self, commit: int) -> list[dict]:
        return _json_actions(self.files, self.root, f"{self.root}/_delta_log/{commit:020d}.json")


def _log_segment(snapshot: DeltaTable) -> _LogSegment:
    files = table_filesystem(snapshot.table_uri, _storage_options(snapshot))
    root = _table_root(snapshot.table_uri)
    version = snapshot.version()
    names = _log_names(files, root)
    checkpoint = _newest_checkpoint(names, version)
    first = checkpoint[0] + 1 if checkpoint else 0
    missing = sorted(set(range(first, version + 1)) - _commit_versions(names))
    if missing:
        raise DeltaLogError(
            f"Delta table {snapshot.table_uri}: cannot replay the log to version {version}; "
            f"commit {missing[0]} is missing"
            + ("" if checkpoint else " and there is no checkpoint before it")
        )
    parts = checkpoint[1] if checkpoint else []
    return _LogSegment(files, root, parts, range(first, version + 1))


def _live_files(snapshot: DeltaTable) -> dict[str, _LiveFile]:
    """The snapshot's add actions by their unquoted log path, replayed from the log."""
    segment = _log_segment(snapshot)
    live: dict[str, dict] = {}
    for part in segment.checkpoint_parts:
        for add in _checkpoint_adds(segment.files, segment.root, part):
            live[urllib.parse.unquote(add["path"])] = add
    for commit in segment.commits:
        _apply_commit(live, segment.commit_actions(commit))
    return {path: _live_file(add) for path, add in live.items()}


def app_transaction_versions(snapshot: DeltaTable, app_ids: Iterable[str]) -> dict[str, int | None]:
    """The version of each app id's latest transaction (a `txn` action) as of the snapshot, or
    None where it has none: what `snapshot.transaction_version` answers for one app id.

    delta-rs 1.6.6 replays the log anew for each app id it is asked (3-6 ms on a table holding
    6,656 hours' transactions), so a run over N hours asked N times; this replays it once.
    A table that expires transactions (delta.setTransactionRetentionDuration) is asked one app
    id at a time, so that expiry stays delta-rs's to decide."""
    wanted = list(app_ids)
    if not wanted:
        return {}
    if TRANSACTION_RETENTION in snapshot.metadata().configuration:
        return {app: snapshot.transaction_version(app) for app in wanted}
    segment = _log_segment(snapshot)
    latest: dict[str, int] = {}
    for part in segment.checkpoint_parts:
        latest.update(_checkpoint_transactions(segment.files, segment.root, part))
    for commit in segment.commits:
        latest.update(_transactions(segment.commit_actions(commit)))
    return {app: latest.get(app) for app in wanted}


def _transactions(actions: Iterable[dict]) -> dict[str, int]:
    return {
        str(action["txn"]["appId"]): int(action["txn"]["version"])
        for action in actions
        if action.get("txn")
    }


def _checkpoint_transactions(files: pa_fs.FileSystem, root: str, name: str) -> dict[str, int]:
    """The txn actions of one checkpoint file (a v2 checkpoint keeps them in its top-level file,
    never in sidecars)."""
    path = f"{root}/_delta_log/{name}"
    if name.endswith(".json"):
        return _transactions(_json_actions(files, root, path))
    with files.open_input_file(_path_on(files, root, path)) as source:
        parquet = pq.ParquetFile(source)
        if "txn" not in parquet.schema_arrow.names:
            return {}
        rows = parquet.read(columns=["txn.appId", "txn.version"]).column("txn")
    return _transactions({"txn": txn} for txn in rows.to_pylist())


def _storage_options(snapshot: DeltaTable) -> dict[str, str]:
    # The options the snapshot was opened with: delta-rs keeps them there and reads them the
    # same way for its own pyarrow datasets (to_pyarrow_dataset).
    return dict(getattr(snapshot, "_storage_options", None) or {})


def _log_names(files: pa_fs.FileSystem, root: str) -> list[str]:
    log_dir = _path_on(files, root, f"{root}/_delta_log")
    infos = files.get_file_info(pa_fs.FileSelector(log_dir, recursive=False))
    return [info.base_name for info in infos if info.type == pa_fs.FileType.File]


def _commit_versions(names: Iterable[str]) -> set[int]:
    return {int(match[1]) for match in map(_COMMIT.match, names) if match}


def _newest_checkpoint(names: list[str], version: int) -> tuple[int, list[str]] | None:
    """(version, its files) of the newest complete checkpoint at or before `version`."""
    complete: dict[tuple, list[str]] = {}
    parts: dict[tuple, set[str]] = {}
    for name in names:
        if match := _SINGLE_CHECKPOINT.match(name) or _UUID_CHECKPOINT.match(name):
            complete[(int(match[1]), name)] = [name]
        elif match := _PART_CHECKPOINT.match(name):
            parts.setdefault((int(match[1]), int(match[3])), set()).add(name)
    for (at, count), found in parts.items():
        if len(found) == count:  # a writer that died mid-checkpoint leaves it incomplete
            complete[(at, f"parts of {count}")] = sorted(found)
    usable = [key for key in complete if key[0] <= version]
    if not usable:
        return None
    newest = max(usable)
    return newest[0], complete[newest]


def _checkpoint_adds(files: pa_fs.FileSystem, root: str, name: str) -> Iterator[dict]:
    """The add actions of one checkpoint file, with those of the sidecars it names (v2)."""
    path = f"{root}/_delta_log/{name}"
    if name.endswith(".json"):
        actions = _json_actions(files, root, path)
        adds = [action["add"] for action in actions if "add" in action]
        sidecars = [action["sidecar"]["path"] for action in actions if "sidecar" in action]
    else:
        adds, sidecars = _parquet_adds_and_sidecars(files, root, path)
    yield from adds
    for sidecar in sidecars:
        yield from _parquet_adds_and_sidecars(files, root, _sidecar_uri(root, sidecar))[0]


def _sidecar_uri(root: str, sidecar: str) -> str:
    sidecar = urllib.parse.unquote(sidecar)
    return sidecar if "://" in sidecar else f"{root}/_delta_log/_sidecars/{sidecar}"


def _parquet_adds_and_sidecars(
    files: pa_fs.FileSystem, root: str, uri: str
) -> tuple[list[dict], list[str]]:
    with files.open_input_file(_path_on(files, root, uri)) as source:
        parquet = pq.ParquetFile(source)
        present = parquet.schema_arrow.names
        has_adds, has_sidecars = "add" in present, "sidecar" in present
        wanted = (_ADD_COLUMNS if has_adds else []) + (["sidecar.path"] if has_sidecars else [])
        rows = parquet.read(columns=wanted)
    adds = [add for add in rows.column("add").to_pylist() if add] if has_adds else []
    for add in adds:  # checkpoints hold maps as lists of pairs
        add["partitionValues"] = dict(add.get("partitionValues") or [])
    sidecars = rows.column("sidecar").to_pylist() if has_sidecars else []
    return adds, [sidecar["path"] for sidecar in sidecars if sidecar is not None]


def _json_actions(files: pa_fs.FileSystem, root: str, uri: str) -> list[dict]:
    with files.open_input_stream(_path_on(files, root, uri)) as stream:
        text = stream.read().decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _apply_commit(live: dict[str, dict], actions: list[dict]) -> None:
    # A commit that puts a deletion vector on a file removes the file and adds it again with
    # the vector: removes first, so the new add survives in either order of the two lines.
    for action in actions:
        if "remove" in action:
            live.pop(urllib.parse.unquote(action["remove"]["path"]), None)
    for action in actions:
        if "add" in action:
            live[urllib.parse.unquote(action["add"]["path"])] = action["add"]


def _live_file(add: dict) -> _LiveFile:
    descriptor = add.get("deletionVector")
    vector = None
    if descriptor:
        offset = descriptor.get("offset")
        vector = DeletionVector(
            storage_type=str(descriptor["storageType"]),
            path_or_inline_dv=str(descriptor["pathOrInlineDv"]),
            offset=None if offset is None else int(offset),
            size_in_bytes=int(descriptor["sizeInBytes"]),
            cardinality=int(descriptor["cardinality"]),
        )
    return _LiveFile(int(add["size"]), dict(add.get("partitionValues") or {}), vector)


# --- where files are


def table_filesystem(table_uri: str, storage_options: dict[str, str]) -> pa_fs.FileSystem:
    """A filesystem that reaches the table's files: local, or delta-rs' own object store.

    On an object store, delta-rs applies `storage_options` and, for what they leave out, the
    credentials of the environment it runs in (a Spark executor's own, on a cluster).
    """
    if _is_local(table_uri):
        return pa_fs.LocalFileSystem()
    return pa_fs.PyFileSystem(DeltaStorageHandler(table_uri, storage_options))


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _table_root(table_uri: str) -> str:
    """The table's root as `file_uris` spells its files: a local path, or scheme://bucket/key."""
    root = table_uri.rstrip("/")
    return urllib.parse.unquote(root.removeprefix("file://")) if _is_local(root) else root


def _file_uri(root: str, path: str) -> str:
    """The uri of a log path (already unquoted): relative to the table root, or absolute."""
    if path.startswith("file:"):
        return urllib.parse.urlparse(path).path
    return path if "://" in path else f"{root}/{path}"


def _path_on(files: pa_fs.FileSystem, table_uri: str, uri: str) -> str:
    """`uri` as `files` names it: DeltaStorageHandler wants paths relative to the table root."""
    if isinstance(files, pa_fs.PyFileSystem) and isinstance(files.handler, DeltaStorageHandler):
        root = _table_root(table_uri)
        if not uri.startswith(root + "/"):
            raise ValueError(f"{uri} lies outside Delta table {root}, which its filesystem reaches")
        return uri[len(root) + 1 :]
    if isinstance(files, pa_fs.LocalFileSystem):
        return _file_uri("", uri) if uri.startswith("file:") else uri
    return uri.split("://", 1)[-1]  # pyarrow's own object-store filesystems: bucket/key


# --- reading one file (Spark task)


def read_data_file(layout: TableLayout, file: DataFile, filesystem: pa_fs.FileSystem) -> pa.Table:
    """The wanted logical columns of one data file, without the rows its deletion vector
    deletes; schema == layout.columns."""
    # Decoded on the task's own thread: a Spark task runs on each core already, and pyarrow's
    # threads cost a small file more than they save. Column chunks are fetched together
    # (pre_buffer) where a read is a request to an object store, not where it is a local read.
    local = isinstance(filesystem, pa_fs.LocalFileSystem)
    with filesystem.open_input_file(_path_on(filesystem, layout.table_uri, file.uri)) as source:
        parquet = pq.ParquetFile(source, coerce_int96_timestamp_unit="us", pre_buffer=not local)
        in_file = _file_column_names(layout, parquet.schema_arrow)
        columns = sorted({name for name in in_file.values() if name})
        stored = parquet.read(columns=columns, use_threads=False)
        row_count = parquet.metadata.num_rows
    if file.deletion_vector is not None:
        deleted = _deleted_rows(layout.table_uri, file, file.deletion_vector, filesystem, row_count)
        keep = np.ones(row_count, dtype=bool)
        keep[deleted] = False
        stored = stored.filter(pa.array(keep))
        row_count = int(keep.sum())
    columns = [
        _logical_column(layout, file, field, in_file, stored, row_count) for field in layout.columns
    ]
    return pa.Table.from_arrays(columns, schema=layout.columns)


def _file_column_names(layout: TableLayout, file_schema: pa.Schema) -> dict[str, str | None]:
    """Logical name -> the file's column holding it (None: the file predates the column)."""
    wanted = [name for name in layout.columns.names if name not in layout.partition_columns]
    ids = _columns_by_field_id(file_schema)
    if layout.field_ids and ids:
        return {name: ids.get(layout.field_ids[name]) for name in wanted}
    present = set(file_schema.names)
    return {
        name: layout.physical_names[name] if layout.physical_names[name] in present else None
        for name in wanted
    }


def _columns_by_field_id(file_schema: pa.Schema) -> dict[int, str]:
    return {
        int(field.metadata[_PARQUET_FIELD_ID]): field.name
        for field in file_schema
        if field.metadata and _PARQUET_FIELD_ID in field.metadata
    }


def _logical_column(
    layout: TableLayout,
    file: DataFile,
    field: pa.Field,
    in_file: dict[str, str | None],
    stored: pa.Table,
    row_count: int,
) -> pa.ChunkedArray:
    if field.name in layout.partition_columns:
        raw = file.partition_values.get(field.name)
        try:
            return pa.chunked_array([_partition_column(raw, field.type, row_count)], field.type)
        except (ValueError, pa.ArrowInvalid) as error:
            raise ValueError(
                f"partition value {raw!r} of column '{field.name}' in {file.uri} (Delta table "
                f"{layout.table_uri}) is not a {field.type}"
            ) from error
    name = in_file[field.name]
    if name is None:
        return pa.chunked_array([pa.nulls(row_count, field.type)], field.type)
    return stored.column(name).cast(field.type)


def _partition_column(raw: str | None, kind: pa.DataType, length: int) -> pa.Array:
    if raw is None or raw == "":  # Delta writes a null partition value as null or ""
        return pa.nulls(length, kind)
    return pa.repeat(_partition_scalar(raw, kind), length)


def _partition_scalar(raw: str, kind: pa.DataType) -> pa.Scalar:
    """A raw partition string (Delta's "Partition Value Serialization") as a `kind` value."""
    if pa.types.is_timestamp(kind):
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if kind.tz is not None and moment.tzinfo is None:  # timestamp values are UTC
            moment = moment.replace(tzinfo=timezone.utc)
        elif kind.tz is None and moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        return pa.scalar(moment, kind)
    if pa.types.is_date(kind):
        return pa.scalar(date.fromisoformat(raw), kind)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pa.scalar(raw.encode("latin-1"), kind)  # JSON escapes hold one byte per char
    return pa.scalar(raw, pa.string()).cast(kind)


# --- deletion vectors


_DV_FILE_FORMAT = 1
_UUID_CHARS = 20  # Z85 of 16 bytes


def _deleted_rows(
    table_uri: str,
    file: DataFile,
    vector: DeletionVector,
    filesystem: pa_fs.FileSystem,
    row_count: int,
) -> np.ndarray:
    """The row indexes (positions in the file) that the file's deletion vector deletes."""
    try:
        payload = _dv_payload(table_uri, vector, filesystem)
        rows = roaring_array_rows(payload)
        if len(rows) != vector.cardinality:
            raise DeletionVectorError(
                f"it holds {len(rows)} rows, its descriptor says {vector.cardinality}"
            )
        if len(rows) and int(rows[-1]) >= row_count:
            raise DeletionVectorError(f"it deletes row {rows[-1]} of a file of {row_count} rows")
    except (DeletionVectorError, ValueError, IndexError, EOFError) as error:
        raise DeletionVectorError(
            f"deletion vector of {file.uri} in Delta table {table_uri} is corrupt: {error}"
        ) from error
    return rows.astype(np.int64)


def _dv_payload(table_uri: str, vector: DeletionVector, filesystem: pa_fs.FileSystem) -> bytes:
    if vector.storage_type == "i":
        return z85_decode(vector.path_or_inline_dv)[: vector.size_in_bytes]
    if vector.storage_type not in ("u", "p"):
        raise DeletionVectorError(f"unknown storage type {vector.storage_type!r}")
    uri = dv_file_uri(table_uri, vector)
    with filesystem.open_input_file(_path_on(filesystem, table_uri, uri)) as source:
        return _stored_dv(source, vector)


def dv_file_uri(table_uri: str, vector: DeletionVector) -> str:
    """Where an on-disk deletion vector lives ("u": under the table root, "p": anywhere)."""
    root = _table_root(table_uri)
    if vector.storage_type == "p":
        return _file_uri(root, urllib.parse.unquote(vector.path_or_inline_dv))
    text = vector.path_or_inline_dv
    prefix, encoded = text[:-_UUID_CHARS], text[-_UUID_CHARS:]
    name = f"deletion_vector_{uuid.UUID(bytes=z85_decode(encoded))}.bin"
    return f"{root}/{prefix}/{name}" if prefix else f"{root}/{name}"


def _stored_dv(source: pa.NativeFile, vector: DeletionVector) -> bytes:
    """One DV of a DV file: a format byte at 0, then at `offset` a big-endian size, the
    payload and the payload's CRC-32 (big-endian)."""
    if source.read_at(1, 0) != bytes([_DV_FILE_FORMAT]):
        raise DeletionVectorError("its file is not in deletion vector format 1")
    offset = 1 if vector.offset is None else vector.offset
    framed = source.read_at(4 + vector.size_in_bytes + 4, offset)
    if len(framed) != 8 + vector.size_in_bytes:
        raise DeletionVectorError("its file ends before the vector does")
    size = int.from_bytes(framed[:4], "big")
    if size != vector.size_in_bytes:
        raise DeletionVectorError(f"stored size {size}, descriptor size {vector.size_in_bytes}")
    payload, checksum = framed[4:-4], int.from_bytes(framed[-4:], "big")
    if zlib.crc32(payload) != checksum:
        raise DeletionVectorError("bad checksum")
    return payload


def roaring_array_rows(payload: bytes) -> np.ndarray:
    """Sorted uint64 row indexes of a DV payload: a magic number, then a RoaringBitmapArray.

    Delta writes the portable format (magic 1681511377, little-endian: an int64 count of 32-bit
    bitmaps, each a uint32 key of the high 32 bits and a portable roaring bitmap). The
    protocol's inline example uses Delta's native one (magic 1681511376, big-endian: an int32
    count, then each bitmap's size and the bitmap, keyed by position); both are read.
    """
    buffer = memoryview(payload)
    magic = bytes(_take(buffer, 0, 4))
    if magic == _PORTABLE_MAGIC:
        bitmaps, end = _portable_bitmaps(buffer)
    elif magic in _NATIVE_MAGICS:
        bitmaps, end = _native_bitmaps(buffer, _NATIVE_MAGICS[magic])
    else:
        raise DeletionVectorError("bad magic number")
    if end != len(buffer):
        raise DeletionVectorError(f"{len(buffer) - end} bytes after the last bitmap")
    rows = [(np.uint64(key) << np.uint64(32)) | low.astype(np.uint64) for key, low in bitmaps]
    return np.concatenate(rows) if rows else np.empty(0, np.uint64)


_PORTABLE_MAGIC = (1681511377).to_bytes(4, "little")
_NATIVE_MAGICS = {(1681511376).to_bytes(4, order): order for order in ("little", "big")}


def _portable_bitmaps(buffer: memoryview) -> tuple[list[tuple[int, np.ndarray]], int]:
    count = int.from_bytes(_take(buffer, 4, 8), "little")
    position, bitmaps = 12, []
    for _ in range(count):
        key = int.from_bytes(_take(buffer, position, 4), "little")
        low, position = _portable_roaring32(buffer, position + 4)
        bitmaps.append((key, low))
    return bitmaps, position


def _native_bitmaps(buffer: memoryview, order: str) -> tuple[list[tuple[int, np.ndarray]], int]:
    count = int.from_bytes(_take(buffer, 4, 4), order)
    position, bitmaps = 8, []
    for key in range(count):
        size = int.from_bytes(_take(buffer, position, 4), order)
        low, end = _portable_roaring32(buffer, position + 4)
        if end != position + 4 + size:
            raise DeletionVectorError(f"bitmap {key} takes {end - position - 4}, not {size} bytes")
        bitmaps.append((key, low))
        position = end
    return bitmaps, position


# Portable roaring format (RoaringFormatSpec): cookies, and containers of 2^16 values.
_COOKIE_NO_RUNS = 12346
_COOKIE_WITH_RUNS = 12347
_MAX_ARRAY_CARDINALITY = 4096
_NO_OFFSETS_BELOW = 4  # with runs, the offset header only comes with 4 or more containers


def _portable_roaring32(buffer: memoryview, start: int) -> tuple[np.ndarray, int]:
    """The uint32 values of one portable 32-bit roaring bitmap at `start`, and where it ends."""
    cookie = int.from_bytes(_take(buffer, start, 4), "little")
    if cookie & 0xFFFF == _COOKIE_WITH_RUNS:
        containers = (cookie >> 16) + 1
        run_flags = np.unpackbits(
            np.frombuffer(_take(buffer, start + 4, (containers + 7) // 8), np.uint8),
            bitorder="little",
        )[:containers].astype(bool)
        position = start + 4 + (containers + 7) // 8
        has_offsets = containers >= _NO_OFFSETS_BELOW
    elif cookie == _COOKIE_NO_RUNS:
        containers = int.from_bytes(_take(buffer, start + 4, 4), "little")
        run_flags = np.zeros(containers, bool)
        position, has_offsets = start + 8, True
    else:
        raise DeletionVectorError(f"unknown roaring cookie {cookie & 0xFFFF}")
    header = np.frombuffer(_take(buffer, position, 4 * containers), "<u2").reshape(-1, 2)
    position += 4 * containers + (4 * containers if has_offsets else 0)
    values = []
    for (key, cardinality_less_one), is_run in zip(header, run_flags, strict=True):
        low, position = _container(buffer, position, int(cardinality_less_one) + 1, is_run)
        values.append((np.uint32(key) << np.uint32(16)) | low.astype(np.uint32))
    return (np.concatenate(values) if values else np.empty(0, np.uint32)), position


def _container(
    buffer: memoryview, position: int, cardinality: int, is_run: bool
) -> tuple[np.ndarray, int]:
    """The low 16 bits of one container's values, and where the next container starts."""
    if is_run:
        runs = int.from_bytes(_take(buffer, position, 2), "little")
        pairs = np.frombuffer(_take(buffer, position + 2, 4 * runs), "<u2").reshape(-1, 2)
        values, position = _run_values(pairs), position + 2 + 4 * runs
    elif cardinality <= _MAX_ARRAY_CARDINALITY:
        values = np.frombuffer(_take(buffer, position, 2 * cardinality), "<u2")
        position += 2 * cardinality
    else:  # bitmap: 1024 little-endian 64-bit words, bit i of the whole = value i
        words = np.frombuffer(_take(buffer, position, 8192), np.uint8)
        values = np.flatnonzero(np.unpackbits(words, bitorder="little")).astype(np.uint16)
        position += 8192
    if len(values) != cardinality:
        raise DeletionVectorError(
            f"a container holds {len(values)} values, its header says {cardinality}"
        )
    return values, position


def _run_values(pairs: np.ndarray) -> np.ndarray:
    """Values of (start, length - 1) runs."""
    starts = pairs[:, 0].astype(np.int64)
    lengths = pairs[:, 1].astype(np.int64) + 1
    if len(starts) and int((starts + lengths).max()) > 1 << 16:
        raise DeletionVectorError("a run leaves its container")
    firsts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + np.arange(int(lengths.sum())) - firsts


def _take(buffer: memoryview, start: int, size: int) -> memoryview:
    if start + size > len(buffer):
        raise DeletionVectorError("truncated bitmap")
    return buffer[start : start + size]


# --- Z85 (ZeroMQ's Base85, which Delta uses for deletion vectors)


_Z85_ALPHABET = (
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)
_Z85_VALUE = {char: value for value, char in enumerate(_Z85_ALPHABET)}


def z85_encode(data: bytes) -> str:
    """Z85 text of `data`, zero-padded to a multiple of 4 bytes (as Delta pads inline DVs)."""
    padded = data + bytes(-len(data) % 4)
    chars = []
    for start in range(0, len(padded), 4):
        word = int.from_bytes(padded[start : start + 4], "big")
        chars.extend(_Z85_ALPHABET[word // 85**power % 85] for power in range(4, -1, -1))
    return "".join(chars)


def z85_decode(text: str) -> bytes:
    if len(text) % 5:
        raise DeletionVectorError(f"Z85 text of length {len(text)}, not a multiple of 5")
    out = bytearray()
    for start in range(0, len(text), 5):
        word = 0
        for char in text[start : start + 5]:
            if char not in _Z85_VALUE:
                raise DeletionVectorError(f"{char!r} is not a Z85 character")
            word = word * 85 + _Z85_VALUE[char]
        if word >= 1 << 32:
            raise DeletionVectorError("Z85 group out of range")
        out += word.to_bytes(4, "big")
    return bytes(out)

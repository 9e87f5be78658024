"""Delta tables of the kinds Databricks writes, built from a pyarrow table, for tests.

delta-rs writes what it can (column mapping, timestampNtz, checkpoints); the rest is written by
hand as the Delta protocol specifies: deletion vectors (no writer here makes them), v2
checkpoints with sidecars, and a protocol that lists its features as Databricks does. Every
builder returns the table's uri and the rows a correct reader sees.

Nothing here uses resources.delta_files, the code these tables test.
"""

import json
import os
import shutil
import struct
import time
import urllib.parse
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
from deltalake.table import TableFeatures

SILVER_SCHEMA = pa.schema(
    [
        ("s", pa.string()),
        ("currentPrice", pa.float64()),
        ("changePercent", pa.float64()),
        ("event_time", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class BuiltTable:
    uri: str
    rows: pa.Table  # what a correct reader returns (any order)


def silver_ticks(
    count: int,
    symbols: Sequence[str] = ("SPY", "AAA", "BBB"),
    start: datetime = datetime(2026, 1, 2, 14, tzinfo=timezone.utc),
    seed: int = 12,
) -> pa.Table:
    """`count` ticks round-robin over `symbols`, one a second, with random prices and moves."""
    rng = np.random.default_rng(seed)
    times = [start + timedelta(seconds=second) for second in range(count)]
    return pa.table(
        {
            "s": [symbols[i % len(symbols)] for i in range(count)],
            "currentPrice": 100 + rng.standard_normal(count).cumsum(),
            "changePercent": rng.standard_normal(count),
            "event_time": pa.array(times, SILVER_SCHEMA.field("event_time").type),
        },
        schema=SILVER_SCHEMA,
    )


# --- tables delta-rs writes


def plain_table(path: str, data: pa.Table, files: int = 1) -> BuiltTable:
    write_in_files(path, data, files)
    return BuiltTable(path, data)


def partitioned_table(path: str, data: pa.Table, by: Sequence[str] = ("s",)) -> BuiltTable:
    write_deltalake(path, data, partition_by=list(by))
    return BuiltTable(path, data)


def column_mapping_table(
    path: str, data: pa.Table, mode: str = "name", partition_by: Sequence[str] = ()
) -> BuiltTable:
    """Column mapping on the legacy protocol (reader 2, writer 5, no feature list), as
    Databricks creates it; physical names are col-<uuid>, unlike the logical ones."""
    write_deltalake(
        path,
        data,
        partition_by=list(partition_by) or None,
        configuration={"delta.columnMapping.mode": mode},
    )
    protocol = DeltaTable(path).protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (2, 5), protocol
    return BuiltTable(path, data)


def timestamp_ntz_table(path: str, data: pa.Table, time_column: str = "event_time") -> BuiltTable:
    """The time column as timestamp without zone (delta-rs adds the timestampNtz feature)."""
    index = data.schema.get_field_index(time_column)
    naive = data.set_column(index, time_column, data.column(time_column).cast(pa.timestamp("us")))
    write_deltalake(path, naive)
    return BuiltTable(path, naive)


# --- deletion vectors, written by hand


def deletion_vector_table(
    path: str,
    data: pa.Table,
    files: int = 2,
    storage: str = "inline",
    deleted: Callable[[int], np.ndarray] | None = None,
    partition_by: Sequence[str] = (),
) -> BuiltTable:
    """A table whose protocol has deletionVectors, `data` in `files` files, and one commit that
    gives every file a deletion vector ("inline" or "file": one DV file for all of them).

    `deleted(rows_in_file)` chooses the positions to delete; by default every 7th row and a
    run of 300 rows. With `partition_by`, each write makes a file per partition.
    """
    write_in_files(path, data, files, {"delta.enableDeletionVectors": "true"}, partition_by)
    chosen = deleted or default_deleted
    deletions = {name: chosen(rows) for name, rows in file_row_counts(path).items()}
    delete_rows(path, deletions, storage=storage)
    return BuiltTable(path, surviving_rows(path, data, deletions))


def default_deleted(rows: int) -> np.ndarray:
    every_seventh = np.arange(0, rows, 7)
    run = np.arange(rows // 3, min(rows, rows // 3 + 300))
    return np.union1d(every_seventh, run)


def file_row_counts(path: str) -> dict[str, int]:
    """Rows of each live data file, by its path relative to the table (in write order)."""
    adds = _live_adds(path)
    return {name: pq.ParquetFile(os.path.join(path, name)).metadata.num_rows for name in adds}


def delete_rows(
    path: str, deletions: Mapping[str, np.ndarray], storage: str = "inline", prefix: str = "dv"
) -> int:
    """Commit deletion vectors: each file (relative path) loses the rows at those positions.

    Like a Databricks DELETE, the commit removes each file's add action and adds the file again
    with its deletion vector (replacing any vector it had). "file" storage puts every vector in
    one DV file under `prefix`, each with its CRC. Returns the new table version.
    """
    adds = _live_adds(path)
    if storage == "file":
        descriptors = _write_dv_file(path, deletions, prefix)
    else:
        descriptors = {name: inline_dv(rows) for name, rows in deletions.items()}
    now = int(time.time() * 1000)
    actions: list[dict] = [{"commitInfo": {"timestamp": now, "operation": "DELETE"}}]
    # The adds come first: a reader that applied actions in file order would drop them again.
    for name, descriptor in descriptors.items():
        old = adds[name]
        actions.append({"add": {**old, "deletionVector": descriptor, "stats": _loose(old)}})
    actions += [{"remove": _remove_of(adds[name], now)} for name in descriptors]
    return commit_actions(path, actions)


def inline_dv(rows: np.ndarray) -> dict:
    payload = roaring_payload(rows)
    return {
        "storageType": "i",
        "pathOrInlineDv": z85(payload),
        "sizeInBytes": len(payload),
        "cardinality": len(np.unique(rows)),
    }


def _write_dv_file(path: str, deletions: Mapping[str, np.ndarray], prefix: str) -> dict:
    """One DV file (format byte, then per vector: size, payload, CRC-32, big-endian)."""
    dv_id = uuid.uuid4()
    content = bytearray([1])
    descriptors = {}
    for name, rows in deletions.items():
        payload = roaring_payload(rows)
        descriptors[name] = {
            "storageType": "u",
            "pathOrInlineDv": prefix + z85(dv_id.bytes),
            "offset": len(content),
            "sizeInBytes": len(payload),
            "cardinality": len(np.unique(rows)),
        }
        content += struct.pack(">I", len(payload)) + payload
        content += struct.pack(">I", zlib.crc32(payload))
    os.makedirs(os.path.join(path, prefix), exist_ok=True)
    with open(os.path.join(path, prefix, f"deletion_vector_{dv_id}.bin"), "wb") as out:
        out.write(content)
    return descriptors


def _remove_of(add: dict, now: int) -> dict:
    remove = {
        "path": add["path"],
        "deletionTimestamp": now,
        "dataChange": True,
        "extendedFileMetadata": True,
        "partitionValues": add.get("partitionValues", {}),
        "size": add["size"],
    }
    if add.get("deletionVector"):
        remove["deletionVector"] = add["deletionVector"]
    return remove


def _loose(add: dict) -> str | None:
    """Statistics of a file with deleted rows no longer bound its values tightly."""
    if not add.get("stats"):
        return None
    return json.dumps({**json.loads(add["stats"]), "tightBounds": False})


def surviving_rows(path: str, data: pa.Table, deletions: Mapping[str, np.ndarray]) -> pa.Table:
    """`data` minus the deleted rows, found by reading each file as written (partition
    values from the log)."""
    kept = []
    for name, add in _live_adds(path).items():
        rows = pq.read_table(os.path.join(path, name))
        for column, value in add.get("partitionValues", {}).items():
            kind = data.schema.field(column).type
            values = pa.array([value] * rows.num_rows, pa.string())
            if pa.types.is_timestamp(kind):  # written without zone, meaning UTC
                values = values.cast(pa.timestamp(kind.unit))
            rows = rows.append_column(column, values.cast(kind))
        keep = np.ones(rows.num_rows, dtype=bool)
        keep[np.asarray(deletions.get(name, []), dtype=np.int64)] = False
        kept.append(rows.filter(pa.array(keep)).select(data.column_names).cast(data.schema))
    return pa.concat_tables(kept)


# --- v2 checkpoints and Databricks' protocol


def v2_checkpoint_table(path: str, data: pa.Table, files: int = 3) -> BuiltTable:
    """A table with the v2Checkpoint feature, read from a UUID-named v2 checkpoint whose add
    actions live in two sidecars (the commits it covers are gone: log cleanup), and one
    commit after it that adds the last file."""
    last = data.num_rows - data.num_rows // files
    write_in_files(path, data.slice(0, last), files - 1)
    DeltaTable(path).alter.add_feature(
        [TableFeatures.V2Checkpoint], allow_protocol_versions_increase=True
    )
    write_v2_checkpoint(path)
    write_deltalake(path, data.slice(last), mode="append")
    return BuiltTable(path, data)


def write_v2_checkpoint(path: str, sidecars: int = 2) -> int:
    """Checkpoint the latest version as Databricks does: `n.checkpoint.<uuid>.json` holding
    checkpointMetadata, protocol, metaData, txn and sidecar actions, the add actions in
    `_delta_log/_sidecars/*.parquet`; then drop the commits before n. Returns n."""
    table = DeltaTable(path)
    version = table.version()
    table.create_checkpoint()  # delta-rs: a v2 checkpoint under the classic name, adds inline
    log = os.path.join(path, "_delta_log")
    classic = os.path.join(log, f"{version:020d}.checkpoint.parquet")
    checkpoint = pq.read_table(classic, columns=["add", "txn"])
    adds = checkpoint.select(["add"]).filter(pc.invert(pc.is_null(checkpoint.column("add"))))
    transactions = [txn for txn in checkpoint.column("txn").to_pylist() if txn]
    os.remove(classic)
    os.makedirs(os.path.join(log, "_sidecars"), exist_ok=True)
    actions: list[dict] = [{"checkpointMetadata": {"version": version}}]
    actions += [{key: value} for key, value in _protocol_and_metadata(path).items()]
    actions += [{"txn": {k: v for k, v in txn.items() if v is not None}} for txn in transactions]
    for part in np.array_split(np.arange(adds.num_rows), sidecars):
        name = f"{uuid.uuid4()}.parquet"
        sidecar = os.path.join(log, "_sidecars", name)
        pq.write_table(adds.take(pa.array(part, pa.int64())), sidecar)
        info = {"sizeInBytes": os.path.getsize(sidecar), "modificationTime": 0}
        actions.append({"sidecar": {"path": name, **info}})
    with open(os.path.join(log, f"{version:020d}.checkpoint.{uuid.uuid4()}.json"), "w") as out:
        out.write("".join(json.dumps(action) + "\n" for action in actions))
    with open(os.path.join(log, "_last_checkpoint"), "w") as out:
        json.dump({"version": version, "size": len(actions) + adds.num_rows}, out)
    drop_commits_before(path, version)
    return version


def split_checkpoint(path: str, parts: int = 2) -> int:
    """Checkpoint the latest version (delta-rs, classic) and split it into a multi-part
    checkpoint `n.checkpoint.<o>.<parts>.parquet`, as older Delta writers do. Returns n."""
    table = DeltaTable(path)
    version = table.version()
    table.create_checkpoint()
    log = os.path.join(path, "_delta_log")
    classic = os.path.join(log, f"{version:020d}.checkpoint.parquet")
    actions = pq.read_table(classic)
    os.remove(classic)
    for part, rows in enumerate(np.array_split(np.arange(actions.num_rows), parts), start=1):
        name = f"{version:020d}.checkpoint.{part:010d}.{parts:010d}.parquet"
        pq.write_table(actions.take(pa.array(rows, pa.int64())), os.path.join(log, name))
    with open(os.path.join(log, "_last_checkpoint"), "w") as out:
        json.dump({"version": version, "size": actions.num_rows, "parts": parts}, out)
    return version


def drop_commits_before(path: str, version: int) -> None:
    """What log cleanup does: readers must start from the checkpoint at `version` (its own
    commit stays, which delta-rs needs to write again)."""
    for commit in range(version):
        name = os.path.join(path, "_delta_log", f"{commit:020d}.json")
        if os.path.exists(name):
            os.remove(name)


def databricks_table(path: str, data: pa.Table, storage: str = "file") -> BuiltTable:
    """What a new Databricks table looks like after a DELETE and a checkpoint: reader 3 /
    writer 7 listing columnMapping, deletionVectors and v2Checkpoint, name mode, deletion
    vectors, a v2 checkpoint with sidecars, and the commits before it cleaned up."""
    write_deltalake(path, data.slice(0, data.num_rows // 2), configuration=_NAME_MODE)
    write_deltalake(path, data.slice(data.num_rows // 2), mode="append")
    features = ["columnMapping", "deletionVectors", "v2Checkpoint"]
    rewrite_protocol(
        path,
        {
            "minReaderVersion": 3,
            "minWriterVersion": 7,
            "readerFeatures": features,
            "writerFeatures": features,
        },
    )
    counts = file_row_counts(path)
    deletions = {name: default_deleted(rows) for name, rows in counts.items()}
    delete_rows(path, deletions, storage=storage)
    write_v2_checkpoint(path)
    return BuiltTable(path, _surviving_by_position(data, deletions, list(counts.values())))


_NAME_MODE = {"delta.columnMapping.mode": "name"}


def _surviving_by_position(
    data: pa.Table, deletions: Mapping[str, np.ndarray], counts: list[int]
) -> pa.Table:
    # The files hold physical column names, and `data` in write order: survivors by position.
    keep = np.ones(data.num_rows, dtype=bool)
    start = 0
    for rows, count in zip(deletions.values(), counts, strict=True):
        keep[start + np.asarray(rows, dtype=np.int64)] = False
        start += count
    return data.filter(pa.array(keep))


def rewrite_protocol(path: str, protocol: dict) -> None:
    """Replace the protocol action of the first commit (before anything is checkpointed)."""
    first = os.path.join(path, "_delta_log", f"{0:020d}.json")
    with open(first) as log:
        actions = [json.loads(line) for line in log if line.strip()]
    actions = [{"protocol": protocol} if "protocol" in action else action for action in actions]
    with open(first, "w") as log:
        log.write("".join(json.dumps(action) + "\n" for action in actions))


def rename_physical_columns(path: str, suffix: str = "-renamed") -> None:
    """Give every column a physicalName that no file holds (field ids still match): only a
    reader that resolves by field id (column mapping id mode) finds the values."""
    first = os.path.join(path, "_delta_log", f"{0:020d}.json")
    with open(first) as log:
        actions = [json.loads(line) for line in log if line.strip()]
    for action in actions:
        if "metaData" in action:
            schema = json.loads(action["metaData"]["schemaString"])
            for field in schema["fields"]:
                field["metadata"]["delta.columnMapping.physicalName"] += suffix
            action["metaData"]["schemaString"] = json.dumps(schema)
    with open(first, "w") as log:
        log.write("".join(json.dumps(action) + "\n" for action in actions))


# --- the log, read independently of the code under test


def commit_actions(path: str, actions: list[dict]) -> int:
    """Write the next commit (fails if another writer took the version); returns it."""
    version = DeltaTable(path).version() + 1
    name = os.path.join(path, "_delta_log", f"{version:020d}.json")
    with open(name, "x") as log:
        log.write("".join(json.dumps(action) + "\n" for action in actions))
    return version


def _live_adds(path: str) -> dict[str, dict]:
    """The live add actions by unquoted relative path, from the JSON commits (in order)."""
    log = os.path.join(path, "_delta_log")
    live: dict[str, dict] = {}
    for name in sorted(n for n in os.listdir(log) if n.endswith(".json") and n[:20].isdigit()):
        with open(os.path.join(log, name)) as commit:
            actions = [json.loads(line) for line in commit if line.strip()]
        for action in actions:
            if "remove" in action:
                live.pop(urllib.parse.unquote(action["remove"]["path"]), None)
        for action in actions:
            if "add" in action:
                live[urllib.parse.unquote(action["add"]["path"])] = action["add"]
    return live


def _protocol_and_metadata(path: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    log = os.path.join(path, "_delta_log")
    for name in sorted(n for n in os.listdir(log) if n.endswith(".json") and n[:20].isdigit()):
        with open(os.path.join(log, name)) as commit:
            for line in commit:
                action = json.loads(line) if line.strip() else {}
                found.update({k: v for k, v in action.items() if k in ("protocol", "metaData")})
    return found


def write_in_files(
    path: str,
    data: pa.Table,
    files: int,
    configuration: dict[str, str] | None = None,
    partition_by: Sequence[str] = (),
) -> None:
    """`data` in `files` commits of one file (per partition) each, in order."""
    shutil.rmtree(path, ignore_errors=True)
    bounds = np.linspace(0, data.num_rows, files + 1).astype(int)
    for index, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        chunk = data.slice(start, stop - start)
        partitions = list(partition_by) or None
        if index == 0:
            write_deltalake(path, chunk, configuration=configuration, partition_by=partitions)
        else:
            write_deltalake(path, chunk, mode="append", partition_by=partitions)


# --- deletion vector encodings (Delta protocol, "Deletion Vector Format")


_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def z85(data: bytes) -> str:
    """Z85, zero-padding `data` to a multiple of 4 bytes (Delta's inline vectors)."""
    data += bytes(-len(data) % 4)
    text = []
    for start in range(0, len(data), 4):
        word = int.from_bytes(data[start : start + 4], "big")
        group = []
        for _ in range(5):
            word, digit = divmod(word, 85)
            group.append(_Z85[digit])
        text.extend(reversed(group))
    return "".join(text)


def roaring_payload(rows: np.ndarray, runs: bool = True) -> bytes:
    """Magic 1681511377, then the 64-bit RoaringBitmapArray of `rows` (little-endian)."""
    rows = np.unique(np.asarray(rows, dtype=np.uint64))
    highs = rows >> np.uint64(32)
    out = struct.pack("<Iq", 1681511377, len(np.unique(highs)))
    for high in np.unique(highs):
        low = (rows[highs == high] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        out += struct.pack("<I", int(high)) + portable_roaring32(low, runs)
    return out


def portable_roaring32(values: np.ndarray, runs: bool = True) -> bytes:
    """The portable serialization of a 32-bit roaring bitmap (RoaringFormatSpec).

    Each container takes the smallest of array (up to 4096 values), bitmap and, with `runs`,
    run encoding, as CRoaring's run optimization does.
    """
    keys = (values >> 16).astype(np.uint16)
    containers = [
        (int(key), (values[keys == key] & 0xFFFF).astype(np.uint16)) for key in np.unique(keys)
    ]
    encoded = [_container_bytes(low, runs) for _, low in containers]
    bodies = [body for body, _ in encoded]
    kinds = [kind for _, kind in encoded]
    count = len(containers)
    has_runs = "run" in kinds
    if has_runs:
        flags = np.packbits(np.array([kind == "run" for kind in kinds]), bitorder="little")
        header = struct.pack("<I", 12347 | (count - 1) << 16) + flags.tobytes()
    else:
        header = struct.pack("<II", 12346, count)
    header += b"".join(struct.pack("<HH", key, len(low) - 1) for key, low in containers)
    with_offsets = not has_runs or count >= 4
    start = len(header) + (4 * count if with_offsets else 0)
    offsets = np.cumsum([0, *map(len, bodies)])[:-1] + start
    if with_offsets:
        header += b"".join(struct.pack("<I", int(offset)) for offset in offsets)
    return header + b"".join(bodies)


def _container_bytes(low: np.ndarray, runs: bool) -> tuple[bytes, str]:
    breaks = np.flatnonzero(np.diff(low.astype(np.int64)) != 1) + 1
    starts = np.concatenate([[0], breaks]).astype(np.int64)
    stops = np.concatenate([breaks, [len(low)]]).astype(np.int64)
    run_size = 2 + 4 * len(starts)
    plain_size = 2 * len(low) if len(low) <= 4096 else 8192
    if runs and run_size < plain_size:
        pairs = np.stack([low[starts], (stops - starts - 1).astype(np.uint16)], axis=1)
        return struct.pack("<H", len(starts)) + pairs.astype("<u2").tobytes(), "run"
    if len(low) <= 4096:
        return low.astype("<u2").tobytes(), "array"
    bits = np.zeros(1 << 16, dtype=np.uint8)
    bits[low] = 1
    return np.packbits(bits, bitorder="little").tobytes(), "bitmap"

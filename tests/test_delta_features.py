"""Planning and reading Delta tables as Databricks writes them, file by file, without Spark.

Each kind of table is built by tests/delta_tables.py; `read_data_file` over `data_files` must
return what delta-rs' own scan returns (it honours deletion vectors and column mapping) and the
rows the test expects.
"""

import os
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.table import TableFeatures

from resources.delta_files import (
    TRANSACTION_RETENTION,
    DataFile,
    DeletionVector,
    DeletionVectorError,
    TableLayout,
    app_transaction_versions,
    data_files,
    dv_file_uri,
    needs_delta_aware_read,
    read_data_file,
    roaring_array_rows,
    table_filesystem,
    table_layout,
    z85_decode,
    z85_encode,
)
from tests import delta_tables
from tests.delta_tables import SILVER_SCHEMA, default_deleted, silver_ticks
from tests.servers import S3Server, moto_s3_server, s3_client, s3_environment

ORDER = [("event_time", "ascending"), ("s", "ascending")]
BUCKET = "tickbeta-delta-files"
DV_FEATURE = {"delta.enableDeletionVectors": "true"}


def read_all(uri: str, columns: pa.Schema = SILVER_SCHEMA, predicate: str | None = None):
    """The table as the task side reads it: every planned file through `read_data_file`."""
    snapshot = DeltaTable(uri)
    layout = table_layout(snapshot, columns)
    files = table_filesystem(snapshot.table_uri, {})
    parts = [read_data_file(layout, file, files) for file in data_files(snapshot, predicate)]
    return pa.concat_tables(parts) if parts else columns.empty_table()


def delta_rs_scan(uri: str, columns: pa.Schema = SILVER_SCHEMA) -> pa.Table:
    return pa.table(DeltaTable(uri).scan(columns=columns.names).read_all()).cast(columns)


def delta_rs_scan_s3(uri: str, options: dict[str, str]) -> pa.Table:
    scan = DeltaTable(uri, storage_options=options).scan(columns=SILVER_SCHEMA.names)
    return pa.table(scan.read_all()).cast(SILVER_SCHEMA)


def assert_same_rows(got: pa.Table, expected: pa.Table) -> None:
    assert got.schema == expected.schema
    assert got.num_rows == expected.num_rows
    assert got.sort_by(ORDER).equals(expected.sort_by(ORDER))


@pytest.fixture
def ticks() -> pa.Table:
    return silver_ticks(3000)


# --- the codecs, against the Delta protocol's own examples


def test_z85_matches_the_zeromq_example_and_round_trips():
    hello = bytes([0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B])
    assert z85_encode(hello) == "HelloWorld" == delta_tables.z85(hello)
    assert z85_decode("HelloWorld") == hello
    payload = bytes(range(37))
    assert z85_decode(z85_encode(payload))[:37] == payload


def test_protocol_examples_decode():
    inline = z85_decode("wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L")[:40]
    assert roaring_array_rows(inline).tolist() == [3, 4, 7, 11, 18, 29]
    on_disk = DeletionVector("u", "ab^-aqEH.-t@S}K{vb[*k^", 4, 40, 6)
    assert dv_file_uri("s3://mytable/", on_disk) == (
        "s3://mytable/ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin"
    )
    absolute = DeletionVector("p", "s3://other/dv%20x.bin", 4, 40, 6)
    assert dv_file_uri("s3://mytable", absolute) == "s3://other/dv x.bin"


@pytest.mark.parametrize(
    ("rows", "largest_payload"),
    [
        (np.array([], np.int64), 12),
        (np.array([0, 5, 4096, 65535]), 100),  # one array container
        (np.arange(0, 20_000, 3), 8300),  # 6667 values in one container: bitmap
        (np.arange(10, 60_000), 40),  # one run
        (np.r_[np.arange(0, 70_000, 2), 200_000, np.arange(300_000, 310_000)], 30_000),
        (np.array([1, 2**32 + 7, 3 * 2**32 + 2**20]), 200),  # several 32-bit bitmaps
    ],
    ids=["empty", "array", "bitmap", "run", "several-containers", "high-keys"],
)
@pytest.mark.parametrize("runs", [True, False], ids=["run-cookie", "no-run-cookie"])
def test_roaring_containers_decode(rows, largest_payload, runs):
    payload = delta_tables.roaring_payload(rows, runs=runs)
    if runs:
        assert len(payload) <= largest_payload
    assert roaring_array_rows(payload).tolist() == np.unique(rows).tolist()


def test_four_or_more_run_containers_carry_offsets():
    rows = np.concatenate([np.arange(key << 16, (key << 16) + 100) for key in range(5)])
    payload = delta_tables.roaring_payload(rows)
    cookie = int.from_bytes(payload[16:20], "little")
    assert cookie & 0xFFFF == 12347 and (cookie >> 16) + 1 == 5
    assert roaring_array_rows(payload).tolist() == rows.tolist()


# --- plain, partitioned, timestampNtz


def test_plain_table_is_plain_parquet(tmp_path, ticks):
    built = delta_tables.plain_table(str(tmp_path / "t"), ticks, files=3)
    snapshot = DeltaTable(built.uri)
    assert not needs_delta_aware_read(snapshot)
    files = data_files(snapshot, None)
    assert sorted(f.uri for f in files) == sorted(snapshot.file_uris())
    assert all(f.deletion_vector is None and f.partition_values == {} for f in files)
    assert all(f.size_bytes == os.path.getsize(f.uri) for f in files)
    assert_same_rows(read_all(built.uri), built.rows)


def test_pruning_predicate_selects_what_delta_rs_selects(tmp_path, ticks):
    built = delta_tables.plain_table(str(tmp_path / "t"), ticks, files=3)
    snapshot = DeltaTable(built.uri)
    late = "event_time >= '2026-01-02T14:40:00+00:00'"
    chosen = data_files(snapshot, late)
    assert [f.uri for f in chosen] == snapshot.file_uris(file_pruning_predicate=late)
    assert 0 < len(chosen) < 3


def test_partition_columns_are_filled_from_partition_values(tmp_path, ticks):
    with_null = ticks.set_column(0, "s", pc.if_else(pc.equal(ticks["s"], "BBB"), None, ticks["s"]))
    built = delta_tables.partitioned_table(str(tmp_path / "t"), with_null, by=["s"])
    snapshot = DeltaTable(built.uri)
    assert not needs_delta_aware_read(snapshot)
    values = sorted((f.partition_values["s"] or "") for f in data_files(snapshot, None))
    assert values == ["", "AAA", "SPY"]
    got = read_all(built.uri)
    assert got.column("s").null_count == with_null.column("s").null_count > 0
    assert_same_rows(got, with_null)


def test_typed_partition_values_are_cast_to_the_wanted_type(tmp_path, ticks):
    hours = pc.floor_temporal(ticks["event_time"], unit="hour")
    data = ticks.append_column("hour", hours).append_column(
        "bucket", pa.array(np.arange(ticks.num_rows) % 2, pa.int32())
    )
    built = delta_tables.partitioned_table(str(tmp_path / "t"), data, by=["hour", "bucket"])
    assert_same_rows(read_all(built.uri, data.schema), data)


def test_timestamp_ntz_reads_naive_or_as_utc(tmp_path, ticks):
    built = delta_tables.timestamp_ntz_table(str(tmp_path / "t"), ticks)
    snapshot = DeltaTable(built.uri)
    assert "timestampNtz" in snapshot.protocol().reader_features
    assert not needs_delta_aware_read(snapshot)
    assert_same_rows(read_all(built.uri, built.rows.schema), built.rows)
    assert_same_rows(read_all(built.uri, SILVER_SCHEMA), ticks)  # naive wall time taken as UTC


# --- deletion vectors


def test_inline_deletion_vectors_drop_their_rows(tmp_path, ticks):
    built = delta_tables.deletion_vector_table(str(tmp_path / "t"), ticks, storage="inline")
    snapshot = DeltaTable(built.uri)
    files = data_files(snapshot, None)
    assert all(f.deletion_vector and f.deletion_vector.storage_type == "i" for f in files)
    assert needs_delta_aware_read(snapshot)
    got = read_all(built.uri)
    assert got.num_rows < ticks.num_rows
    assert_same_rows(got, built.rows)
    assert_same_rows(got, delta_rs_scan(built.uri))


def test_deletion_vectors_match_delta_rs_own_masks(tmp_path, ticks):
    built = delta_tables.deletion_vector_table(str(tmp_path / "t"), ticks, storage="file")
    snapshot = DeltaTable(built.uri)
    masks = {
        row["filepath"].removeprefix("file://"): row["selection_vector"]
        for batch in snapshot.deletion_vectors()
        for row in pa.record_batch(batch).to_pylist()
    }
    for file in data_files(snapshot, None):
        assert file.deletion_vector.cardinality == masks[file.uri].count(False)


def test_deletion_vector_containers_in_one_file_on_disk(tmp_path):
    """Two files share one DV file (offsets, CRCs); one vector has a bitmap container with
    6,000 deleted rows, a run container and an array container, over three containers."""
    ticks = silver_ticks(300_000, seed=3)
    big = np.r_[np.arange(0, 18_000, 3), np.arange(70_000, 90_000), [140_000, 140_007]]
    small = np.arange(5, 200, 5)
    chosen = iter([big, small])
    built = delta_tables.deletion_vector_table(
        str(tmp_path / "t"), ticks, storage="file", deleted=lambda rows: next(chosen)
    )
    files = data_files(DeltaTable(built.uri), None)
    vectors = [f.deletion_vector for f in files]
    assert {v.storage_type for v in vectors} == {"u"}
    assert len({v.path_or_inline_dv for v in vectors}) == 1
    assert sorted(v.offset for v in vectors)[0] == 1
    assert sorted(v.cardinality for v in vectors) == [len(small), len(big)]
    got = read_all(built.uri)
    assert got.num_rows == ticks.num_rows - len(big) - len(small)
    assert_same_rows(got, built.rows)
    assert_same_rows(got, delta_rs_scan(built.uri))


def test_partitioned_table_with_deletion_vectors(tmp_path, ticks):
    built = delta_tables.deletion_vector_table(
        str(tmp_path / "t"), ticks, storage="file", partition_by=["s"]
    )
    assert_same_rows(read_all(built.uri), built.rows)
    assert_same_rows(read_all(built.uri), delta_rs_scan(built.uri))
    symbols = read_all(built.uri, pa.schema([SILVER_SCHEMA.field("s")]))  # no stored column
    assert symbols.column("s").value_counts() == built.rows.column("s").value_counts()


def escaped_partitions_table(path: str, ticks: pa.Table) -> delta_tables.BuiltTable:
    """Partitioned by an hour and a text with characters paths escape; DVs on disk."""
    hours = pc.floor_temporal(ticks["event_time"], unit="hour")
    tags = pa.array(["a b/c%"] * ticks.num_rows)
    data = ticks.append_column("hour", hours).append_column("tag", tags)
    return delta_tables.deletion_vector_table(
        path, data, storage="file", partition_by=["hour", "tag"]
    )


def test_table_in_a_folder_with_spaces_and_escaped_partition_values(tmp_path, ticks):
    built = escaped_partitions_table(str(tmp_path / "my lake" / "t"), ticks)
    snapshot = DeltaTable(built.uri)
    files = data_files(snapshot, None)
    assert all(os.path.exists(f.uri) for f in files)  # file_uris keeps the root's "%20"
    assert {f.partition_values["tag"] for f in files} == {"a b/c%"}
    got = read_all(built.uri, built.rows.schema)
    assert_same_rows(got, built.rows)
    assert_same_rows(got.select(SILVER_SCHEMA.names), delta_rs_scan(built.uri))


def test_deletion_vectors_survive_checkpoints_and_a_later_delete(tmp_path, ticks):
    path = str(tmp_path / "t")
    delta_tables.deletion_vector_table(path, ticks, files=2, storage="inline")
    snapshot = DeltaTable(path)
    snapshot.create_checkpoint()  # classic parquet checkpoint holding the deletionVector structs
    delta_tables.drop_commits_before(path, snapshot.version())
    # A later DELETE replaces the first file's vector: its remove must cancel the old one.
    (first, first_rows), (second, second_rows) = delta_tables.file_row_counts(path).items()
    deleted = {first: np.arange(0, first_rows, 2), second: default_deleted(second_rows)}
    delta_tables.delete_rows(path, {first: deleted[first]}, storage="file")
    files = data_files(DeltaTable(path), None)
    assert sorted(f.deletion_vector.storage_type for f in files) == ["i", "u"]
    got = read_all(path)
    assert_same_rows(got, delta_tables.surviving_rows(path, ticks, deleted))
    assert_same_rows(got, delta_rs_scan(path))


def test_multi_part_checkpoint_and_an_incomplete_one_after_it(tmp_path, ticks):
    path = str(tmp_path / "t")
    built = delta_tables.deletion_vector_table(path, ticks, files=3, storage="file")
    version = delta_tables.split_checkpoint(path, parts=2)
    delta_tables.drop_commits_before(path, version)
    # A later writer died after writing the first (here: empty) part of two.
    log = os.path.join(path, "_delta_log")
    part = pq.read_table(
        os.path.join(log, f"{version:020d}.checkpoint.0000000001.0000000002.parquet")
    )
    stray = f"{version + 1:020d}.checkpoint.0000000001.0000000002.parquet"
    pq.write_table(part.schema.empty_table(), os.path.join(log, stray))
    delta_tables.delete_rows(path, {}, storage="inline")  # version + 1, changing nothing
    files = data_files(DeltaTable(path), None)
    assert len(files) == 3 and all(f.deletion_vector for f in files)
    assert_same_rows(read_all(path), built.rows)
    assert_same_rows(read_all(path), delta_rs_scan(path))


# --- app transactions (the silver version each hour of a derived table was computed from)

APPS = ["a", "b", "c", "never-written"]


def write_with_transactions(path: str, ticks: pa.Table, versions: dict[str, int]) -> None:
    transactions = [Transaction(app, version) for app, version in versions.items()]
    write_deltalake(
        path,
        ticks.slice(0, 10),
        mode="append",
        commit_properties=CommitProperties(app_transactions=transactions),
    )


def delta_rs_versions(path: str) -> dict[str, int | None]:
    snapshot = DeltaTable(path)
    return {app: snapshot.transaction_version(app) for app in APPS}


@pytest.mark.parametrize("checkpoint", ["none", "classic", "multi-part", "v2"])
def test_app_transactions_replayed_once_equal_delta_rs_lookups(tmp_path, ticks, checkpoint):
    path = str(tmp_path / "t")
    write_with_transactions(path, ticks, {"a": 1, "b": 2})
    write_with_transactions(path, ticks, {"a": 3})
    if checkpoint == "classic":
        DeltaTable(path).create_checkpoint()
    elif checkpoint == "multi-part":
        delta_tables.split_checkpoint(path, parts=2)
    elif checkpoint == "v2":  # the transactions in its top-level file, the adds in sidecars
        DeltaTable(path).alter.add_feature(
            [TableFeatures.V2Checkpoint], allow_protocol_versions_increase=True
        )
        delta_tables.write_v2_checkpoint(path)
    before_later_writes = DeltaTable(path).version()
    if checkpoint != "none":  # the checkpoint alone holds a=3 and b=2 now
        delta_tables.drop_commits_before(path, before_later_writes)
    write_with_transactions(path, ticks, {"b": 5, "c": 1})
    write_with_transactions(path, ticks, {})
    got = app_transaction_versions(DeltaTable(path), APPS)
    assert got == {"a": 3, "b": 5, "c": 1, "never-written": None}
    assert got == delta_rs_versions(path)
    # An older snapshot answers as of its own version.
    older = DeltaTable(path, version=before_later_writes)
    assert app_transaction_versions(older, ["b", "c"]) == {"b": 2, "c": None}


def test_app_transactions_of_a_table_that_expires_them_are_delta_rs_answers(tmp_path, ticks):
    path = str(tmp_path / "t")
    write_deltalake(
        path, ticks.slice(0, 10), configuration={TRANSACTION_RETENTION: "interval 1 days"}
    )
    write_with_transactions(path, ticks, {"a": 7})
    # A transaction last updated in 1970: expired, though the log still holds it.
    delta_tables.commit_actions(
        path,
        [
            {"txn": {"appId": "b", "version": 3, "lastUpdated": 1000}},
            {"commitInfo": {"operation": "WRITE"}},
        ],
    )
    got = app_transaction_versions(DeltaTable(path), APPS)
    assert got == delta_rs_versions(path)
    assert got["a"] == 7 and got["b"] is None


def test_corrupt_deletion_vectors_fail_naming_table_and_file(tmp_path, ticks):
    built = delta_tables.deletion_vector_table(str(tmp_path / "t"), ticks, files=1, storage="file")
    snapshot = DeltaTable(built.uri)
    layout = table_layout(snapshot, SILVER_SCHEMA)
    files = table_filesystem(snapshot.table_uri, {})
    (file,) = data_files(snapshot, None)
    vector = file.deletion_vector
    dv_path = dv_file_uri(snapshot.table_uri, vector)

    def fails(bad: DataFile, reason: str) -> None:
        with pytest.raises(DeletionVectorError, match=reason) as raised:
            read_data_file(layout, bad, files)
        assert file.uri in str(raised.value) and built.uri in str(raised.value)

    fails(_with_vector(file, cardinality=vector.cardinality + 1), "descriptor says")
    inline = delta_tables.inline_dv(np.array([1, 2, 3]))
    bad_magic = z85_encode(b"\0\0\0\0" + z85_decode(inline["pathOrInlineDv"])[4:])
    fails(_with_vector(file, "i", bad_magic, None, inline["sizeInBytes"], 3), "bad magic")
    with open(dv_path, "r+b") as dv_file:  # flip one byte of the payload
        dv_file.seek(vector.offset + 4 + vector.size_in_bytes // 2)
        byte = dv_file.read(1)
        dv_file.seek(-1, os.SEEK_CUR)
        dv_file.write(bytes([byte[0] ^ 0xFF]))
    fails(file, "bad checksum")


def _with_vector(file: DataFile, *fields, cardinality: int | None = None) -> DataFile:
    vector = file.deletion_vector
    if fields:
        vector = DeletionVector(*fields)
    if cardinality is not None:
        vector = DeletionVector(
            vector.storage_type,
            vector.path_or_inline_dv,
            vector.offset,
            vector.size_in_bytes,
            cardinality,
        )
    return DataFile(file.uri, file.size_bytes, file.partition_values, vector)


# --- column mapping


def test_name_mode_on_the_legacy_protocol_resolves_physical_names(tmp_path, ticks):
    built = delta_tables.column_mapping_table(str(tmp_path / "t"), ticks, mode="name")
    snapshot = DeltaTable(built.uri)
    protocol = snapshot.protocol()
    assert protocol.reader_features is None  # nothing in the feature list says "mapped"
    assert needs_delta_aware_read(snapshot)
    layout = table_layout(snapshot, SILVER_SCHEMA)
    assert all(layout.physical_names[name] != name for name in SILVER_SCHEMA.names)
    assert layout.field_ids == {}
    got = read_all(built.uri)
    assert all(got.column(name).null_count == 0 for name in got.column_names)
    assert_same_rows(got, ticks)
    assert_same_rows(got, delta_rs_scan(built.uri))


def test_id_mode_resolves_by_parquet_field_id(tmp_path, ticks):
    built = delta_tables.column_mapping_table(str(tmp_path / "t"), ticks, mode="id")
    assert needs_delta_aware_read(DeltaTable(built.uri))
    assert_same_rows(read_all(built.uri), ticks)
    # Physical names that no file holds: only the field ids still lead to the values.
    delta_tables.rename_physical_columns(built.uri)
    layout = table_layout(DeltaTable(built.uri), SILVER_SCHEMA)
    assert sorted(layout.field_ids.values()) == [1, 2, 3, 4]
    got = read_all(built.uri)
    assert all(got.column(name).null_count == 0 for name in got.column_names)
    assert_same_rows(got, ticks)


def test_name_mode_partition_values_are_keyed_by_logical_names(tmp_path, ticks):
    built = delta_tables.column_mapping_table(
        str(tmp_path / "t"), ticks, mode="name", partition_by=["s"]
    )
    files = data_files(DeltaTable(built.uri), None)
    assert sorted(f.partition_values["s"] for f in files) == ["AAA", "BBB", "SPY"]
    assert_same_rows(read_all(built.uri), ticks)


def test_a_column_the_table_lacks_fails_naming_it(tmp_path, ticks):
    built = delta_tables.plain_table(str(tmp_path / "t"), ticks)
    wanted = SILVER_SCHEMA.append(pa.field("volume", pa.int64()))
    with pytest.raises(KeyError, match="volume"):
        table_layout(DeltaTable(built.uri), wanted)


# --- v2 checkpoints, and the table Databricks makes by default


def test_v2_checkpoint_with_sidecars(tmp_path, ticks):
    built = delta_tables.v2_checkpoint_table(str(tmp_path / "t"), ticks)
    log = os.listdir(os.path.join(built.uri, "_delta_log"))
    assert any(".checkpoint." in name and name.endswith(".json") for name in log)
    assert "00000000000000000000.json" not in log
    snapshot = DeltaTable(built.uri)
    assert not needs_delta_aware_read(snapshot)  # v2 checkpoints change the log, not the files
    assert len(data_files(snapshot, None)) == 3
    assert_same_rows(read_all(built.uri), ticks)
    assert_same_rows(read_all(built.uri), delta_rs_scan(built.uri))


def test_databricks_default_table(tmp_path, ticks):
    """Reader 3 / writer 7 listing columnMapping, deletionVectors and v2Checkpoint."""
    built = delta_tables.databricks_table(str(tmp_path / "t"), ticks)
    snapshot = DeltaTable(built.uri)
    assert set(snapshot.protocol().reader_features) == {
        "columnMapping",
        "deletionVectors",
        "v2Checkpoint",
    }
    assert needs_delta_aware_read(snapshot)
    got = read_all(built.uri)
    assert got.num_rows < ticks.num_rows
    assert_same_rows(got, built.rows)
    assert_same_rows(got, delta_rs_scan(built.uri))


# --- which tables a plain parquet reader would get wrong


def _unknown_reader_feature(path: str, ticks: pa.Table) -> delta_tables.BuiltTable:
    built = delta_tables.plain_table(path, ticks)
    features = ["typeWidening"]  # files may hold narrower types than the schema
    delta_tables.rewrite_protocol(
        path,
        {
            "minReaderVersion": 3,
            "minWriterVersion": 7,
            "readerFeatures": features,
            "writerFeatures": features,
        },
    )
    return built


@pytest.mark.parametrize(
    ("build", "delta_aware"),
    [
        (delta_tables.plain_table, False),
        (delta_tables.partitioned_table, False),
        (delta_tables.timestamp_ntz_table, False),
        (delta_tables.v2_checkpoint_table, False),
        (lambda path, data: delta_tables.write_in_files(path, data, 1, DV_FEATURE), False),
        (delta_tables.deletion_vector_table, True),
        (delta_tables.column_mapping_table, True),
        (lambda path, data: delta_tables.column_mapping_table(path, data, mode="id"), True),
        (delta_tables.databricks_table, True),
        (_unknown_reader_feature, True),
    ],
    ids=[
        "plain",
        "partitioned",
        "timestamp-ntz",
        "v2-checkpoint",
        "dv-feature-no-vectors",
        "deletion-vectors",
        "name-mode-legacy",
        "id-mode-legacy",
        "databricks",
        "unknown-reader-feature",
    ],
)
def test_needs_delta_aware_read_by_kind(tmp_path, ticks, build, delta_aware):
    path = str(tmp_path / "t")
    build(path, ticks)
    assert needs_delta_aware_read(DeltaTable(path)) is delta_aware


# --- what the Spark side ships


def test_plan_pieces_are_small_and_picklable(tmp_path, ticks):
    built = delta_tables.databricks_table(str(tmp_path / "t"), ticks)
    snapshot = DeltaTable(built.uri)
    layout = table_layout(snapshot, SILVER_SCHEMA)
    files = data_files(snapshot, None)
    assert pickle.loads(pickle.dumps(layout)) == layout
    assert pickle.loads(pickle.dumps(files)) == files
    assert isinstance(layout, TableLayout)
    assert all(len(pickle.dumps(file)) < 2000 for file in files)


# --- a lake on S3 (moto): planned with the run's options, read with the task's environment


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> S3Server:
    with moto_s3_server(BUCKET, tmp_path_factory.mktemp("moto")) as server:
        yield server


def upload_table(s3: S3Server, local: str, prefix: str) -> str:
    client = s3_client(s3.endpoint)
    for folder, _, names in os.walk(local):
        for name in names:
            path = os.path.join(folder, name)
            client.upload_file(path, BUCKET, f"{prefix}/{os.path.relpath(path, local)}")
    return f"s3://{BUCKET}/{prefix}"


def test_s3_table_is_planned_and_read_through_delta_rs_storage(s3, tmp_path, ticks, monkeypatch):
    tables = {
        "databricks": delta_tables.databricks_table(str(tmp_path / "d"), ticks),
        "odd names/dv": escaped_partitions_table(str(tmp_path / "e"), ticks),
    }
    environment = s3_environment(s3)
    for name in environment:  # the run passes options; nothing comes from its environment
        monkeypatch.delenv(name, raising=False)
    for prefix, built in tables.items():
        uri = upload_table(s3, built.uri, prefix)
        snapshot = DeltaTable(uri, storage_options=environment)
        layout = table_layout(snapshot, built.rows.schema)
        files = data_files(snapshot, None)
        assert files and all(f.deletion_vector for f in files)
        with monkeypatch.context() as task:  # a task with credentials in its environment only
            for name, value in environment.items():
                task.setenv(name, value)
            filesystem = table_filesystem(layout.table_uri, {})
            got = pa.concat_tables(read_data_file(layout, f, filesystem) for f in files)
        assert_same_rows(got, built.rows)
        if " " not in prefix:  # delta-rs 1.6.6 escapes the space twice in a DV's path on S3
            assert_same_rows(got, delta_rs_scan_s3(uri, environment))

"""The Delta lake: where tables live, how to open them, and partition-exact atomic writes.

Reads and writes go through delta-rs (`deltalake`), which needs no JVM jars. Credentials come
from the environment (Dagster `EnvVar`) and only ever reach delta-rs' storage options: they
are not logged, not returned in metadata and not part of any error message raised here.
"""

import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
from dagster import ConfigurableResource
from dagster_deltalake import LocalConfig, S3Config
from dagster_deltalake.config import ClientConfig
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import Transaction
from pydantic import Field, PrivateAttr

from resources.delta_files import column_bounds

# A writer that loses a commit race redoes its commit, up to this many attempts in all.
COMMIT_ATTEMPTS = 6

# delta-rs storage options that are credentials: they stay in this process unless a lake is told
# to ship them to Spark's tasks.
SECRET_STORAGE_OPTIONS = frozenset(
    {"access_key_id", "secret_access_key", "token", "session_token", "aws_session_token"}
)


@dataclass(frozen=True)
class FileSelection:
    """The data files of a snapshot that a read touches, against the whole snapshot."""

    uris: list[str]
    predicate: str | None  # the SQL pruning predicate that chose them (None: all files)
    bytes: int
    total_files: int
    total_bytes: int


class DeltaLake(ConfigurableResource):
    """A folder (local path or s3://bucket/prefix) holding the project's Delta tables."""

    root: str = Field(description="Lake root: a local folder or s3://bucket/prefix.")
    storage: LocalConfig | S3Config = Field(
        default_factory=LocalConfig,
        discriminator="provider",
        description="delta-rs storage options; set secrets with EnvVar, never literally.",
    )
    client: ClientConfig | None = Field(
        default=None, description="HTTP client options for object stores (allow_http, ...)."
    )
    ship_credentials: bool = Field(
        default=False,
        description="Give Spark's tasks this lake's object-store credentials. Off (the "
        "default): executors use their own environment (instance profile, AWS_* variables on "
        "the nodes), as on a real cluster.",
    )
    _pins: dict[str, DeltaTable] = PrivateAttr(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    def uri(self, table: str) -> str:
        if self.is_local:
            return os.path.abspath(os.path.join(self.root.removeprefix("file://"), table))
        return f"{self.root.rstrip('/')}/{table}"

    def storage_options(self) -> dict[str, str]:
        options = {} if self.is_local else self.storage.str_dict()
        options.pop("provider", None)
        if self.client is not None:
            options.update(self.client.str_dict())
        return options

    def task_storage_options(self) -> dict[str, str]:
        """The storage options Spark's tasks open files with: without credentials unless
        `ship_credentials` is set (they then travel inside the tasks' serialized closure, which
        Spark neither logs nor shows)."""
        options = self.storage_options()
        if self.ship_credentials:
            return options
        return {key: value for key, value in options.items() if key not in SECRET_STORAGE_OPTIONS}

    def open(self, table: str, version: int | None = None) -> DeltaTable | None:
        """The table at `version` (latest when None), or None when it does not exist yet."""
        try:
            return DeltaTable(
                self.uri(table), version=version, storage_options=self.storage_options()
            )
        except TableNotFoundError:
            return None

    def require(self, table: str, version: int | None = None) -> DeltaTable:
        snapshot = self.open(table, version)
        if snapshot is None:
            raise FileNotFoundError(f"Delta table {self.uri(table)} does not exist")
        return snapshot

    def pinned(self, table: str, version: int | None = None) -> DeltaTable:
        """The table at the version this resource first saw (or `version`), for a whole run.

        Every step of a run then reads the same snapshot, even while a feed keeps appending.
        """
        # The snapshot itself is kept: opening a table replays its log (tens of ms for a feed's
        # hundreds of small commits), and every step of a run asks for it.
        if table not in self._pins:
            self._pins[table] = self.require(table, version)
        return self._pins[table]

    def files_overlapping(
        self, snapshot: DeltaTable, column: str | None, start: datetime, end: datetime
    ) -> FileSelection:
        """Files whose min/max statistics of `column` may hold values in [start, end).

        With no column, every file of the snapshot.
        """
        actions = pa.table(snapshot.get_add_actions(flatten=True))
        sizes = actions.column("size_bytes").to_pylist()
        predicate = (
            f"{column} >= '{start.isoformat()}' AND {column} < '{end.isoformat()}'"
            if column
            else None
        )
        uris = snapshot.file_uris(file_pruning_predicate=predicate)
        wanted = {os.path.basename(uri) for uri in uris}
        paths = actions.column("path").to_pylist()
        chosen_bytes = sum(
            s for p, s in zip(paths, sizes, strict=True) if os.path.basename(p) in wanted
        )
        return FileSelection(uris, predicate, chosen_bytes, len(paths), sum(sizes))

    def column_range(self, snapshot: DeltaTable, column: str) -> tuple[Any, Any]:
        """(min, max) of a column from the snapshot's file statistics; None where unknown."""
        return column_bounds(snapshot, column)

    def replace_partitions(
        self,
        table: str,
        data: pa.Table,
        partition_column: str,
        partition_values: Sequence[str],
        commit_metadata: dict[str, Any] | None = None,
        app_versions: Mapping[str, int] | None = None,
    ) -> int:
        """Atomically replace exactly the given partitions with `data`; returns the new version.

        One Delta commit removes every file of those partitions and adds the new ones, so a
        reader sees the old partitions or the new ones, never both and never neither. A
        commit that loses a race with another writer of the same partitions is redone on the
        new snapshot (replacing is idempotent). `app_versions` are recorded as Delta app
        transactions (app id -> version) in the same commit.
        """
        if not partition_values:  # nothing to replace: no commit
            snapshot = self.open(table)
            return snapshot.version() if snapshot is not None else -1
        values = ", ".join(f"'{value}'" for value in partition_values)
        transactions = [Transaction(app, version) for app, version in (app_versions or {}).items()]
        properties = CommitProperties(
            custom_metadata=commit_metadata, app_transactions=transactions
        )
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                write_deltalake(
                    self.uri(table),
                    data,
                    mode="overwrite",
                    partition_by=[partition_column],
                    predicate=f"{partition_column} IN ({values})",
                    storage_options=self.storage_options(),
                    commit_properties=properties,
                )
                return self.require(table).version()
            except CommitFailedError:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0.5, 1.5) * 0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def insert_missing(
        self, table: str, data: pa.Table, key: str, commit_metadata: dict[str, Any] | None = None
    ) -> None:
        """Add the rows of `data` whose `key` the table does not hold yet (idempotent)."""
        self.require(table).merge(
            source=data,
            predicate=f"target.{key} = source.{key}",
            source_alias="source",
            target_alias="target",
            commit_properties=CommitProperties(custom_metadata=commit_metadata),
        ).when_not_matched_insert_all().execute()

    def append(
        self,
        table: str,
        data: pa.Table,
        commit_metadata: dict[str, Any] | None = None,
        target_file_size: int | None = None,
    ) -> int:
        write_deltalake(
            self.uri(table),
            data,
            mode="append",
            storage_options=self.storage_options(),
            commit_properties=CommitProperties(custom_metadata=commit_metadata),
            target_file_size=target_file_size,
        )
        return self.require(table).version()

    def overwrite(self, table: str, data: pa.Table) -> int:
        write_deltalake(
            self.uri(table),
            data,
            mode="overwrite",
            schema_mode="overwrite",
            storage_options=self.storage_options(),
        )
        return self.require(table).version()

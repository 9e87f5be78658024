"""joined_returns' buckets in local mode, from silver's files read by the Python tasks.

The Spark path (`metrics.bucket_sums`) types the ticks in the JVM, shuffles them by symbol and
converts them to Arrow for the Python workers: on a 2-core machine, in a scratch session, a
pass-through `mapInArrow` after the shuffle of 11.7M ticks cost about 4 s more than the
shuffle alone, of a 10-13 s step. Here one task per core reads the files itself with pyarrow
(deletion vectors and column mapping applied as in `storage.read_in_tasks`), keeps the
symbols of its share, types them in Arrow and runs the same numpy kernel: no shuffle and no
JVM-to-Arrow conversion, at the cost of every task reading the range. That is cheap on one
machine's disk and cores, not on a cluster, so only local mode takes it.

Typing in Arrow gives what `metrics.typed_ticks` gives only where both engines agree exactly:
numeric price and change and a timestamp event time (no text to parse), no noise (its hash
is Spark's), and ASCII symbols. Python 3.11 upper-cases 55 characters differently from Spark
4.3's ICU (a newer Unicode), so a task that meets a non-ASCII symbol says so and the step
takes the Spark path instead.
"""

import functools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow.fs import FileSystem
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from beta_assets.band import (
    BUCKET_SCHEMA,
    UTC_MICROS,
    Geometry,
    MarketSeries,
    epoch_micros,
    epoch_us,
)
from beta_assets.band import bucket_sums as bucket_sums_of
from beta_assets.settings import CHANGE, EVENT_TIME, PRICE, SYMBOL
from beta_assets.symbols import SYMBOL_BLANKS, normalised_symbol
from resources.delta_files import DataFile, TableLayout, read_data_file, table_filesystem


@dataclass(frozen=True)
class FileRead:
    """What every task reads: the files of the range, the table's layout, storage options."""

    layout: TableLayout
    files: list[DataFile]
    storage_options: dict[str, str]


# The kernel takes a share's ticks in parts of whole symbols of about this much parquet
# (some 250k ticks). Its arrays are then a few MB, which it makes and scans several times
# faster than arrays of millions of ticks (the CPU's caches, and memory malloc reuses instead
# of fresh pages, we think; not isolated). One share (5.8M ticks) of the 500-symbol day on one
# core: 1.7-3.8 s in one part, 0.7 s in 24 (`bench/kernel_parts.py`).
PART_BYTES = 3 * 1024 * 1024


def batches_of_files(files: list[DataFile]) -> Iterator[list[DataFile]]:
    """Consecutive files in batches of at least PART_BYTES (but the last): small files, which a
    live feed's table holds by the hundred, are typed together (a file's fixed cost in Arrow and
    numpy calls is about 0.5 ms); large ones go alone, their arrays already large."""
    batch: list[DataFile] = []
    size = 0
    for file in files:
        batch.append(file)
        size += file.size_bytes
        if size >= PART_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def read_files(layout: TableLayout, files: list[DataFile], filesystem: FileSystem) -> pa.Table:
    return pa.concat_tables(read_data_file(layout, file, filesystem) for file in files)


@dataclass(frozen=True)
class Shares:
    """Tasks (one per core: each reads every file once) and the parts of each for the kernel."""

    tasks: int
    parts: int

    @classmethod
    def of(cls, read: FileRead, cores: int) -> "Shares":
        tasks = max(1, cores)
        total = sum(file.size_bytes for file in read.files)
        return cls(tasks, max(1, -(-total // (PART_BYTES * tasks))))


def typable_in_arrow(schema: pa.Schema) -> bool:
    """Whether Arrow types silver's columns of `schema` exactly as Spark does."""

    def numeric(kind: pa.DataType) -> bool:
        return pa.types.is_floating(kind) or pa.types.is_integer(kind)

    # Delta timestamps are microseconds (with or without a zone); a date or text is parsed.
    return (
        numeric(schema.field(PRICE).type)
        and numeric(schema.field(CHANGE).type)
        and pa.types.is_timestamp(schema.field(EVENT_TIME).type)
    )


# A task's answer when its share holds a symbol Arrow cannot upper-case as Spark does: one row
# with no symbol (buckets always have one).
def _spark_typing_needed() -> pa.RecordBatch:
    row = {name: [None] for name in BUCKET_SCHEMA.names}
    return pa.RecordBatch.from_pydict(row, schema=BUCKET_SCHEMA)


def needs_spark_typing(buckets: pa.Table) -> bool:
    return buckets.column(SYMBOL).null_count > 0


def bucket_sums_from_files(
    spark: SparkSession,
    read: FileRead,
    market: MarketSeries,
    geometry: Geometry,
    market_symbol: str,
    ticks_span: tuple[datetime, datetime],
    shares: Shares,
) -> DataFrame:
    """joined_returns rows of the valid ticker ticks in [first, end) of the files, from tasks
    that each read every file and keep the symbols of their share, in parts.

    Collected, the rows either are the buckets, or (`needs_spark_typing`) say that silver holds
    a symbol that only Spark upper-cases right.
    """
    first_us, end_us = (epoch_us(moment) for moment in ticks_span)

    def buckets_of_share(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        filesystem = table_filesystem(read.layout.table_uri, read.storage_options)
        for batch in batches:
            for share in batch.column(0).to_pylist():
                scope = _Scope(share, shares, market_symbol, first_us, end_us)
                try:
                    parts_per_batch = [
                        _valid_ticker_ticks(read_files(read.layout, files, filesystem), scope)
                        for files in batches_of_files(read.files)
                    ]
                except NotAscii:
                    yield _spark_typing_needed()
                    return
                for part in zip(*parts_per_batch, strict=True):
                    ticks = pa.concat_tables(part)
                    if ticks.num_rows:
                        yield bucket_sums_of(ticks, market, geometry)

    tasks = spark.range(0, shares.tasks, 1, numPartitions=shares.tasks)
    return tasks.mapInArrow(buckets_of_share, from_arrow_schema(BUCKET_SCHEMA))


@dataclass(frozen=True)
class _Scope:
    share: int
    shares: Shares
    market_symbol: str
    first_us: int
    end_us: int

    def part_of(self, name: str | None) -> int:
        """The part of this share that holds the symbol's ticks; -1 if another share does."""
        if name is None or name == self.market_symbol:
            return -1
        code = _symbol_hash(name)
        if code % self.shares.tasks != self.share:
            return -1
        return code // self.shares.tasks % self.shares.parts


class NotAscii(Exception):
    """Silver holds a symbol that Python and Spark upper-case differently."""


def _valid_ticker_ticks(rows: pa.Table, scope: _Scope) -> list[pa.Table]:
    """The rows of `scope`'s symbols (not the market) that `metrics.typed_ticks` finds valid,
    in [first, end): symbol, price, change, event time in the Spark path's types; one table
    per part of the share."""
    names, codes = spark_symbol_codes(rows.column(SYMBOL))
    # 16-bit part numbers where they fit: numpy's stable sort of them is a radix sort.
    small = scope.shares.parts < 2**15
    part_of_name = np.array(
        [scope.part_of(name) for name in names] + [-1], dtype=np.int16 if small else np.int64
    )
    parts = part_of_name[codes]
    mine = parts >= 0
    rows, codes, parts = rows.filter(pa.array(mine)), codes[mine], parts[mine]
    price = rows.column(PRICE).cast(pa.float64())
    change = rows.column(CHANGE).cast(pa.float64())
    times = rows.column(EVENT_TIME).cast(UTC_MICROS)
    micros = epoch_micros(pc.fill_null(times, 0))
    timeless = np.asarray(pc.is_null(times).to_numpy(zero_copy_only=False), dtype=bool)
    blank = np.zeros(len(micros), dtype=bool)  # the share holds named symbols only
    valid = (
        (reason_codes(blank, timeless, price, change) == 0)
        & (micros >= scope.first_us)
        & (micros < scope.end_us)
    )
    # The valid rows grouped by part (a stable sort keeps each symbol's rows in file order).
    kept = np.flatnonzero(valid)
    kept = kept[np.argsort(parts[kept], kind="stable")]
    ticks = pa.table(
        {
            SYMBOL: _symbol_column(names, codes[kept]),
            PRICE: pc.take(price, kept),
            CHANGE: pc.take(change, kept),
            EVENT_TIME: pc.take(times, kept),
        }
    )
    bounds = np.searchsorted(parts[kept], np.arange(scope.shares.parts + 1))
    return [ticks.slice(low, high - low) for low, high in zip(bounds[:-1], bounds[1:], strict=True)]


def _symbol_column(names: list[str | None], codes: np.ndarray) -> pa.DictionaryArray:
    """The symbols `codes` index in `names`, dictionary-encoded: the kernel encodes them anyway,
    and no string is copied per tick. The dictionary holds each name once and no null (two
    spellings can name one symbol), so that the files' dictionaries unify when combined."""
    spelled = pa.array(names, pa.string())
    distinct = pc.unique(spelled.drop_null())
    index = pc.index_in(spelled, value_set=distinct).fill_null(-1).to_numpy(zero_copy_only=False)
    return pa.DictionaryArray.from_arrays(pa.array(index[codes], pa.int32()), distinct)


def spark_symbol_codes(symbols: pa.ChunkedArray) -> tuple[list[str | None], np.ndarray]:
    """(the distinct symbols as Spark types them, each row's index into them): a null symbol
    indexes one past the end. Raises NotAscii for a symbol only Spark upper-cases right."""
    # One array first: the chunks of an encoded chunked array may not share one dictionary.
    raw = pc.dictionary_encode(symbols.cast(pa.string()).combine_chunks())
    names = [_spark_symbol(value) for value in raw.dictionary.to_pylist()]
    return names, pc.fill_null(raw.indices, len(names)).to_numpy(zero_copy_only=False)


# Typed once per name in a task: a live feed's table holds hundreds of small files, each
# naming every symbol again (500 x 66 files typed in Python cost a minute's task 0.1 s).
@functools.lru_cache(maxsize=1 << 16)
def _spark_symbol(value: str | None) -> str | None:
    """The symbol as Spark types it (trimmed of SYMBOL_BLANKS, upper-cased); None if blank."""
    if value is None:
        return None
    if not value.strip(SYMBOL_BLANKS).isascii():  # upper-cased alike only when ASCII
        raise NotAscii(value)
    return normalised_symbol(value) or None


@functools.lru_cache(maxsize=1 << 16)
def _symbol_hash(name: str) -> int:
    return zlib.crc32(name.encode())


def reason_codes(
    blank: np.ndarray, timeless: np.ndarray, price: pa.ChunkedArray, change: pa.ChunkedArray
) -> np.ndarray:
    """Each row's quarantine reason as `metrics._quarantine_reason` gives it, as a code: 0 for
    none, else 1 + the index of the first of QUARANTINE_REASONS' conditions the row meets."""
    positive = np.nan_to_num(price.to_numpy(zero_copy_only=False), nan=0.0) > 0
    conditions = [blank, timeless, ~_finite(price), ~positive, ~_finite(change)]
    return np.select(conditions, range(1, len(conditions) + 1), default=0).astype(np.int8)


def _finite(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Not null, not NaN, not infinite: the complement of `metrics._not_finite`."""
    usable = pc.fill_null(pc.is_finite(values), False)
    return np.asarray(usable.to_numpy(zero_copy_only=False), dtype=bool)


# A task reads files adding up to about this much parquet (a few million ticks): the size
# `storage.read_in_tasks` and `quality_tasks` group files to.
TASK_READ_BYTES = 64 * 1024 * 1024


def file_groups(files: list[DataFile], min_groups: int) -> list[list[DataFile]]:
    """Consecutive files in groups of about TASK_READ_BYTES, at least `min_groups` of them
    (but never more groups than files)."""
    total = sum(file.size_bytes for file in files)
    wanted = min(len(files), max(min_groups, -(-total // TASK_READ_BYTES)))
    if not wanted:
        return []
    share = total / wanted
    groups: list[list[DataFile]] = [[]]
    filled = 0
    for file in sorted(files, key=lambda f: f.uri):
        # Close the group once it holds its share (a new group also needs files to remain).
        if groups[-1] and filled >= share * len(groups) and len(groups) < wanted:
            groups.append([])
        groups[-1].append(file)
        filled += file.size_bytes
    return groups

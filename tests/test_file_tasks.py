"""Local mode pairs ticks in Python tasks that read silver's files: the same buckets as Spark's
shuffle, and Spark's path wherever Arrow would type silver differently."""

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from beta_assets.assets import returns
from beta_assets.assets.returns import FILE_TASKS_PATH, SPARK_PATH
from beta_assets.file_tasks import PART_BYTES, batches_of_files
from beta_assets.settings import EVENT_TIME, JOINED_RETURNS_TABLE, PRICE, SYMBOL
from resources.delta_files import DataFile
from tests import datasets
from tests.pipeline import (
    covering_keys,
    materialized_metadata,
    run_range,
    sorted_rows,
    write_silver,
)
from tests.test_bad_input import dirty

LINEAGE = "silver_version"


def joined_by(path_result) -> str:
    return materialized_metadata(path_result, JOINED_RETURNS_TABLE)["bucket_path"]


def buckets(lake_root: str) -> pa.Table:
    return sorted_rows(lake_root, JOINED_RETURNS_TABLE).drop_columns([LINEAGE])


def silver_of_every_kind() -> pa.Table:
    """Bad rows, loosely spelled market and ticker symbols, a replayed stretch, naive event
    times."""
    ticks = dirty(datasets.simulated(symbols=3, interval=90.0, seed=81))
    spelled = [
        f" {name.lower()}" if name == "T001" and row % 5 == 0 else name
        for row, name in enumerate(ticks.column(SYMBOL).to_pylist())
    ]
    ticks = ticks.set_column(ticks.schema.get_field_index(SYMBOL), SYMBOL, pa.array(spelled))
    ticks = pa.concat_tables([ticks, ticks.slice(40, 60)])
    index = ticks.schema.get_field_index(EVENT_TIME)
    return ticks.set_column(index, EVENT_TIME, ticks.column(EVENT_TIME).cast(pa.timestamp("us")))


def test_file_tasks_give_the_buckets_of_the_spark_path(lake_root, tmp_path, monkeypatch):
    ticks = silver_of_every_kind()
    write_silver(lake_root, ticks.slice(0, 300))
    write_silver(lake_root, ticks.slice(300))  # two files: a task reads both
    keys = covering_keys(ticks.filter(pc.is_valid(ticks.column(EVENT_TIME))))
    by_files = run_range(lake_root, *keys, max_bad_share=0.05)
    assert joined_by(by_files) == FILE_TASKS_PATH

    monkeypatch.setattr(returns, "files_for_local_tasks", lambda *_: None)
    spark_lake = str(tmp_path / "spark_path")
    write_silver(spark_lake, ticks.slice(0, 300))
    write_silver(spark_lake, ticks.slice(300))
    by_spark = run_range(spark_lake, *keys, max_bad_share=0.05)
    assert joined_by(by_spark) == SPARK_PATH

    expected = buckets(spark_lake)
    assert expected.num_rows > 100 and pc.sum(expected.column("duplicate_ticks")).as_py() > 0
    assert buckets(lake_root).equals(expected)

    # A long range: each task's share in parts (here more tasks than cores too); every
    # symbol still lies in exactly one part. One file: both spellings of T001 in one file's
    # symbols are still one symbol.
    monkeypatch.undo()  # the file tasks again
    monkeypatch.setattr(returns.Shares, "of", classmethod(lambda cls, *_: cls(tasks=3, parts=3)))
    in_parts = str(tmp_path / "in_parts")
    write_silver(in_parts, ticks)
    assert joined_by(run_range(in_parts, *keys, max_bad_share=0.05)) == FILE_TASKS_PATH
    assert buckets(in_parts).equals(expected)


def text_prices(ticks: pa.Table) -> pa.Table:
    return ticks.set_column(1, PRICE, ticks.column(PRICE).cast(pa.string()))


def non_ascii_symbol(ticks: pa.Table) -> pa.Table:
    # Spark upper-cases U+A7CB's lower case (U+0264) where Python 3.11 does not.
    symbols = pc.replace_substring(ticks.column(SYMBOL), "T001", "T\u0264")
    return ticks.set_column(ticks.schema.get_field_index(SYMBOL), SYMBOL, symbols)


@pytest.mark.parametrize(
    ("change", "settings"),
    [
        (text_prices, {}),
        (non_ascii_symbol, {}),
        (lambda ticks: ticks, {"noise": True}),
    ],
    ids=["text_prices", "non_ascii_symbol", "noise"],
)
def test_silver_that_arrow_would_type_otherwise_takes_the_spark_path(lake_root, change, settings):
    ticks = change(datasets.simulated(symbols=2, interval=300.0, seed=82))
    write_silver(lake_root, ticks)
    result = run_range(lake_root, *covering_keys(ticks), **settings)
    assert joined_by(result) == SPARK_PATH
    symbols = set(buckets(lake_root).column(SYMBOL).to_pylist())
    assert len(symbols) == 2 and all(isinstance(name, str) for name in symbols)
    assert pc.sum(buckets(lake_root).column("paired_ticks")).as_py() > 0


def test_small_files_are_read_in_batches_and_large_ones_alone():
    megabyte = PART_BYTES // 3
    sizes = [megabyte] * 4 + [10 * PART_BYTES, megabyte]
    files = [DataFile(f"f{index}", size, {}, None) for index, size in enumerate(sizes)]
    batches = [[file.uri for file in batch] for batch in batches_of_files(files)]
    assert batches == [["f0", "f1", "f2"], ["f3", "f4"], ["f5"]]

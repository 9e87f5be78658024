"""Silver as Databricks writes it: the pipeline computes from it what it computes from a plain
table holding the rows a correct reader sees (deleted rows never counted, mapped names
resolved), in local mode, where such tables are read in Spark's tasks.

The same tables through a Spark cluster and Spark Connect: tests/test_distributed_modes.py.
"""

from collections.abc import Callable
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import write_deltalake

from beta_assets.settings import (
    EVENT_TIME,
    GOLD_TABLE,
    SILVER_TABLE,
    SILVER_VERSION,
)
from tests import datasets
from tests import delta_tables as kinds
from tests.pipeline import TABLE_KEYS, covering_keys, run_range, sorted_rows, write_silver
from tests.sensing import SensorDriver, requested_ranges

BUILDERS: dict[str, Callable[[str, pa.Table], kinds.BuiltTable]] = {
    "deletion_vectors_inline": partial(kinds.deletion_vector_table, storage="inline"),
    "deletion_vectors_in_a_file": partial(kinds.deletion_vector_table, storage="file"),
    "column_mapping_name_legacy_protocol": partial(kinds.column_mapping_table, mode="name"),
    "column_mapping_id": partial(kinds.column_mapping_table, mode="id"),
    "v2_checkpoint": kinds.v2_checkpoint_table,
    "timestamp_ntz": kinds.timestamp_ntz_table,
    "partitioned_by_symbol": kinds.partitioned_table,
    "databricks_default": kinds.databricks_table,
}


@pytest.fixture(scope="module")
def ticks() -> pa.Table:
    return datasets.simulated(symbols=2, interval=90.0, seed=41)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_a_databricks_kind_of_silver_gives_what_its_rows_give(spark, ticks, tmp_path, kind):
    built = BUILDERS[kind](str(tmp_path / "lake" / SILVER_TABLE), ticks)
    assert 0 < built.rows.num_rows <= ticks.num_rows
    expected_root = str(tmp_path / "expected")
    write_silver(expected_root, built.rows)
    keys = covering_keys(ticks)

    run_range(str(tmp_path / "lake"), *keys)
    run_range(expected_root, *keys)

    for table in TABLE_KEYS:
        # Lineage differs: the kinds take several commits to build, the plain table one.
        got = sorted_rows(str(tmp_path / "lake"), table).drop_columns([SILVER_VERSION])
        expected = sorted_rows(expected_root, table).drop_columns([SILVER_VERSION])
        assert got.num_rows > 0, table
        assert got.equals(expected), f"{table} of a {kind} silver differs from its rows'"
    if built.rows.num_rows < ticks.num_rows:  # deleted rows are not counted
        full_root = str(tmp_path / "full")
        write_silver(full_root, ticks)
        run_range(full_root, *keys)
        assert not sorted_rows(full_root, GOLD_TABLE).equals(sorted_rows(expected_root, GOLD_TABLE))


def test_the_sensor_follows_a_column_mapped_silver_with_deletion_vectors(tmp_path, ticks):
    """The sensor reads what each commit added through the mapping and the vectors: a late
    batch (the first 90 minutes of the day, after the rest) is counted as late, and the hours
    it reaches are requested."""
    silver = str(tmp_path / "lake" / SILVER_TABLE)
    early = pc.less(pc.hour(ticks.column(EVENT_TIME)), 16)
    kinds.databricks_table(silver, ticks.filter(pc.invert(early)))
    driver = SensorDriver(str(tmp_path / "lake"))
    (first,) = requested_ranges(driver.evaluate())
    assert first[0] == "2026-01-05-14:00"  # the first windows holding 16:00's ticks

    late = ticks.filter(early)  # 14:30 to 15:59, more than 3 h behind the marks (20:59)
    write_deltalake(silver, late, mode="append")
    result = driver.evaluate()

    (observation,) = result.asset_events
    assert observation.metadata["rows_added"].value == late.num_rows > 0
    (request,) = result.run_requests
    assert request.tags["tickbeta/late_ticks"] == str(late.num_rows)
    # Ticks in [14:30, 15:59] change the windows starting in (11:30, 16:59].
    assert requested_ranges(result) == [("2026-01-05-11:00", "2026-01-05-16:00")]

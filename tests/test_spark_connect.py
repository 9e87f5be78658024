"""The unchanged pipeline on a Spark Connect server writes the same tables as local mode.

One process holds either a classic session or a Spark Connect one, never both (pyspark raises
SESSION_ALREADY_EXIST and switches the whole process to Connect). So the Connect run is the
README's command line, in its own process, with TICKBETA_SPARK_REMOTE set: the path a user takes.
"""

import os
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest

from beta_assets.settings import (
    GOLD_TABLE,
    LAKE_ENV,
    SPARK_REMOTE_ENV,
    SPARK_UI_ENV,
)
from tests import datasets
from tests.pipeline import (
    TABLE_KEYS,
    covering_keys,
    materialize_from_cli,
    run_range,
    sorted_rows,
    write_silver,
)
from tests.servers import spark_connect_server


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory) -> str:
    with spark_connect_server(tmp_path_factory.mktemp("spark-connect")) as url:
        yield url


def materialize_through_connect(lake_root: str, remote: str, first: str, last: str) -> str:
    """The README's command with TICKBETA_SPARK_REMOTE, on a PATH with no Java: the client
    sends plans and starts no JVM of its own."""
    env = {**os.environ, LAKE_ENV: lake_root, SPARK_REMOTE_ENV: remote, SPARK_UI_ENV: "false"}
    env["PATH"] = str(Path(sys.executable).parent)
    for name in ("DAGSTER_HOME", "JAVA_HOME", "SPARK_HOME"):  # DAGSTER_HOME: an ephemeral instance
        env.pop(name, None)
    result = materialize_from_cli(env, first, last)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_a_range_on_spark_connect_writes_what_local_mode_writes(spark, connect_url, tmp_path):
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=23)
    first, last = covering_keys(ticks)
    local_root, connect_root = str(tmp_path / "local"), str(tmp_path / "connect")
    for root in (local_root, connect_root):
        write_silver(root, ticks)

    run_range(local_root, first, last)
    logs = materialize_through_connect(connect_root, connect_url, first, last)

    assert "RUN_SUCCESS" in logs
    for table in TABLE_KEYS:
        local, connect = sorted_rows(local_root, table), sorted_rows(connect_root, table)
        assert connect.num_rows > 0, table
        assert connect.schema == local.schema, table
        assert connect.equals(local), f"{table} differs between Spark Connect and local mode"
    gold = sorted_rows(connect_root, GOLD_TABLE)
    assert pc.any(pc.is_valid(gold.column("beta"))).as_py()

"""The command lines of the README, run as a user runs them (separate processes)."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from beta_assets.settings import GOLD_TABLE, PLANTED_BETAS_TABLE, SILVER_TABLE
from resources.lake import DeltaLake
from tests.commands import warning_lines
from tests.compare import assert_same_windows, naive_utc
from tests.reference import notebook_gold

BIN = Path(sys.executable).parent
MATERIALIZE = [
    str(BIN / "dagster"),
    "asset",
    "materialize",
    "-m",
    "beta_assets.definitions",
    "--select",
    "spy_returns,joined_returns,gold_beta_metrics",
    "--partition-range",
    "2026-01-05-13:00...2026-01-05-21:00",
]


def run(command: list[str], lake_root: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TICKBETA_LAKE": lake_root, "TICKBETA_SPARK_UI": "false"}
    env.pop("DAGSTER_HOME", None)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_simulate_then_materialize_a_range_from_the_cli(spark, lake_root):
    run([str(BIN / "tickbeta"), "simulate", "--symbols", "2", "--interval", "120"], lake_root)
    lake = DeltaLake(root=lake_root)
    assert lake.require(SILVER_TABLE).version() == 0
    assert lake.require(PLANTED_BETAS_TABLE).to_pyarrow_table().num_rows == 2

    materialized = run(MATERIALIZE, lake_root)
    # The superseded command still works, and Dagster's pointer to `dg launch` is all it warns.
    [warning] = warning_lines(materialized.stdout + materialized.stderr)
    assert "SupersessionWarning" in warning and "dg launch" in warning
    gold = lake.require(GOLD_TABLE).to_pyarrow_table().to_pandas()
    silver = lake.require(SILVER_TABLE).to_pyarrow_table()
    reference = naive_utc(notebook_gold(spark.createDataFrame(silver)).toPandas(), ["window_start"])
    in_range = reference[
        (reference["window_start"] >= pd.Timestamp("2026-01-05 13:00"))
        & (reference["window_start"] < pd.Timestamp("2026-01-05 22:00"))
    ]
    assert len(in_range) > 0
    assert_same_windows(gold, in_range)

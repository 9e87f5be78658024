"""The command lines of the README, run as a user runs them: in separate processes, but for
the failing demo (in process, on the tests' Spark: what it prints comes from the run's events)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
from dagster import DagsterEventType, DagsterRunStatus

from beta_assets.feed.cli import main as tickbeta
from beta_assets.partitions import hour_of_key
from beta_assets.settings import (
    GOLD_TABLE,
    LAKE_ENV,
    MARKET_SYMBOL,
    PARTITION_SPAN,
    PLANTED_BETAS_TABLE,
    SILVER_TABLE,
    SPY_RETURNS_TABLE,
    SYMBOL,
)
from resources.lake import DeltaLake
from tests import datasets
from tests.commands import open_instance, warning_lines
from tests.compare import assert_same_windows, naive_utc
from tests.pipeline import covering_keys, write_silver
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


REPOSITORY = Path(__file__).resolve().parent.parent
# Dagster's console logger: "2026-12-02 19:50:43 +0000 - dagster - DEBUG - beta_pipeline - ..."
DAGSTER_LOG_LINE = re.compile(r" - dagster - [A-Z]+ - ")
DEMO_STEPS = ("silver_ticks_checks", "spy_returns", "joined_returns", GOLD_TABLE)
# Checks each step evaluates: silver's four, then each asset's own.
CHECKS_PER_STEP = {"silver_ticks_checks": 4, "spy_returns": 1, "joined_returns": 2, GOLD_TABLE: 3}


def run(
    command: list[str], lake_root: str, cwd: Path | None = None, dagster_home: Path | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "TICKBETA_LAKE": lake_root, "TICKBETA_SPARK_UI": "false"}
    env.pop("DAGSTER_HOME", None)
    if dagster_home is not None:
        env["DAGSTER_HOME"] = str(dagster_home)
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
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


def test_demo_prints_progress_and_the_table_and_logs_dagster_to_a_file(lake_root, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPOSITORY / "deploy" / "dagster.yaml", home)
    demo = [str(BIN / "tickbeta"), "demo", "--symbols", "2", "--interval", "30"]
    result = run(demo, lake_root, cwd=tmp_path, dagster_home=home)

    # The console: no Dagster event lines, no warnings, nothing on stderr.
    console = (result.stdout + result.stderr).splitlines()
    assert not [line for line in console if DAGSTER_LOG_LINE.search(line)]
    assert not [line for line in console if "warn" in line.lower()]
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"simulating {MARKET_SYMBOL} and 2 symbols with planted betas")

    # Progress: each step starts and ends, in order, with its hours and checks.
    lake = DeltaLake(root=lake_root)
    silver = lake.require(SILVER_TABLE).to_pyarrow_table()
    first_key, last_key = covering_keys(silver)
    hours = (hour_of_key(last_key) - hour_of_key(first_key)) // PARTITION_SPAN + 1
    steps = []
    for step in DEMO_STEPS:
        materialized = "" if step == "silver_ticks_checks" else f", {hours} hours materialized"
        checks = CHECKS_PER_STEP[step]
        steps += [
            rf"^ +[0-9.]+ s  {step} started$",
            rf"^ +[0-9.]+ s  {step} done in [0-9.]+ s{materialized}, "
            rf"{checks} of {checks} checks passed$",
        ]
    positions = [_line_matching(lines, re.compile(pattern)) for pattern in steps]
    assert positions == sorted(positions)
    ticker_ticks = sum(symbol != MARKET_SYMBOL for symbol in silver.column(SYMBOL).to_pylist())
    assert any(f"{ticker_ticks} ticks of 2 symbols" in line for line in lines)

    # The table: per symbol its planted beta and the median notebook beta over its windows.
    planted = lake.require(PLANTED_BETAS_TABLE).to_pandas().set_index(SYMBOL)["planted_beta"]
    gold = lake.require(GOLD_TABLE).to_pandas()
    medians = gold.groupby(SYMBOL)["beta"].median()
    columns = ["s", "planted_beta", "notebook_beta", "aligned_beta", "windows"]
    header = next(index for index, line in enumerate(lines) if line.split() == columns)
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 1 : header + 3]}
    assert set(rows) == set(planted.index) == {"T001", "T002"}
    for symbol, (planted_beta, notebook_beta, _, windows) in rows.items():
        assert planted_beta == f"{planted[symbol]:.3f}"
        assert notebook_beta == f"{medians[symbol]:.3f}"
        assert int(windows) == (gold[SYMBOL] == symbol).sum()

    # Dagster's event log: in the file the demo names (by default under ./data), and in the
    # instance, as the UI shows it.
    log = tmp_path / "data" / "demo-run.log"
    assert lines[-1] == "Dagster's event log: data/demo-run.log"
    logged = log.read_text()
    for event in ("RUN_START", "RUN_SUCCESS", "ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION"):
        assert f" - {event} - " in logged
    instance = open_instance(home)
    (record,) = instance.get_runs()
    assert record.status == DagsterRunStatus.SUCCESS
    materialized = instance.all_logs(record.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    assert len(materialized) == 3 * hours


def test_a_failing_demo_run_names_the_step_and_its_error_and_exits_1(
    spark, lake_root, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    # `--lake` sets TICKBETA_LAKE for the process (the code location reads it): restored after,
    # so later tests do not inherit this lake.
    monkeypatch.setenv(LAKE_ENV, lake_root)
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=62)
    prices = ticks.column("currentPrice").to_numpy().copy()
    prices[::10] = -1.0  # 10% non-positive prices: silver's blocking value check fails
    write_silver(lake_root, ticks.set_column(1, "currentPrice", pa.array(prices)))
    log = tmp_path / "demo-run.log"

    assert tickbeta(["--lake", lake_root, "demo", "--log-file", str(log)]) == 1
    out, err = capsys.readouterr()
    unusable = f"{len(prices[::10])} of {len(prices)} ticks unusable"
    assert f"    check silver_value_shares on silver_ticks FAILED (ERROR): {unusable} (" in out
    assert "FAILED silver_ticks_checks: " in out
    assert err.startswith("tickbeta demo: the run failed\nsilver_ticks_checks: ")
    assert "silver_ticks: silver_value_shares" in err
    assert err.endswith(f"Dagster's event log: {log}\n")
    assert " - STEP_FAILURE - " in log.read_text()
    assert DeltaLake(root=lake_root).open(SPY_RETURNS_TABLE) is None


def _line_matching(lines: list[str], pattern: re.Pattern) -> int:
    matching = [index for index, line in enumerate(lines) if pattern.search(line)]
    assert len(matching) == 1, (pattern.pattern, lines)
    return matching[0]

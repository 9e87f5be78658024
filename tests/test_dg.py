"""The `dg` CLI on the project, as the README runs it: from the checkout with its virtual
environment active, a DAGSTER_HOME made from deploy/dagster.yaml and a lake of its own."""

import json
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from dagster import DagsterRunStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from beta_assets.settings import EVENT_TIME, LAKE_ENV, SILVER_TABLE, SPARK_UI_ENV
from tests import datasets
from tests.commands import (
    BIN,
    REPOSITORY,
    activated_environment,
    dagster_home,
    open_instance,
    warning_lines,
)
from tests.pipeline import TABLE_KEYS, covering_keys, run_range, sorted_rows, write_silver

DG = str(BIN / "dg")


def run_dg(arguments: list[str], home: Path, lake_root: str) -> subprocess.CompletedProcess:
    env = activated_environment(
        {"DAGSTER_HOME": str(home), LAKE_ENV: lake_root, SPARK_UI_ENV: "false"}
    )
    result = subprocess.run(
        [DG, *arguments], cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def an_hour_and_a_half() -> pa.Table:
    """Two symbols and the market, a tick every two minutes from 14:30 to 16:00 UTC."""
    day = datasets.simulated(symbols=2, interval=120.0, seed=73)
    return day.filter(pc.less(day.column(EVENT_TIME), pa.scalar(datasets.at(16))))


def test_dg_checks_and_lists_the_definitions_quietly(tmp_path, lake_root):
    home = dagster_home(tmp_path / "dagster_home")

    checked = run_dg(["check", "defs"], home, lake_root)
    listed = run_dg(["list", "defs", "--json"], home, lake_root)

    assert "All definitions loaded successfully." in checked.stdout
    definitions = json.loads(listed.stdout)
    assert {asset["asset_key"] for asset in definitions["assets"]} == {SILVER_TABLE, *TABLE_KEYS}
    assert [job["name"] for job in definitions["jobs"]] == ["beta_pipeline"]
    for result in (checked, listed):
        assert warning_lines(result.stdout + result.stderr) == []


def test_dg_launch_of_a_range_is_one_run_that_writes_what_the_in_process_run_writes(tmp_path):
    ticks = an_hour_and_a_half()
    first, last = covering_keys(ticks)
    launched, in_process = str(tmp_path / "launched"), str(tmp_path / "in_process")
    write_silver(launched, ticks)
    write_silver(in_process, ticks)
    home = dagster_home(tmp_path / "dagster_home")

    result = run_dg(
        ["launch", "--assets", ",".join(TABLE_KEYS), "--partition-range", f"{first}...{last}"],
        home,
        launched,
    )
    run_range(in_process, first, last)

    for table in TABLE_KEYS:
        written, expected = sorted_rows(launched, table), sorted_rows(in_process, table)
        assert written.num_rows > 0, table
        assert written.equals(expected), f"{table} differs between dg launch and in process"
    with open_instance(home) as instance:
        [run] = instance.get_runs()
    assert run.status == DagsterRunStatus.SUCCESS
    assert run.tags[ASSET_PARTITION_RANGE_START_TAG] == first
    assert run.tags[ASSET_PARTITION_RANGE_END_TAG] == last
    assert warning_lines(result.stdout + result.stderr) == []
    # Nor the Spark driver's start-up lines (resources/log4j2.properties).
    for noise in ("default log4j profile", "Setting default log level", "NativeCodeLoader"):
        assert noise not in result.stderr, noise

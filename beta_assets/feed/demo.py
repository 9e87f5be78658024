"""The README's first command: simulate a trading day, materialize everything, compare betas."""

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from dagster import DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._core.utils import make_new_run_id

from beta_assets.feed.feed import PLANTED_BETA, append_sessions
from beta_assets.feed.progress import RunProgress, stderr_to
from beta_assets.feed.simulator import SimulationSpec
from beta_assets.partitions import partition_keys_covering
from beta_assets.settings import (
    EVENT_TIME,
    GOLD_TABLE,
    LAKE_ENV,
    PLANTED_BETAS_TABLE,
    SILVER_TABLE,
    SYMBOL,
)
from resources.lake import DeltaLake


class RunFailed(Exception):
    """The demo's run failed: the message names the failing step and its error."""


def run_demo(
    lake: DeltaLake, spec: SimulationSpec, report: Callable[[str], None], log_path: Path
) -> pd.DataFrame:
    """Materialize every partition the silver table touches, in one run; return the summary.

    `report` gets what is simulated and the run's progress; Dagster's event log and anything
    else the run writes to stderr go to `log_path`. Raises RunFailed if the run fails.
    """
    if lake.open(SILVER_TABLE) is None:
        report(simulation_summary(spec, lake.root))
        append_sessions(lake, spec, report)
    else:
        report(f"silver exists at {lake.uri(SILVER_TABLE)}: computing it as it is")
    first_tick, last_tick = lake.column_range(lake.require(SILVER_TABLE), EVENT_TIME)
    first_key, last_key = partition_keys_covering(first_tick, last_tick)
    report(f"materializing partitions {first_key} ... {last_key} in one run")
    materialize_range(lake, first_key, last_key, report, log_path)
    return beta_summary(lake)


# The class archive's workload: small enough to take seconds, a whole run of every step.
ARCHIVE_DAY = SimulationSpec(symbols=2, interval_seconds=60.0)


def run_a_small_day(session: object) -> None:
    """The pipeline over a small simulated day in a temporary lake and an ephemeral instance,
    on the process's Spark session (`session`, which the run's spark resource finds):
    `tickbeta jvm-archive` records the classes a run loads."""
    home = os.environ.pop("DAGSTER_HOME", None)  # the run is not the user's to see
    try:
        with tempfile.TemporaryDirectory() as root:
            lake = DeltaLake(root=root)
            run_demo(lake, ARCHIVE_DAY, lambda _: None, Path(root) / "run.log")
    finally:
        if home is not None:
            os.environ["DAGSTER_HOME"] = home


def simulation_summary(spec: SimulationSpec, root: str) -> str:
    return (
        f"simulating {spec.market_symbol} and {spec.symbols} symbols with planted betas "
        f"({spec.beta_low:.1f} to {spec.beta_high:.1f}) for {spec.days} trading day(s) from "
        f"{spec.start_date}, a tick every ~{spec.interval_seconds:g} s each, into {root}"
    )


def materialize_range(
    lake: DeltaLake,
    first_key: str,
    last_key: str,
    report: Callable[[str], None],
    log_path: Path,
) -> None:
    with stderr_to(log_path):
        from beta_assets.definitions import beta_pipeline, build_definitions

        defs = build_definitions({**os.environ, LAKE_ENV: lake.root})
        instance = (
            DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
        )
        run_id = make_new_run_id()
        started = time.time()
        progress = RunProgress(report, started)
        instance.add_event_listener(run_id, progress)
        report(f"run {run_id} (Dagster's event log: {log_path})")
        result = defs.resolve_job_def(beta_pipeline.name).execute_in_process(
            instance=instance,
            run_id=run_id,
            tags={
                ASSET_PARTITION_RANGE_START_TAG: first_key,
                ASSET_PARTITION_RANGE_END_TAG: last_key,
            },
            raise_on_error=False,
        )
    if not result.success:
        raise RunFailed("\n".join(progress.failures) or f"run {run_id} failed")
    report(f"run {run_id} succeeded in {time.time() - started:.1f} s")


def beta_summary(lake: DeltaLake) -> pd.DataFrame:
    """Per symbol: planted beta, medians over its windows of the notebook's and the aligned
    beta, window count."""
    columns = [SYMBOL, "beta", "beta_aligned"]
    gold = lake.require(GOLD_TABLE).to_pyarrow_table(columns=columns).to_pandas()
    summary = gold.groupby(SYMBOL).agg(
        notebook_beta=("beta", "median"),
        aligned_beta=("beta_aligned", "median"),
        windows=("beta", "size"),
    )
    planted = lake.open(PLANTED_BETAS_TABLE)
    if planted is not None:
        truth = planted.to_pyarrow_table(columns=[SYMBOL, PLANTED_BETA]).to_pandas()
        summary = truth.set_index(SYMBOL).join(summary, how="outer")
    return summary.reset_index()

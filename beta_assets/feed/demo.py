"""The README's first command: simulate a trading day, materialize everything, compare betas."""

import os
from collections.abc import Callable

import pandas as pd
from dagster import DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from beta_assets.feed.feed import PLANTED_BETA, append_sessions
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


def run_demo(lake: DeltaLake, spec: SimulationSpec, report: Callable[[str], None]) -> pd.DataFrame:
    """Materialize every partition the silver table touches, in one run; return the summary."""
    if lake.open(SILVER_TABLE) is None:
        report(f"simulating {spec.days} trading day(s) of {spec.symbols} symbols into {lake.root}")
        append_sessions(lake, spec, report)
    first_tick, last_tick = lake.column_range(lake.require(SILVER_TABLE), EVENT_TIME)
    first_key, last_key = partition_keys_covering(first_tick, last_tick)
    report(f"materializing partitions {first_key} ... {last_key} in one run")
    materialize_range(lake, first_key, last_key)
    return beta_summary(lake)


def materialize_range(lake: DeltaLake, first_key: str, last_key: str) -> None:
    from beta_assets.definitions import beta_pipeline, build_definitions

    defs = build_definitions({**os.environ, LAKE_ENV: lake.root})
    instance = (
        DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    )
    defs.resolve_job_def(beta_pipeline.name).execute_in_process(
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: first_key, ASSET_PARTITION_RANGE_END_TAG: last_key},
    )


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

"""The code location: assembles assets, jobs, resources and the executor; nothing else."""

import os
import warnings
from collections.abc import Mapping

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor
from dagster._utils.warnings import BetaWarning

from beta_assets.assets.gold import gold_beta_metrics
from beta_assets.assets.returns import joined_returns, spy_returns
from beta_assets.assets.silver import silver_ticks
from beta_assets.checks import silver_ticks_checks
from beta_assets.config import BetaMetricsConfig
from beta_assets.partitions import hourly_partitions
from beta_assets.resources import lake_from_environment, spark_from_environment
from beta_assets.sensors import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_MAX_PARTITIONS_PER_RUN,
    build_silver_sensor,
)
from beta_assets.settings import SENSOR_INTERVAL_ENV, SENSOR_MAX_PARTITIONS_ENV

# Single-run backfills and observable source assets are marked beta; we rely on both knowingly.
warnings.filterwarnings("ignore", category=BetaWarning)

computed_assets = [spy_returns, joined_returns, gold_beta_metrics]

beta_pipeline = define_asset_job(
    "beta_pipeline",
    # Silver's checks run first in every run and block the assets when silver is broken.
    selection=AssetSelection.assets(*computed_assets) | AssetSelection.checks(silver_ticks_checks),
    partitions_def=hourly_partitions,
    description="silver ticks -> spy_returns -> joined_returns -> gold_beta_metrics",
)


def build_definitions(env: Mapping[str, str]) -> Definitions:
    """The code location for an environment (TICKBETA_* variables, see README)."""
    return Definitions(
        assets=[silver_ticks, *computed_assets],
        asset_checks=[silver_ticks_checks],
        jobs=[beta_pipeline],
        sensors=[
            build_silver_sensor(
                beta_pipeline,
                minimum_interval_seconds=int(
                    env.get(SENSOR_INTERVAL_ENV) or DEFAULT_INTERVAL_SECONDS
                ),
                max_partitions_per_run=int(
                    env.get(SENSOR_MAX_PARTITIONS_ENV) or DEFAULT_MAX_PARTITIONS_PER_RUN
                ),
            )
        ],
        resources={
            "spark": spark_from_environment(env),
            "lake": lake_from_environment(env),
            "metrics": BetaMetricsConfig(),
        },
        # Every step of a run shares one process, so one Spark session (a JVM start is ~14 s).
        executor=in_process_executor,
    )


defs = build_definitions(os.environ)

"""The code location: assembles assets, jobs, resources and the executor; nothing else."""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from dagster import (
    AnchorBasedFilePathMapping,
    AssetSelection,
    DefaultSensorStatus,
    Definitions,
    define_asset_job,
    in_process_executor,
    link_code_references_to_git,
)

from beta_assets.assets.catalog import with_local_code_references
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
from beta_assets.settings import (
    DEFAULT_GIT_BRANCH,
    DEFAULT_SENSOR_STATUS,
    GIT_BRANCH_ENV,
    GIT_URL_ENV,
    SENSOR_INTERVAL_ENV,
    SENSOR_MAX_PARTITIONS_ENV,
    SENSOR_STATUS_ENV,
)

computed_assets = [spy_returns, joined_returns, gold_beta_metrics]
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent

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
        assets=with_code_references([silver_ticks, *computed_assets], env),
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
                default_status=sensor_default_status(env),
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


def with_code_references(assets: Sequence, env: Mapping[str, str]) -> Sequence:
    """Each asset links to the code that defines it: a file on this machine by default, the
    repository's page when TICKBETA_GIT_URL names one (a deployed UI has no checkout)."""
    referenced = with_local_code_references(assets)
    git_url = env.get(GIT_URL_ENV)
    if not git_url:
        return referenced
    return link_code_references_to_git(
        referenced,
        git_url=git_url,
        git_branch=env.get(GIT_BRANCH_ENV) or DEFAULT_GIT_BRANCH,
        file_path_mapping=AnchorBasedFilePathMapping(
            local_file_anchor=REPOSITORY_ROOT, file_anchor_path_in_repository=""
        ),
    )


def sensor_default_status(env: Mapping[str, str]) -> DefaultSensorStatus:
    """Running unless TICKBETA_SENSOR_STATUS=stopped (a UI that only launches runs by hand)."""
    value = (env.get(SENSOR_STATUS_ENV) or DEFAULT_SENSOR_STATUS).strip().upper()
    if value not in DefaultSensorStatus.__members__:
        raise ValueError(f"{SENSOR_STATUS_ENV} must be 'running' or 'stopped', not {value!r}")
    return DefaultSensorStatus[value]


defs = build_definitions(os.environ)

"""The code location's `beta_pipeline` as a reconstructable job, for Dagster's re-execution API.

Built from the environment when Dagster reconstructs it, as the code location is: a test sets
TICKBETA_LAKE first.
"""

import os

from dagster import JobDefinition

from beta_assets.definitions import build_definitions


def beta_pipeline_from_environment() -> JobDefinition:
    return build_definitions(os.environ).resolve_job_def("beta_pipeline")

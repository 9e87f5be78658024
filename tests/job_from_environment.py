"""The code location's `beta_pipeline` as a reconstructable job, for Dagster's re-execution API.

The lake is an argument of the reconstruction, so it is part of the job's pointer: Dagster keeps
the last definition it reconstructed per process (an `lru_cache` on the pointer), and a job
built from the environment alone would hand one test's lake to the next test in the worker.
"""

import os

from dagster import JobDefinition
from dagster._core.definitions.reconstruct import ReconstructableJob, build_reconstructable_job

from beta_assets.definitions import build_definitions
from beta_assets.settings import LAKE_ENV


def beta_pipeline_of_lake(lake_root: str) -> JobDefinition:
    return build_definitions({**os.environ, LAKE_ENV: lake_root}).resolve_job_def("beta_pipeline")


def reconstructable_pipeline(lake_root: str) -> ReconstructableJob:
    return build_reconstructable_job(
        __name__, beta_pipeline_of_lake.__name__, reconstructable_kwargs={"lake_root": lake_root}
    )

"""Evaluating the silver sensor against real Delta tables, and running what it requests."""

from dagster import DagsterInstance, build_sensor_context
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from beta_assets.config import BetaMetricsConfig
from beta_assets.definitions import beta_pipeline
from beta_assets.sensors import DEFAULT_MAX_PARTITIONS_PER_RUN, build_silver_sensor
from resources.lake import DeltaLake
from tests.pipeline import as_lake, run_range


class SensorDriver:
    """Evaluates the sensor tick after tick, carrying the cursor as the daemon does."""

    def __init__(self, lake: str | DeltaLake, max_partitions: int = DEFAULT_MAX_PARTITIONS_PER_RUN):
        self.lake = as_lake(lake)
        self.sensor = build_silver_sensor(beta_pipeline, max_partitions_per_run=max_partitions)
        self.instance = DagsterInstance.ephemeral()
        self.cursor: str | None = None

    def evaluate(self, cursor: str | None = None):
        context = build_sensor_context(
            cursor=cursor if cursor is not None else self.cursor,
            instance=self.instance,
            resources={"lake": self.lake, "metrics": BetaMetricsConfig()},
        )
        result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor or self.cursor
        return result

    def run_requested(self, result) -> int:
        for request in result.run_requests:
            run_range(
                self.lake,
                request.tags[ASSET_PARTITION_RANGE_START_TAG],
                request.tags[ASSET_PARTITION_RANGE_END_TAG],
                tags=request.tags,
            )
        return len(result.run_requests)


def requested_ranges(result) -> list[tuple[str, str]]:
    return [
        (r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG])
        for r in result.run_requests
    ]

"""The code location loads, validates and has the shape the README promises."""

import subprocess
import sys

from dagster import AssetKey
from dagster._core.definitions.backfill_policy import BackfillPolicyType

from beta_assets.definitions import build_definitions
from beta_assets.settings import GOLD_TABLE, JOINED_RETURNS_TABLE, SILVER_TABLE, SPY_RETURNS_TABLE

COMPUTED = [SPY_RETURNS_TABLE, JOINED_RETURNS_TABLE, GOLD_TABLE]


def test_definitions_load_with_all_assets(tmp_path):
    defs = build_definitions({"TICKBETA_LAKE": str(tmp_path)})
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {SILVER_TABLE, *COMPUTED}
    for name in COMPUTED:
        node = graph.get(AssetKey(name))
        assert node.partitions_def is not None
        assert node.backfill_policy.policy_type == BackfillPolicyType.SINGLE_RUN
    assert defs.resolve_job_def("beta_pipeline").executor_def.name == "in_process"


def test_each_hour_is_declared_to_depend_on_the_same_hour_above(tmp_path):
    """Dagster's asset backfill co-schedules a child with its parent only under a same-hour
    mapping; the reads beyond the hour are the steps' business (partitions.py)."""
    graph = build_definitions({"TICKBETA_LAKE": str(tmp_path)}).resolve_asset_graph()
    for parent, child in [
        (SPY_RETURNS_TABLE, JOINED_RETURNS_TABLE),
        (JOINED_RETURNS_TABLE, GOLD_TABLE),
    ]:
        parents = graph.get_parent_partition_keys_for_child(
            "2026-01-05-14:00", AssetKey(parent), AssetKey(child)
        ).partitions_subset.get_partition_keys()
        assert list(parents) == ["2026-01-05-14:00"], (parent, child)


def test_dagster_validates_the_workspace():
    command = [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful" in result.stderr + result.stdout

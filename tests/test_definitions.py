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


def test_partition_mappings_follow_the_design(tmp_path):
    graph = build_definitions({"TICKBETA_LAKE": str(tmp_path)}).resolve_asset_graph()
    joined = graph.get(AssetKey(JOINED_RETURNS_TABLE))
    gold = graph.get(AssetKey(GOLD_TABLE))
    spy_keys = graph.get_parent_partition_keys_for_child(
        "2026-01-05-14:00", AssetKey(SPY_RETURNS_TABLE), joined.key
    ).partitions_subset.get_partition_keys()
    assert sorted(spy_keys) == ["2026-01-05-13:00", "2026-01-05-14:00", "2026-01-05-15:00"]
    joined_keys = graph.get_parent_partition_keys_for_child(
        "2026-01-05-14:00", joined.key, gold.key
    ).partitions_subset.get_partition_keys()
    assert sorted(joined_keys) == ["2026-01-05-14:00", "2026-01-05-15:00", "2026-01-05-16:00"]


def test_dagster_validates_the_workspace():
    command = [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful" in result.stderr + result.stdout

"""What the UI shows about the assets before anything runs: owners, kinds, schemas, code links."""

import pyarrow as pa
import pytest
from dagster import AssetKey, DefaultSensorStatus, TableSchema

from beta_assets.assets.catalog import COLUMN_SCHEMA, LAYER, OWNERS, table_schema
from beta_assets.definitions import build_definitions, sensor_default_status
from beta_assets.settings import (
    GOLD_COLUMNS,
    GOLD_TABLE,
    JOINED_RETURNS_TABLE,
    PARTITION_HOUR,
    SILVER_TABLE,
    SILVER_VERSION,
    SPY_RETURNS_TABLE,
)

ALL_ASSETS = [SILVER_TABLE, SPY_RETURNS_TABLE, JOINED_RETURNS_TABLE, GOLD_TABLE]


def asset_node(name: str, env: dict | None = None):
    graph = build_definitions(env or {"TICKBETA_LAKE": "/nonexistent"}).resolve_asset_graph()
    return graph.get(AssetKey(name))


@pytest.mark.parametrize("name", ALL_ASSETS)
def test_every_asset_has_owner_kinds_layer_partitioning_and_a_described_schema(name):
    node = asset_node(name)
    assert node.owners == OWNERS
    assert "delta" in node.kinds
    assert node.tags[LAYER] in {"silver", "intermediate", "gold"}
    partitioning = "Hourly UTC partitions" if node.partitions_def else "Not partitioned"
    assert partitioning in node.description
    schema = node.metadata[COLUMN_SCHEMA]
    assert isinstance(schema, TableSchema)
    assert all(column.description for column in schema.columns)


def test_computed_assets_are_spark_kinds_and_silver_is_not():
    assert asset_node(GOLD_TABLE).kinds == {"spark", "delta"}
    assert asset_node(SILVER_TABLE).kinds == {"delta"}


def test_gold_schema_lists_the_gold_columns_then_lineage():
    columns = asset_node(GOLD_TABLE).metadata[COLUMN_SCHEMA].columns
    assert [c.name for c in columns] == [*GOLD_COLUMNS, SILVER_VERSION, PARTITION_HOUR]
    types = {c.name: c.type for c in columns}
    assert types["beta"] == "double"
    assert types["sample_size"] == "int64"
    assert types["window_start"] == "timestamp[us, tz=UTC]"


def test_a_column_without_description_is_refused():
    with pytest.raises(KeyError, match="undocumented"):
        table_schema(
            pa.schema([("documented", pa.int64()), ("undocumented", pa.int64())]),
            {"documented": "yes"},
        )


@pytest.mark.parametrize(
    ("name", "module"),
    [
        (SILVER_TABLE, "silver.py"),
        (SPY_RETURNS_TABLE, "returns.py"),
        (JOINED_RETURNS_TABLE, "returns.py"),
        (GOLD_TABLE, "gold.py"),
    ],
)
def test_code_references_point_at_the_module_defining_the_asset(name, module):
    # Not at the retry wrapper around the asset's function.
    references = asset_node(name).metadata["dagster/code_references"].code_references
    assert len(references) == 1
    assert references[0].file_path.endswith(f"beta_assets/assets/{module}")
    assert references[0].line_number > 1


def test_code_references_link_to_the_repository_when_one_is_named():
    env = {"TICKBETA_GIT_URL": "https://github.com/acme/tickbeta", "TICKBETA_GIT_BRANCH": "dev"}
    node = asset_node(JOINED_RETURNS_TABLE, env)
    url = node.metadata["dagster/code_references"].code_references[0].url
    assert url.startswith(
        "https://github.com/acme/tickbeta/tree/dev/beta_assets/assets/returns.py#L"
    )


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (None, DefaultSensorStatus.RUNNING),
        ("stopped", DefaultSensorStatus.STOPPED),
        (" Running ", DefaultSensorStatus.RUNNING),
    ],
)
def test_sensor_default_status_comes_from_the_environment(value, status):
    env = {} if value is None else {"TICKBETA_SENSOR_STATUS": value}
    assert sensor_default_status(env) == status
    sensor = build_definitions(env).resolve_sensor_def("silver_new_versions")
    assert sensor.default_status == status


def test_an_unknown_sensor_status_is_refused():
    with pytest.raises(ValueError, match="TICKBETA_SENSOR_STATUS"):
        sensor_default_status({"TICKBETA_SENSOR_STATUS": "paused"})

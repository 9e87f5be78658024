"""What a run leaves on each materialization: per-partition counts, run facts, preview, plot."""

from collections import Counter

import pyarrow.compute as pc
from dagster import DagsterInstance, materialize
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from beta_assets.assets.silver import SILVER_VERSION_READ_TAG
from beta_assets.partitions import hour_of_key, partition_key
from beta_assets.settings import GOLD_TABLE, JOINED_RETURNS_TABLE
from tests import datasets
from tests.pipeline import ASSETS, COMPUTED, read_table, resources, write_silver
from tests.test_reporting import plotted_png

FIRST, LAST = "2026-01-05-15:00", "2026-01-05-16:00"


def test_a_range_run_reports_each_partition_on_its_own(lake_root):
    ticks = datasets.simulated(symbols=3, interval=60.0, seed=5)
    ticks = ticks.filter(pc.less(ticks.column("event_time"), datasets.at(19)))
    silver_version = write_silver(lake_root, ticks)
    instance = DagsterInstance.ephemeral()
    result = materialize(
        ASSETS,
        selection=COMPUTED,
        resources=resources(lake_root),
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: FIRST, ASSET_PARTITION_RANGE_END_TAG: LAST},
    )
    assert result.success
    assert instance.get_run_by_id(result.run_id).tags[SILVER_VERSION_READ_TAG] == str(
        silver_version
    )

    gold = read_table(lake_root, GOLD_TABLE)
    rows_per_key = Counter(partition_key(t) for t in gold["window_start"])
    events = {
        (e.asset_key.to_user_string(), e.partition): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert {key for name, key in events if name == GOLD_TABLE} == {FIRST, LAST}
    for key in (FIRST, LAST):
        metadata = events[(GOLD_TABLE, key)]
        assert rows_per_key[key] > 0
        assert metadata["dagster/row_count"].value == rows_per_key[key]
        assert metadata["rows_in_run"].value == len(gold)
        assert metadata["silver_version"].value == silver_version
        assert metadata["event_time_min"].value == hour_of_key(key).isoformat()
        assert metadata["dagster/uri"].value.endswith(GOLD_TABLE)
        # The preview shows the partition's own latest windows, not the run's.
        latest = max(t for t in gold["window_start"] if partition_key(t) == key)
        preview = metadata["preview"].value
        assert "beta" in preview
        assert str(latest) in preview.splitlines()[2]
        plotted_png(metadata["plot"].value)

    joined = read_table(lake_root, JOINED_RETURNS_TABLE)
    for key in (FIRST, LAST):
        own = joined[[partition_key(t) == key for t in joined["bucket_start"]]]
        metadata = events[(JOINED_RETURNS_TABLE, key)]
        assert metadata["dagster/row_count"].value == len(own)
        ticks_counted = int(own["paired_ticks"].sum() + own["unpaired_ticks"].sum())
        assert metadata["ticker_ticks"].value == ticks_counted > 0

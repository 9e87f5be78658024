"""The benchmark's Polars peer computes tickbeta's gold: same rows, same values."""

import math
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from bench.polars_peer import PeerSettings, polars_gold, silver_scan
from bench.run_bench import PEER_CLOSE, PEER_EXACT
from beta_assets.metrics import MetricSettings
from beta_assets.partitions import PARTITION_SPAN, hour_of_key
from beta_assets.settings import EVENT_TIME, GOLD_TABLE, SILVER_TABLE
from resources.lake import DeltaLake
from tests import datasets
from tests.compare import gold_differences
from tests.pipeline import covering_keys, read_table, run_range, write_silver


def replayed_and_dirty(clean: pa.Table) -> pa.Table:
    """The ticks with some replayed (exact duplicates), symbols spelled loosely, bad rows."""
    rows = clean.to_pylist()
    replayed = [dict(row) for row in rows[::5]]
    for row in rows[::7]:
        row["s"] = f" {row['s'].lower()} " if row["event_time"].minute % 2 else row["s"].title()
    time = rows[len(rows) // 2]["event_time"]
    bad = [
        ("T001", None, 0.1, time),
        ("T001", -5.0, 0.1, time),
        ("T002", 10.0, math.nan, time),
        ("SPY", 10.0, math.inf, time),
        ("   ", 10.0, 0.1, time),
        (None, 10.0, 0.1, time),
        ("T001", 10.0, 0.1, None),
    ]
    rows += replayed + [dict(zip(clean.column_names, values, strict=True)) for values in bad]
    return pa.Table.from_pylist(rows, schema=clean.schema)


def as_text(table: pa.Table) -> pa.Table:
    """Every column as text, as a loosely typed feed writes it."""
    return pa.table({name: pc.cast(table.column(name), pa.string()) for name in table.column_names})


DATASETS = {
    "ticks_exactly_one_hour_from_market": datasets.band_edges,
    "ticks_on_window_and_partition_boundaries": datasets.window_boundaries,
    "windows_with_19_and_20_pairs": datasets.pairs_19_and_20,
    "equal_times_different_prices": datasets.equal_times_different_prices,
    "constant_market": lambda: datasets.with_constant_market(datasets.simulated(symbols=3)),
    "replayed_and_dirty_ticks": lambda: replayed_and_dirty(
        datasets.simulated(symbols=3, interval=60.0, seed=23)
    ),
    "text_columns": lambda: as_text(datasets.simulated(symbols=2, interval=90.0, seed=29)),
}


def both_golds(lake_root: str, ticks: pa.Table):
    """(tickbeta's gold through the pipeline, the peer's) over every hour the ticks touch."""
    times = pc.cast(ticks.column(EVENT_TIME), pa.timestamp("us", tz="UTC"))
    first, last = covering_keys(pa.table({EVENT_TIME: times.filter(pc.is_valid(times))}))
    write_silver(lake_root, ticks)
    run_range(lake_root, first, last)
    start, end = hour_of_key(first), hour_of_key(last) + PARTITION_SPAN
    silver = silver_scan(DeltaLake(root=lake_root).require(SILVER_TABLE))
    peer = polars_gold(silver, start, end, PeerSettings.of(MetricSettings()))
    return read_table(lake_root, GOLD_TABLE), peer.to_pandas()


@pytest.mark.parametrize("name", list(DATASETS))
def test_polars_peer_equals_tickbeta_gold(spark, lake_root, name):
    gold, peer = both_golds(lake_root, DATASETS[name]())
    assert len(gold) > 0
    assert gold_differences(peer, gold, PEER_CLOSE, PEER_EXACT) == []


def test_the_comparison_sees_a_changed_value_and_a_missing_row(spark, lake_root):
    gold, peer = both_golds(lake_root, datasets.equal_times_different_prices())
    nudged = peer.copy()
    nudged.loc[0, "momentum"] *= 1 + 1e-7
    nudged.loc[1, "close_price"] = 98.0
    assert len(gold_differences(nudged, gold, PEER_CLOSE, PEER_EXACT)) == 2
    later = peer.copy()
    later.loc[0, "window_start"] += timedelta(hours=5)
    assert gold_differences(later, gold, PEER_CLOSE, PEER_EXACT)[0].startswith("rows:")

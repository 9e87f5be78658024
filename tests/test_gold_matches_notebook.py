"""gold_beta_metrics, materialized through Dagster, equals the notebook's query on the same data."""

import pytest

from tests import datasets
from tests.compare import assert_same_windows, keyed
from tests.pipeline import run_all
from tests.reference import notebook_close_price, notebook_gold

DATASETS = {
    "simulated_day": lambda: datasets.simulated(),
    "market_gap_over_an_hour": lambda: datasets.without_market_between(
        datasets.simulated(), datasets.at(16), datasets.at(17, 30)
    ),
    "constant_market": lambda: datasets.with_constant_market(datasets.simulated(symbols=2)),
    "ticks_exactly_one_hour_from_market": datasets.band_edges,
    "ticks_on_window_and_partition_boundaries": datasets.window_boundaries,
    "windows_with_19_and_20_pairs": datasets.pairs_19_and_20,
    "one_symbol_only": datasets.one_symbol,
}


@pytest.mark.parametrize("name", list(DATASETS))
def test_gold_equals_notebook(spark, lake_root, name):
    ticks = DATASETS[name]()
    gold = run_all(lake_root, ticks)
    reference = notebook_gold(spark.createDataFrame(ticks)).toPandas()
    assert len(reference) > 0
    assert_same_windows(gold, reference)


def test_constant_market_gives_null_beta(spark, lake_root):
    gold = run_all(lake_root, datasets.with_constant_market(datasets.simulated(symbols=2)))
    assert len(gold) > 0
    assert gold["beta"].isna().all() and gold["cost_of_equity"].isna().all()
    assert gold["volatility"].notna().all()


def test_windows_need_twenty_pairs(lake_root):
    gold = run_all(lake_root, datasets.pairs_19_and_20())
    assert set(gold["s"]) == {"TWENTY"}
    assert (gold["sample_size"] == 20).all()
    assert len(gold) == 24  # every window holding the single tick


def test_close_price_is_latest_paired_tick(spark, lake_root):
    ticks = datasets.equal_times_different_prices()
    gold = keyed(run_all(lake_root, ticks))
    truth = keyed(notebook_close_price(spark.createDataFrame(ticks)).toPandas())
    assert (gold["close_price"] == truth.loc[gold.index, "close_price"]).all()
    assert (gold["close_price"] == 99.0).all()  # 14:12 twice: 99 beats 98

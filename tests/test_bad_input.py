"""Dirty feeds: a bad row never crashes a run; it is counted, kept in quarantine, and left out."""

import math
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster import AssetSelection, materialize
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from beta_assets.checks import silver_ticks_checks
from beta_assets.feed.cli import main as tickbeta
from beta_assets.metrics import (
    QUARANTINE_REASON,
    MetricSettings,
    market_and_rejected_rows,
    quality_counts_with_kept_rows,
    silver_quality_counts,
    typed_ticks,
)
from beta_assets.quarantine import counts_and_kept_rows
from beta_assets.sensors import SilverCursor
from beta_assets.settings import (
    GOLD_TABLE,
    IMPORT_REJECTS_TABLE,
    JOINED_RETURNS_TABLE,
    LAKE_ENV,
    QUARANTINE_TABLE,
    SILVER_TABLE,
    SPY_RETURNS_TABLE,
)
from beta_assets.storage import silver_high_water_marks
from beta_assets.watermarks import HighWaterMarks, late_tick_count
from resources.lake import DeltaLake
from resources.spark import dataframe_from_arrow
from tests import datasets
from tests.compare import assert_same_windows
from tests.pipeline import (
    ASSETS,
    COMPUTED,
    covering_keys,
    materialized_metadata,
    read_table,
    resources,
    run_all,
    run_partition,
    run_range,
    write_silver,
)
from tests.reference import notebook_gold
from tests.sensing import SensorDriver

BAD_TIME = datasets.at(15, 7)


def dirty(clean: pa.Table) -> pa.Table:
    """The clean ticks, market symbols spelled loosely, plus one row per kind of bad value."""
    rows = clean.to_pylist()
    for row in rows[::7]:
        if row["s"] == "SPY":
            row["s"] = "spy " if row["event_time"].minute % 2 else "Spy"
    bad = [
        ("T001", None, 0.1, BAD_TIME, "bad_price"),
        ("T001", math.nan, 0.1, BAD_TIME, "bad_price"),
        ("T001", math.inf, 0.1, BAD_TIME, "bad_price"),
        ("T001", -5.0, 0.1, BAD_TIME, "non_positive_price"),
        ("T001", 0.0, 0.1, BAD_TIME, "non_positive_price"),
        ("T001", 10.0, None, BAD_TIME, "bad_change_percent"),
        ("SPY", 10.0, math.nan, BAD_TIME, "bad_change_percent"),
        ("T001", 10.0, -math.inf, BAD_TIME, "bad_change_percent"),
        ("", 10.0, 0.1, BAD_TIME, "empty_symbol"),
        ("   ", 10.0, 0.1, BAD_TIME, "empty_symbol"),
        (None, 10.0, 0.1, BAD_TIME, "empty_symbol"),
        ("T001", 10.0, 0.1, None, "bad_event_time"),
    ]
    rows += [
        {"s": s, "currentPrice": p, "changePercent": c, "event_time": t} for s, p, c, t, _ in bad
    ]
    return pa.Table.from_pylist(rows, schema=clean.schema)


EXPECTED_REASONS = {
    "bad_price": 3,
    "non_positive_price": 2,
    "bad_change_percent": 3,
    "empty_symbol": 3,
    "bad_event_time": 1,
}


def test_bad_rows_go_to_quarantine_and_gold_equals_the_clean_notebook(spark, lake_root):
    clean = datasets.simulated(symbols=2, interval=120.0, seed=41)
    write_silver(lake_root, dirty(clean))
    # 12 bad rows of 607: above the default bound of silver's blocking check, which guards
    # this run too.
    result = run_range(lake_root, *covering_keys(clean), max_bad_share=0.05)
    metadata = materialized_metadata(result, SPY_RETURNS_TABLE)
    assert metadata["quarantined_rows"] == sum(EXPECTED_REASONS.values())
    for reason, count in EXPECTED_REASONS.items():
        assert metadata[f"quarantined_{reason}"] == count

    quarantine = read_table(lake_root, QUARANTINE_TABLE)
    assert quarantine["quarantine_reason"].value_counts().to_dict() == EXPECTED_REASONS
    assert set(quarantine.loc[quarantine["quarantine_reason"] == "bad_price", "currentPrice"]) >= {
        "NaN",
        "Infinity",
    }
    assert (
        quarantine.loc[quarantine["event_time_utc"].isna(), "partition_hour"] == "unparsed"
    ).all()

    gold = read_table(lake_root, GOLD_TABLE)
    assert_same_windows(gold, notebook_gold(spark.createDataFrame(clean)).toPandas())


def test_text_columns_with_garbage_are_quarantined_not_cast_errors(spark, lake_root):
    clean = datasets.simulated(symbols=1, interval=120.0, seed=42)
    text = pa.table(
        {
            "s": clean.column("s"),
            "currentPrice": clean.column("currentPrice").cast(pa.string()),
            "changePercent": clean.column("changePercent").cast(pa.string()),
            # Naive text times: the contract reads them as UTC.
            "event_time": pa.array(
                [t.strftime("%Y-%m-%d %H:%M:%S.%f") for t in clean.column("event_time").to_pylist()]
            ),
            "venue": pa.array(["X"] * clean.num_rows),  # extra columns are ignored
        }
    )
    garbage = pa.table(
        {
            "s": ["T001", "T001", "T001"],
            "currentPrice": ["abc", "12.5", "12.5"],
            "changePercent": ["0.1", "1,5", "0.2"],
            "event_time": ["2026-01-05 15:00:00", "2026-01-05 15:01:00", "yesterday at noon"],
            "venue": ["X", "X", "X"],
        }
    )
    write_silver(lake_root, pa.concat_tables([text, garbage]))
    result = run_range(lake_root, *covering_keys(clean))
    metadata = materialized_metadata(result, SPY_RETURNS_TABLE)
    assert metadata["quarantined_bad_price"] == 1
    assert metadata["quarantined_bad_change_percent"] == 1
    assert metadata["quarantined_bad_event_time"] == 1
    gold = read_table(lake_root, GOLD_TABLE)
    assert_same_windows(gold, notebook_gold(spark.createDataFrame(clean)).toPandas())


def test_a_replayed_file_counts_once(lake_root, tmp_path):
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=43)
    once = run_all(str(tmp_path / "once"), ticks)
    write_silver(lake_root, ticks)
    write_silver(lake_root, ticks)  # the same file appended again
    result = run_range(lake_root, *covering_keys(ticks))
    twice = read_table(lake_root, GOLD_TABLE)
    key = ["s", "window_start"]
    columns = [c for c in once.columns if c != "silver_version"]
    pd.testing.assert_frame_equal(
        once[columns].sort_values(key).reset_index(drop=True),
        twice[columns].sort_values(key).reset_index(drop=True),
    )
    market = ticks.filter(pa.compute.equal(ticks.column("s"), "SPY")).num_rows
    assert materialized_metadata(result, SPY_RETURNS_TABLE)["duplicate_market_ticks"] == market
    joined = materialized_metadata(result, JOINED_RETURNS_TABLE)
    assert joined["duplicate_ticks"] == ticks.num_rows - market


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rename": ("changePercent", "change_pct")}, "has no column 'changePercent'"),
        ({"drop": "event_time"}, "has no column 'event_time'"),
        ({"retype": ("currentPrice", pa.bool_())}, "'currentPrice' has type bool"),
        ({"retype": ("event_time", pa.int64())}, "'event_time' has type int64"),
    ],
)
def test_schema_drift_fails_before_any_write_naming_the_column(lake_root, change, message):
    ticks = datasets.simulated(symbols=1, interval=300.0, seed=44)
    if "rename" in change:
        old, new = change["rename"]
        ticks = ticks.rename_columns([new if c == old else c for c in ticks.column_names])
    elif "drop" in change:
        ticks = ticks.drop_columns([change["drop"]])
    else:
        column, kind = change["retype"]
        values = (
            [bool(i % 2) for i in range(ticks.num_rows)]
            if kind == pa.bool_()
            else range(ticks.num_rows)
        )
        ticks = ticks.set_column(
            ticks.schema.get_field_index(column), column, pa.array(values, kind)
        )
    write_silver(lake_root, ticks)
    result = run_range(lake_root, "2026-01-05-14:00", "2026-01-05-15:00", raise_on_error=False)
    assert not result.success
    # Silver's blocking checks guard the assets' own launch too: the step fails naming it.
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert "silver_column_contract" in failure.message and message in failure.message
    lake = DeltaLake(root=lake_root)
    for table in (SPY_RETURNS_TABLE, JOINED_RETURNS_TABLE, GOLD_TABLE, QUARANTINE_TABLE):
        assert lake.open(table) is None


def test_degenerate_windows_give_null_beta_never_an_error(lake_root):
    market = [("SPY", 500.0, 0.2, datasets.at(14, m)) for m in (0, 10, 20)]  # constant
    ticks = datasets.ticks(
        market
        + [("FLAT", 10.0, 0.5, datasets.at(14, 5)), ("FLAT", 10.1, 0.7, datasets.at(14, 15))]
        + [("SPY", 501.0, 0.9, datasets.at(18))]
        + [("SINGLE", 20.0, 0.1, datasets.at(17, 30))]  # pairs with the 18:00 tick only
        + [("LONELY", 30.0, 0.1, datasets.at(22))]  # no market tick within an hour
    )
    gold = run_all(lake_root, ticks, min_sample_size=1)
    assert set(gold["s"]) == {"FLAT", "SINGLE"}
    flat = gold[gold["s"] == "FLAT"]
    assert flat["beta"].isna().all() and flat["cost_of_equity"].isna().all()
    single = gold[gold["s"] == "SINGLE"]
    assert (single["sample_size"] == 1).all()
    assert single["beta"].isna().all() and single["volatility"].isna().all()


def test_an_hour_without_ticks_materializes_an_empty_partition(lake_root):
    write_silver(lake_root, datasets.simulated(symbols=1, interval=300.0, seed=45))
    from dagster import AssetSelection

    from beta_assets.assets.gold import gold_beta_metrics
    from beta_assets.assets.returns import joined_returns, spy_returns

    selection = AssetSelection.assets(spy_returns, joined_returns, gold_beta_metrics)
    run_partition(lake_root, "2026-01-05-03:00", selection)
    for table in (SPY_RETURNS_TABLE, JOINED_RETURNS_TABLE, GOLD_TABLE):
        frame = read_table(lake_root, table)
        assert len(frame) == 0


# --- blank symbols: whitespace of any kind, or invisible characters, and nothing else

BLANK_SYMBOLS = ["\t", "\n", " \u00a0", "\u3000", "\u2003", "\u200b\ufeff"]
PADDED_MARKET = " spy\t"
LAST_MARKET_TICK = datasets.at(21, 10)  # after every ticker tick: the market leads
LAST_BLANK_TICK = datasets.at(21, 20)  # after everything: a blank must not move a watermark


@dataclass(frozen=True)
class BlankSymbols:
    silver: pa.Table  # as the feed wrote it
    meant: pa.Table  # what it means: the blank rows gone, the padded market SPY
    marks: HighWaterMarks  # of `meant`
    blank_rows: list[str]


@pytest.fixture(scope="module")
def blank_symbols() -> BlankSymbols:
    """A day whose market is padded with whitespace in every 5th row and in its last tick,
    and ticks whose symbols are blank in the middle of the day and after its end."""
    clean = datasets.simulated(symbols=2, interval=120.0, seed=46)
    meant = pa.concat_tables([clean, datasets.ticks([("SPY", 500.0, 0.3, LAST_MARKET_TICK)])])
    rows = meant.to_pylist()
    for row in [row for row in rows if row["s"] == "SPY"][::5] + rows[-1:]:
        row["s"] = PADDED_MARKET
    blank_rows = [*BLANK_SYMBOLS, "\t"]
    blank = [(s, 10.0, 0.1, BAD_TIME) for s in BLANK_SYMBOLS] + [("\t", 10.0, 0.1, LAST_BLANK_TICK)]
    silver = pa.concat_tables(
        [pa.Table.from_pylist(rows, schema=clean.schema), datasets.ticks(blank)]
    )
    tickers = pc.filter(meant.column("event_time"), pc.not_equal(meant.column("s"), "SPY"))
    marks = HighWaterMarks(market=LAST_MARKET_TICK, tickers=pc.max(tickers).as_py())
    return BlankSymbols(silver, meant, marks, blank_rows)


def test_blank_symbols_are_quarantined_and_a_padded_market_is_the_market(
    spark, lake_root, blank_symbols
):
    write_silver(lake_root, blank_symbols.silver)
    first, last = covering_keys(blank_symbols.silver)
    result = materialize(  # the pipeline with silver's checks, as beta_pipeline runs them
        [*ASSETS, silver_ticks_checks],
        selection=COMPUTED | AssetSelection.checks(silver_ticks_checks),
        resources=resources(lake_root, max_bad_share=0.05),
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
    )
    blanks = len(blank_symbols.blank_rows)
    metadata = materialized_metadata(result, SPY_RETURNS_TABLE)
    assert metadata["quarantined_rows"] == metadata["quarantined_empty_symbol"] == blanks
    quarantine = read_table(lake_root, QUARANTINE_TABLE)
    assert sorted(quarantine["s"]) == sorted(blank_symbols.blank_rows)
    assert set(quarantine["quarantine_reason"]) == {"empty_symbol"}

    # Silver's checks count the blanks as unusable and see a market in the padded last hour.
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {name: e.description for name, e in checks.items() if not e.passed} == {}
    shares = checks["silver_value_shares"].metadata["unusable_by_reason"].value
    assert shares == {"empty_symbol": blanks}

    gold = read_table(lake_root, GOLD_TABLE)
    assert set(gold["s"]) == {"T001", "T002"}
    assert_same_windows(gold, notebook_gold(spark.createDataFrame(blank_symbols.meant)).toPandas())
    # Final by the high-water marks of what silver means: blanks move no watermark.
    cutoff = blank_symbols.marks.final_before()
    assert (gold["is_final"] == (gold["window_end"] < cutoff)).all()
    assert gold["is_final"].any() and not gold["is_final"].all()


def test_the_sensor_and_spark_agree_on_high_water_marks_despite_blanks(
    spark, lake_root, blank_symbols
):
    write_silver(lake_root, blank_symbols.silver)
    driver = SensorDriver(lake_root)
    driver.evaluate()
    assert SilverCursor.from_json(driver.cursor).marks == blank_symbols.marks
    lake = DeltaLake(root=lake_root)
    in_spark = silver_high_water_marks(spark, lake, lake.require(SILVER_TABLE), "SPY")
    assert in_spark == blank_symbols.marks

    # A commit of blanks only: 6 hours behind (not late: no symbol) and far ahead.
    behind, ahead = datasets.at(15), datasets.at(23)
    added = datasets.ticks([("\u3000\ufeff", 10.0, 0.1, behind), ("\u200b", 10.0, 0.1, ahead)])
    write_silver(lake_root, added)
    assert late_tick_count(added, "SPY", blank_symbols.marks) == 0
    driver.evaluate()
    assert SilverCursor.from_json(driver.cursor).marks == blank_symbols.marks


def test_import_quarantines_blank_symbols_and_trims_the_rest(lake_root, tmp_path, monkeypatch):
    capture = tmp_path / "capture.parquet"
    symbols = [*BLANK_SYMBOLS, PADDED_MARKET, "\ufeffT001\u200b", "\u3000t002\u00a0"]
    pq.write_table(
        pa.table(
            {
                "s": symbols,
                "currentPrice": [10.0] * len(symbols),
                "changePercent": [0.1] * len(symbols),
                "event_time": [BAD_TIME] * len(symbols),
            }
        ),
        capture,
    )
    monkeypatch.setenv(LAKE_ENV, lake_root)
    assert tickbeta(["import", str(capture)]) == 0
    lake = DeltaLake(root=lake_root)
    assert lake.require(SILVER_TABLE).to_pyarrow_table().column("s").to_pylist() == [
        "SPY",
        "T001",
        "T002",
    ]
    rejects = lake.require(IMPORT_REJECTS_TABLE).to_pyarrow_table().to_pandas()
    assert list(rejects["s"]) == BLANK_SYMBOLS
    assert set(rejects["quarantine_reason"]) == {"empty_symbol"}


def test_spy_returns_one_pass_equals_the_counts_and_rows_of_two(spark):
    """spy_returns counts silver for its blocking checks in the pass that keeps its rows: the
    counts and rows equal those of the two separate passes, noise and bad rows included, when
    the counted hours reach beyond the kept ones."""
    clean = datasets.simulated(symbols=2, interval=120.0, seed=43)
    typed = typed_ticks(dataframe_from_arrow(spark, dirty(clean)))
    settings = MetricSettings(noise=True)
    counted, kept = (datasets.at(14), datasets.at(17)), (datasets.at(15), datasets.at(16))

    grouped = quality_counts_with_kept_rows(typed, settings, counted, kept).toArrow()
    counts, rows = counts_and_kept_rows(grouped)

    expected_counts = silver_quality_counts(typed, settings.market_symbol, *counted).toPandas()
    groups = ["hour", QUARANTINE_REASON, "is_market"]
    pd.testing.assert_frame_equal(
        counts.sort_values(groups).reset_index(drop=True),
        expected_counts.sort_values(groups).reset_index(drop=True),
    )
    expected_rows = market_and_rejected_rows(typed, settings, *kept).toArrow()
    assert rows.num_rows > sum(EXPECTED_REASONS.values())  # market rows and every bad row
    order = [(name, "ascending") for name in rows.column_names]
    assert rows.schema == expected_rows.schema
    pd.testing.assert_frame_equal(  # NaN equals NaN here, unlike in Table.equals
        rows.sort_by(order).to_pandas(), expected_rows.sort_by(order).to_pandas()
    )

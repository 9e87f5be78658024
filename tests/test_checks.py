"""Every check passes on good data and fails, readably, on a crafted bad table."""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster import AssetCheckSeverity, AssetSelection, DagsterInstance, materialize
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from beta_assets import checks
from beta_assets.checks import (
    counted_high_water_marks,
    gold_results,
    joined_returns_results,
    silver_ticks_checks,
    spy_returns_results,
)
from beta_assets.metrics import MetricSettings
from beta_assets.settings import (
    EVENT_TIME,
    GOLD_TABLE,
    JOINED_RETURNS_TABLE,
    PRICE,
    QUARANTINE_TABLE,
    SILVER_TABLE,
    SLIDE,
    SPY_RETURNS_TABLE,
    SYMBOL,
)
from beta_assets.settings import WINDOW as WINDOW_LENGTH
from beta_assets.storage import silver_high_water_marks
from resources.lake import DeltaLake
from tests import datasets
from tests.pipeline import (
    ASSETS,
    COMPUTED,
    covering_keys,
    resources,
    run_range,
    write_silver,
)

WINDOW = (datasets.at(12), datasets.at(21))
SETTINGS = MetricSettings()


def run_with_checks(lake_root: str, ticks: pa.Table, instance: DagsterInstance | None = None):
    """The pipeline and silver's checks, as `beta_pipeline` runs them."""
    write_silver(lake_root, ticks)
    first, last = covering_keys(ticks)
    return materialize(
        [*ASSETS, silver_ticks_checks],
        selection=COMPUTED | AssetSelection.checks(silver_ticks_checks),
        resources=resources(lake_root),
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        raise_on_error=False,
        instance=instance,
    )


def evaluations(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def good_lake(tmp_path_factory, spark):
    root = str(tmp_path_factory.mktemp("good") / "lake")
    result = run_with_checks(root, datasets.simulated(symbols=2, interval=120.0, seed=61))
    assert result.success
    return root, result


def table(root: str, name: str) -> pa.Table:
    return DeltaLake(root=root).require(name).to_pyarrow_table()


def test_every_check_passes_on_good_data(good_lake):
    _, result = good_lake
    found = evaluations(result)
    assert set(found) == {
        "silver_column_contract",
        "silver_value_shares",
        "silver_exact_duplicates",
        "silver_market_every_hour",
        "spy_returns_contract",
        "band_statistics_consistent",
        "every_ticker_tick_in_a_bucket",
        "gold_contract",
        "gold_complete",
        "gold_fresh",
    }
    failed = {name: e.description for name, e in found.items() if not e.passed}
    assert failed == {}


def test_too_many_bad_prices_block_the_run_before_gold(lake_root):
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=62)
    prices = ticks.column("currentPrice").to_numpy().copy()
    prices[::10] = -1.0  # 10% non-positive, bound 1%
    ticks = ticks.set_column(1, "currentPrice", pa.array(prices))
    result = run_with_checks(lake_root, ticks)
    shares = evaluations(result)["silver_value_shares"]
    assert not shares.passed and "unusable" in shares.description
    assert not result.success
    lake = DeltaLake(root=lake_root)
    assert lake.open(GOLD_TABLE) is None and lake.open(SPY_RETURNS_TABLE) is None


def test_broken_silver_columns_fail_the_contract_naming_the_column(lake_root):
    ticks = datasets.simulated(symbols=1, interval=300.0, seed=63).drop_columns(["changePercent"])
    result = run_with_checks(lake_root, ticks)
    contract = evaluations(result)["silver_column_contract"]
    assert not contract.passed and "changePercent" in contract.description
    assert DeltaLake(root=lake_root).open(GOLD_TABLE) is None


def test_a_replayed_file_warns_but_does_not_block(lake_root):
    ticks = datasets.simulated(symbols=1, interval=300.0, seed=64)
    write_silver(lake_root, ticks)
    result = run_with_checks(lake_root, ticks)
    duplicates = evaluations(result)["silver_exact_duplicates"]
    assert not duplicates.passed and duplicates.severity == AssetCheckSeverity.WARN
    assert duplicates.metadata["duplicate_ticks"].value == ticks.num_rows
    assert result.success and DeltaLake(root=lake_root).open(GOLD_TABLE) is not None


def test_the_bucket_check_counts_the_valid_ticker_ticks_of_silver(lake_root):
    """Silver's own count (made by silver's checks for the run) leaves out bad ticks and the
    market, whichever path guarded the run."""
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=68)
    ticker_rows = np.flatnonzero(pc.not_equal(ticks.column(SYMBOL), SETTINGS.market_symbol))
    prices = ticks.column(PRICE).to_numpy().copy()
    prices[ticker_rows[:3]] = np.nan  # 3 unusable ticker ticks, under the bad-share bound
    ticks = ticks.set_column(ticks.schema.get_field_index(PRICE), PRICE, pa.array(prices))
    expected = len(ticker_rows) - 3
    with_checks = run_with_checks(lake_root + "_checked", ticks)
    write_silver(lake_root, ticks)
    guarded = run_range(lake_root, *covering_keys(ticks))
    for result in (with_checks, guarded):
        check = evaluations(result)["every_ticker_tick_in_a_bucket"]
        assert check.passed and check.metadata["valid_ticker_ticks"].value == expected


def test_high_water_marks_from_silver_counts_equal_a_read_of_silver(lake_root, spark):
    """Gold takes silver's high-water marks from the counts of silver's checks: the same marks
    as reading silver, with a ticker tick of unusable price moving its side and a tick with
    no symbol moving none."""
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=69)
    latest = max(ticks.column(EVENT_TIME).to_pylist())
    late = datasets.ticks(
        [
            ("T001", float("nan"), 0.1, latest + timedelta(seconds=30, microseconds=7)),
            ("", 10.0, 0.1, latest + timedelta(seconds=60)),
        ]
    )
    result = run_with_checks(lake_root, pa.concat_tables([ticks, late]))
    lake = DeltaLake(root=lake_root)
    snapshot = lake.require(SILVER_TABLE)
    counted = counted_high_water_marks(result.run_id, snapshot)
    read = silver_high_water_marks(spark, lake, snapshot, SETTINGS.market_symbol)
    assert counted == read
    assert counted.tickers == latest + timedelta(seconds=30, microseconds=7)


class _Snapshot:
    def __init__(self, version: int):
        self._version = version

    def version(self) -> int:
        return self._version


def test_silver_counts_are_kept_for_the_run_that_counted_last():
    start = datasets.at(15)
    counts = pd.DataFrame(
        {
            "hour": [pd.Timestamp(start)],
            checks.QUARANTINE_REASON: [None],
            "is_market": [False],
            "count": [7],
        }
    )
    hours = (start, start + timedelta(hours=1))
    checks.record_silver_counts("first-run", _Snapshot(3), hours, counts)
    assert checks.counted_valid_ticker_ticks("first-run", 3, *hours) == 7
    checks.record_silver_counts("next-run", _Snapshot(4), hours, counts)
    assert checks.counted_valid_ticker_ticks("next-run", 4, *hours) == 7
    assert checks.counted_valid_ticker_ticks("first-run", 3, *hours) is None


def test_counts_per_hour_give_a_span_only_where_they_sum_to_it_exactly():
    # Counted over 15:05 ... 17:45: hour 15 holds the ticks from 15:05, hour 17 up to 17:45.
    counted = (datasets.at(15, 5), datasets.at(17, 45))
    counts = pd.DataFrame(
        {
            "hour": [pd.Timestamp(datasets.at(h)) for h in (15, 16, 17, 16)],
            checks.QUARANTINE_REASON: [None, None, None, "bad_price"],
            "is_market": [False, False, False, False],
            "count": [11, 60, 45, 2],
        }
    )
    checks.record_silver_counts("run", _Snapshot(5), counted, counts)

    def valid(start: datetime, end: datetime) -> int | None:
        return checks.counted_valid_ticker_ticks("run", 5, start, end)

    assert valid(*counted) == 11 + 60 + 45
    assert valid(datasets.at(16), datasets.at(17)) == 60
    assert valid(datasets.at(15, 5), datasets.at(17)) == 11 + 60
    assert valid(datasets.at(16), datasets.at(17, 45)) == 60 + 45
    # Mid-hour ends other than the counted span's own: the hour's count holds more.
    assert valid(datasets.at(15, 10), datasets.at(17)) is None
    assert valid(datasets.at(16), datasets.at(17, 40)) is None
    assert valid(datasets.at(15), datasets.at(17)) is None  # outside what was counted


def test_buckets_that_miss_a_tick_fail_the_bucket_check(good_lake):
    root, _ = good_lake
    buckets = table(root, JOINED_RETURNS_TABLE)
    counters = ("paired_ticks", "unpaired_ticks", "duplicate_ticks")
    in_buckets = sum(pc.sum(buckets.column(name)).as_py() for name in counters)
    results = {r.check_name: r for r in joined_returns_results(buckets, buckets, in_buckets + 1)}
    assert not results["every_ticker_tick_in_a_bucket"].passed


def test_an_hour_without_market_ticks_warns_naming_the_hour(lake_root):
    ticks = datasets.without_market_between(
        datasets.simulated(symbols=1, interval=120.0, seed=65), datasets.at(16), datasets.at(17)
    )
    result = run_with_checks(lake_root, ticks)
    market = evaluations(result)["silver_market_every_hour"]
    assert not market.passed and market.severity == AssetCheckSeverity.WARN
    assert market.metadata["hours_without_market"].value == ["2026-01-05T16:00Z"]
    assert result.success  # the notebook has an answer for that hour: warn, do not block


GUARD_PASSED = "passes its blocking checks"


def run_messages(instance: DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def test_silver_checks_guard_a_launch_of_the_assets_alone(lake_root):
    """The UI's Materialize, asset backfills and `dg launch` select the assets, not silver's
    checks: a silver whose every price is unusable must still fail before anything is written."""
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=66)
    ticks = ticks.set_column(1, "currentPrice", pa.nulls(ticks.num_rows, pa.float64()))
    write_silver(lake_root, ticks)
    result = run_range(lake_root, *covering_keys(ticks), raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == SPY_RETURNS_TABLE
    assert f"{ticks.num_rows} of {ticks.num_rows} ticks unusable" in (
        failure.event_specific_data.error.message
    )
    lake = DeltaLake(root=lake_root)
    for name in (SPY_RETURNS_TABLE, JOINED_RETURNS_TABLE, GOLD_TABLE, QUARANTINE_TABLE):
        assert lake.open(name) is None, name


def test_the_guard_evaluates_only_the_blocking_silver_checks(lake_root, monkeypatch):
    """A launch of the assets alone reports no silver warnings: the guard skips their passes
    (the duplicates' shuffle of every tick's hash)."""

    def not_expected(*_):
        raise AssertionError("the guard counted duplicate ticks")

    monkeypatch.setattr(checks, "duplicate_tick_count", not_expected)
    ticks = datasets.simulated(symbols=1, interval=300.0, seed=70)
    write_silver(lake_root, ticks)
    assert run_range(lake_root, *covering_keys(ticks)).success


def test_an_assets_launch_guards_silver_from_spy_returns_own_read(lake_root, monkeypatch):
    """The guard's counts come from the pass in which spy_returns reads its market rows: a
    launch of the assets alone makes no separate count of silver for it."""

    def not_expected(*_):
        raise AssertionError("silver was counted apart from spy_returns' read")

    monkeypatch.setattr(checks, "silver_quality_counts", not_expected)
    ticks = datasets.simulated(symbols=2, interval=300.0, seed=71)
    write_silver(lake_root, ticks)
    instance = DagsterInstance.ephemeral()
    result = run_range(lake_root, *covering_keys(ticks), instance=instance)
    assert result.success
    guarded = [m for m in run_messages(instance, result.run_id) if GUARD_PASSED in m]
    assert len(guarded) == 1, guarded


def test_silver_is_checked_once_per_run_whatever_the_path(tmp_path):
    ticks = datasets.simulated(symbols=1, interval=300.0, seed=67)
    instance = DagsterInstance.ephemeral()
    write_silver(str(tmp_path / "alone"), ticks)
    alone = run_range(str(tmp_path / "alone"), *covering_keys(ticks), instance=instance)
    with_checks = run_with_checks(str(tmp_path / "checked"), ticks, instance)
    assert alone.success and with_checks.success
    guarded = [m for m in run_messages(instance, alone.run_id) if GUARD_PASSED in m]
    assert len(guarded) == 1, guarded  # by the first step; the others were told
    assert not [m for m in run_messages(instance, with_checks.run_id) if GUARD_PASSED in m]


def test_spy_returns_contract_names_the_failing_rows(good_lake):
    rows = table(good_lake[0], SPY_RETURNS_TABLE)
    repeated = pa.concat_tables([rows, rows.slice(0, 1)])
    hours = repeated.column("partition_hour").to_pylist()
    hours[5] = "1999-01-01T00"
    broken = repeated.set_column(
        repeated.schema.get_field_index("partition_hour"), "partition_hour", pa.array(hours)
    )
    (result,) = spy_returns_results(broken)
    assert not result.passed
    failures = result.metadata["failures_by_check"].value
    assert set(failures) == {
        "multiple_fields_uniqueness",
        "m_event_time outside its partition_hour",
    }
    assert "1999-01-01T00" in result.metadata["failing_rows"].value


def test_band_statistics_inconsistencies_are_reported(good_lake):
    rows = table(good_lake[0], JOINED_RETURNS_TABLE)
    counts = rows.column("pair_count").to_numpy().copy()
    counts[0] = -3
    sums = rows.column("sum_x").to_numpy().copy()
    sums[1] = np.nan
    broken = rows.set_column(
        rows.schema.get_field_index("pair_count"), "pair_count", pa.array(counts)
    )
    broken = broken.set_column(broken.schema.get_field_index("sum_x"), "sum_x", pa.array(sums))
    consistent, counted = joined_returns_results(broken, broken, valid_ticker_ticks=1)
    assert not consistent.passed and "failure" in consistent.description
    assert not counted.passed and "1 valid in silver" in counted.description


def gold_checks(rows: pa.Table, buckets: pa.Table, silver_latest, bound=timedelta(hours=1)):
    latest = pc.max(rows.column("window_start")).as_py()
    return {
        r.check_name: r
        for r in gold_results(
            rows, buckets.to_pandas(), SETTINGS, WINDOW, silver_latest, latest, bound
        )
    }


def test_gold_contract_reports_each_broken_rule(good_lake):
    root = good_lake[0]
    rows, buckets = table(root, GOLD_TABLE), table(root, JOINED_RETURNS_TABLE)
    frame = rows.to_pandas()
    frame.loc[0, "volatility"] = -1.0
    frame.loc[1, "beta"] = np.inf
    frame.loc[2, "cost_of_equity"] += 0.01
    frame.loc[3, "sample_size"] = 5
    frame.loc[4, "partition_hour"] = "2026-01-05T03"
    frame.loc[5, "window_start"] = frame.loc[6, "window_start"]
    frame.loc[5, "s"] = frame.loc[6, "s"]
    broken = pa.Table.from_pandas(frame, schema=rows.schema, preserve_index=False)
    result = gold_checks(broken, buckets, None)["gold_contract"]
    assert not result.passed
    failed = set(result.metadata["failures_by_check"].value)
    assert "cost_of_equity != rf + beta x premium" in failed
    assert "window not 2 hours, off the grid or outside its hour" in failed
    assert any("greater_than_or_equal_to(0" in name for name in failed)  # volatility
    assert any("greater_than_or_equal_to(20" in name for name in failed)  # sample size
    assert any("in_range" in name for name in failed)  # infinite beta
    assert any("unique" in name for name in failed)


def test_gold_completeness_finds_missing_and_extra_windows(good_lake):
    root = good_lake[0]
    rows, buckets = table(root, GOLD_TABLE), table(root, JOINED_RETURNS_TABLE)
    assert gold_checks(rows, buckets, None)["gold_complete"].passed
    missing = gold_checks(rows.slice(1), buckets, None)["gold_complete"]
    assert not missing.passed and "1 missing" in missing.description
    frame = rows.to_pandas()
    frame.loc[0, "window_start"] = frame.loc[0, "window_start"] + timedelta(days=2)
    shifted = pa.Table.from_pandas(frame, schema=rows.schema, preserve_index=False)
    extra = gold_checks(shifted, buckets, None)["gold_complete"]
    assert not extra.passed and "1 missing, 1 extra" in extra.description


def test_expected_windows_equal_a_sum_over_every_window():
    """Random sparse buckets of three symbols; a window is expected when the pair counts of
    its 24 buckets reach the sample size, counted here bucket by bucket."""
    from beta_assets.checks import expected_windows

    rng = np.random.default_rng(5)
    day = pd.Timestamp("2026-01-05 10:00", tz="UTC")
    rows = []
    for symbol in ("AAA", "BBB", "CCC"):
        for slot in sorted(rng.choice(200, size=60, replace=False)):
            rows.append((symbol, day + slot * SLIDE, int(rng.integers(0, 8))))
    buckets = pd.DataFrame(rows, columns=["s", "bucket_start", "pair_count"])
    start, end = (
        (day + timedelta(hours=3)).to_pydatetime(),
        (day + timedelta(hours=9)).to_pydatetime(),
    )
    brute = set()
    for symbol, group in buckets.groupby("s"):
        for k in range(-24, 200):
            window = day + k * SLIDE
            inside = (group["bucket_start"] >= window) & (
                group["bucket_start"] < window + WINDOW_LENGTH
            )
            if start <= window < end and group.loc[inside, "pair_count"].sum() >= 20:
                brute.add((symbol, window))
    assert len(brute) > 20
    expected = expected_windows(buckets.sample(frac=1, random_state=1), 20, start, end)
    assert set(zip(expected["s"], expected["window_start"], strict=True)) == brute
    assert len(expected) == len(brute)


def test_gold_freshness_warns_when_gold_lags_silver(good_lake):
    root = good_lake[0]
    rows, buckets = table(root, GOLD_TABLE), table(root, JOINED_RETURNS_TABLE)
    latest = pc.max(rows.column("window_start")).as_py()
    assert gold_checks(rows, buckets, latest + timedelta(minutes=30))["gold_fresh"].passed
    late = gold_checks(rows, buckets, latest + timedelta(hours=3))["gold_fresh"]
    assert not late.passed and late.severity == AssetCheckSeverity.WARN
    assert late.metadata["lag_minutes"].value == 180.0


def test_the_ci_gate_fails_when_a_check_fails(tmp_path, monkeypatch):
    from dagster import instance_for_test

    from beta_assets.feed.check_report import report

    ticks = datasets.simulated(symbols=1, interval=300.0, seed=66)
    expected = {("silver_ticks", "silver_exact_duplicates"), ("gold_beta_metrics", "gold_contract")}
    first, last = covering_keys(ticks)
    root = str(tmp_path / "lake")
    with instance_for_test() as instance:
        monkeypatch.setattr(DagsterInstance, "get", staticmethod(lambda: instance))

        def run() -> None:
            materialize(
                [*ASSETS, silver_ticks_checks],
                selection=COMPUTED | AssetSelection.checks(silver_ticks_checks),
                resources=resources(root),
                tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
                instance=instance,
            )

        write_silver(root, ticks)
        run()
        assert report(expected) == 0
        assert report(expected | {("gold_beta_metrics", "no_such_check")}) == 1
        write_silver(root, ticks)  # a replayed file: the duplicates check fails (WARN)
        run()
        assert report(expected) == 1

"""The UI as users live in it: `dagster dev` on a small demo lake, a partition range launched
through the GraphQL client, and the pages a user opens, read by headless Chromium.

The sensor is started STOPPED (TICKBETA_SENSOR_STATUS): on a fresh instance its first tick
would launch a full recompute of every hour silver holds, a run this test did not ask for,
racing the one it did. Screenshots and the dagster dev log go to tests/artifacts/.
"""

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass

import pandas as pd
import pytest
from dagster import AssetCheckKey, AssetKey, DagsterRunStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from beta_assets.assets.catalog import GOLD_SCHEMA, WINDOW_START
from beta_assets.assets.silver import SILVER_VERSION_READ_TAG
from beta_assets.definitions import beta_pipeline, build_definitions
from beta_assets.feed.feed import append_sessions
from beta_assets.feed.simulator import SimulationSpec
from beta_assets.partitions import hour_label, hour_of_key, partition_key
from beta_assets.settings import (
    GOLD_TABLE,
    JOINED_RETURNS_TABLE,
    LAKE_ENV,
    SENSOR_STATUS_ENV,
    SILVER_TABLE,
    SPARK_UI_ENV,
    SPY_RETURNS_TABLE,
)
from resources.lake import DeltaLake
from tests.dagster_dev import (
    ARTIFACTS,
    LOCATION,
    DagsterDev,
    launch_partition_backfill,
    metadata_of,
    run_record,
    running_dagster_dev,
    wait_for_backfill,
    wait_for_run,
)

pytestmark = pytest.mark.ui

# The day's last three hours: gold then reaches silver's latest tick, so gold_fresh can pass
# (a range from the middle of the day leaves gold legitimately stale).
FIRST_KEY, LAST_KEY = "2026-01-05-18:00", "2026-01-05-20:00"
RUN_KEYS = [FIRST_KEY, "2026-01-05-19:00", LAST_KEY]
GOLD_PARTITION = "2026-01-05-19:00"
RUN_TIMEOUT_SECONDS = 240
ASSETS = [SILVER_TABLE, SPY_RETURNS_TABLE, JOINED_RETURNS_TABLE, GOLD_TABLE]
# The demo's day, smaller: SPY and 4 symbols quoted every ~30 s (about 3,900 ticks).
DEMO = SimulationSpec(symbols=4, interval_seconds=30.0, seed=7)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking switches Chromium tries to reach Google's services, which
# a closed network refuses; a fresh profile per test keeps runs independent.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory) -> Iterator[DagsterDev]:
    root = tmp_path_factory.mktemp("ui")
    lake_root = str(root / "lake")
    append_sessions(DeltaLake(root=lake_root), DEMO, report=lambda _: None)
    env = {LAKE_ENV: lake_root, SENSOR_STATUS_ENV: "stopped", SPARK_UI_ENV: "false"}
    with running_dagster_dev(lake_root, root / "dagster_home", env) as dev:
        yield dev


@dataclass(frozen=True)
class LaunchedRun:
    run_id: str
    status: DagsterRunStatus
    gold_version_before: int | None


@pytest.fixture(scope="module")
def launched_run(dagster_dev) -> LaunchedRun:
    """One run over three partitions of the three assets, as a user or the sensor launches it."""
    gold = DeltaLake(root=dagster_dev.lake_root).open(GOLD_TABLE)
    run_id = dagster_dev.client().submit_job_execution(
        beta_pipeline.name,
        repository_location_name=LOCATION,
        tags={ASSET_PARTITION_RANGE_START_TAG: FIRST_KEY, ASSET_PARTITION_RANGE_END_TAG: LAST_KEY},
    )
    status = wait_for_run(dagster_dev, run_id, RUN_TIMEOUT_SECONDS)
    return LaunchedRun(run_id, status, gold.version() if gold else None)


def defined_checks(lake_root: str) -> dict[str, list[str]]:
    """The asset checks of the code location by asset (empty without checks)."""
    graph = build_definitions({LAKE_ENV: lake_root}).resolve_asset_graph()
    by_asset: dict[str, list[str]] = {}
    for key in sorted(graph.asset_check_keys, key=lambda key: key.to_user_string()):
        by_asset.setdefault(key.asset_key.to_user_string(), []).append(key.name)
    return by_asset


def checks_of_the_job(lake_root: str) -> set[AssetCheckKey]:
    """The checks a run of the whole beta_pipeline job executes."""
    job = build_definitions({LAKE_ENV: lake_root}).resolve_job_def(beta_pipeline.name)
    return set(job.asset_layer.asset_graph.asset_check_keys)


def test_a_range_launched_through_graphql_materializes_gold(dagster_dev, launched_run):
    assert launched_run.status == DagsterRunStatus.SUCCESS, dagster_dev.log_tail()
    lake = DeltaLake(root=dagster_dev.lake_root)
    silver_version = lake.require(SILVER_TABLE).version()
    gold = lake.require(GOLD_TABLE)
    assert gold.version() > (launched_run.gold_version_before or -1)

    rows = gold.to_pyarrow_table()
    # The column schema the UI shows is the one on disk.
    assert rows.schema.names[: len(GOLD_SCHEMA)] == GOLD_SCHEMA.names
    for field in GOLD_SCHEMA:
        assert rows.schema.field(field.name).type == field.type, field.name
    frame = rows.to_pandas()
    assert set(frame["partition_hour"]) == {hour_label(hour_of_key(key)) for key in RUN_KEYS}
    assert set(frame["silver_version"]) == {silver_version}
    assert frame["sample_size"].min() >= 20
    assert frame["beta"].notna().mean() > 0.9
    assert set(frame["s"]) == {f"T00{index}" for index in range(1, DEMO.symbols + 1)}

    record = run_record(dagster_dev, launched_run.run_id)
    assert record.tags[SILVER_VERSION_READ_TAG] == str(silver_version)
    rows_per_key = Counter(partition_key(start) for start in frame[WINDOW_START])
    gold_events = [
        event
        for event in record.of_type("MaterializationEvent")
        if event["assetKey"]["path"] == [GOLD_TABLE]
    ]
    assert sorted(event["partition"] for event in gold_events) == RUN_KEYS
    for event in gold_events:
        metadata = metadata_of(event)
        assert metadata["dagster/row_count"] == rows_per_key[event["partition"]] > 0
        assert metadata["rows_in_run"] == len(frame)
        assert metadata["silver_version"] == silver_version
        assert "data:image/png;base64," in metadata["plot"]
        assert "| beta" in metadata["preview"] or "beta |" in metadata["preview"]

    messages = "\n".join(record.messages())
    assert f"partitions {FIRST_KEY} ... {LAST_KEY} (3 hours)" in messages
    assert f"ticks of {DEMO.symbols} symbols" in messages


def test_the_checks_of_the_materialized_assets_passed(dagster_dev, launched_run):
    assert launched_run.status == DagsterRunStatus.SUCCESS, dagster_dev.log_tail()
    expected = checks_of_the_job(dagster_dev.lake_root)
    record = run_record(dagster_dev, launched_run.run_id)
    evaluations = [e["evaluation"] for e in record.of_type("AssetCheckEvaluationEvent")]
    evaluated = {
        AssetCheckKey(AssetKey(e["assetKey"]["path"]), e["checkName"]) for e in evaluations
    }
    assert evaluated == expected
    failed = [e for e in evaluations if not e["success"]]
    assert not failed, failed


# Metadata of a run rather than of the data: differs between two runs of the same hours.
PER_RUN_METADATA = {"table_version", "hours_replayed", "elapsed_seconds"}


@dataclass(frozen=True)
class UiBackfill:
    status: str
    run_ids: list[str]
    gold_after_job: pd.DataFrame


@pytest.fixture(scope="module")
def ui_backfill(dagster_dev, launched_run) -> UiBackfill:
    """The job's range launched again as the UI's *Materialize* launches it: an asset backfill
    of the three computed assets."""
    assert launched_run.status == DagsterRunStatus.SUCCESS, dagster_dev.log_tail()
    gold_after_job = sorted_gold(dagster_dev.lake_root)
    computed = [SPY_RETURNS_TABLE, JOINED_RETURNS_TABLE, GOLD_TABLE]
    backfill_id = launch_partition_backfill(dagster_dev, computed, RUN_KEYS)
    status, run_ids = wait_for_backfill(dagster_dev, backfill_id, RUN_TIMEOUT_SECONDS)
    return UiBackfill(status, run_ids, gold_after_job)


def sorted_gold(lake_root: str) -> pd.DataFrame:
    gold = DeltaLake(root=lake_root).require(GOLD_TABLE).to_pyarrow_table().to_pandas()
    return gold.sort_values(["s", WINDOW_START]).reset_index(drop=True)


def partition_metadata(record) -> dict[tuple[str, str], dict]:
    """Each (asset, partition) materialization's metadata, without what is the run's own."""
    return {
        (event["assetKey"]["path"][-1], event["partition"]): {
            label: value
            for label, value in metadata_of(event).items()
            if label not in PER_RUN_METADATA
        }
        for event in record.of_type("MaterializationEvent")
    }


def check_outcomes(record) -> dict[tuple[str, str], bool]:
    return {
        (e["evaluation"]["assetKey"]["path"][-1], e["evaluation"]["checkName"]): e["evaluation"][
            "success"
        ]
        for e in record.of_type("AssetCheckEvaluationEvent")
    }


def test_a_ui_backfill_of_a_range_is_one_run_equal_to_the_sensors_run(
    dagster_dev, launched_run, ui_backfill
):
    assert ui_backfill.status in {"COMPLETED", "COMPLETED_SUCCESS"}, dagster_dev.log_tail()
    assert len(ui_backfill.run_ids) == 1, ui_backfill.run_ids
    (run_id,) = ui_backfill.run_ids
    assert wait_for_run(dagster_dev, run_id, 10) == DagsterRunStatus.SUCCESS

    pd.testing.assert_frame_equal(sorted_gold(dagster_dev.lake_root), ui_backfill.gold_after_job)
    job, ui = run_record(dagster_dev, launched_run.run_id), run_record(dagster_dev, run_id)
    assert partition_metadata(ui) == partition_metadata(job)
    assert len(partition_metadata(ui)) == 3 * len(RUN_KEYS)
    # The sensor's job checks silver as a step of its own; the UI's run guards it in its steps.
    computed_checks = {key: ok for key, ok in check_outcomes(job).items() if key[0] != SILVER_TABLE}
    assert check_outcomes(ui) == computed_checks
    assert all(computed_checks.values()), computed_checks
    assert any("passes its blocking checks" in message for message in ui.messages())


@pytest.fixture
def browser_page(tmp_path):
    if not os.path.exists(CHROMIUM):
        message = "Debian's chromium is not installed (apt-get install chromium; see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tempfile.mkdtemp(dir=tmp_path, prefix="chromium-profile-"),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1600, "height": 1000},
        )
        context.set_default_timeout(30_000)
        try:
            yield context.new_page()
        finally:
            context.close()


def test_the_browser_shows_the_graph_checks_and_a_gold_partition_with_its_plot(
    dagster_dev, launched_run, browser_page
):
    from playwright.sync_api import expect

    assert launched_run.status == DagsterRunStatus.SUCCESS, dagster_dev.log_tail()
    page = browser_page
    page.goto(f"{dagster_dev.url}/asset-groups")
    dismiss_onboarding(page)
    graph = page.locator("svg")
    for name in ASSETS:
        expect(graph.get_by_text(name, exact=True).first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "ui_asset_graph.png")

    for asset, check_names in defined_checks(dagster_dev.lake_root).items():
        page.goto(f"{dagster_dev.url}/assets/{asset}?view=checks")
        for name in check_names:
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        page.screenshot(path=ARTIFACTS / f"ui_checks_{asset}.png")

    page.goto(f"{dagster_dev.url}/assets/{GOLD_TABLE}?view=overview")
    expect(page.get_by_text("CAPM: risk_free_rate + beta * market_premium.")).to_be_visible()
    expect(page.get_by_text("layer: gold")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "ui_gold_overview.png", full_page=True)

    page.goto(f"{dagster_dev.url}/assets/{GOLD_TABLE}?view=partitions&partition={GOLD_PARTITION}")
    gold_rows = DeltaLake(root=dagster_dev.lake_root).require(GOLD_TABLE).to_pyarrow_table()
    partition_rows = sum(
        partition_key(t) == GOLD_PARTITION for t in gold_rows[WINDOW_START].to_pylist()
    )
    row_count = page.locator("tr", has=page.get_by_text("dagster/row_count", exact=True))
    expect(row_count).to_contain_text(str(partition_rows))
    expect(page.locator("tr", has=page.get_by_text("preview", exact=True))).to_be_visible()
    page.screenshot(path=ARTIFACTS / "ui_gold_partition.png")

    plot_row = page.locator("tr", has=page.get_by_text("plot", exact=True))
    plot_row.get_by_text("[Show Markdown]").click()
    plot = page.locator("img[src^='data:image/png;base64,']")
    expect(plot).to_be_visible()
    assert plot.evaluate("image => [image.naturalWidth, image.naturalHeight]") == [640, 400]
    page.screenshot(path=ARTIFACTS / "ui_gold_plot.png")


def dismiss_onboarding(page) -> None:
    """A fresh Dagster instance greets its first visitor with a dialog over the page."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    # Not shown when dismissed before, or by a Dagster version without it.
    with suppress(PlaywrightTimeout):
        page.get_by_role("button", name="Skip").click(timeout=10_000)

"""Materialization metadata helpers: the plot of the top symbols and the tick counters."""

import base64
import io
import re
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pyarrow as pa
import pytest
from dagster import AssetKey, DagsterInvariantViolationError, MetadataValue
from PIL import Image

from beta_assets.assets.catalog import GOLD_SCHEMA, WINDOW_START
from beta_assets.assets.reporting import (
    ALIGNED_HIGH,
    ALIGNED_LOW,
    PLOT_ON_EVERY_PARTITION_UP_TO,
    add_metadata_per_partition,
    markdown_table,
    metrics_plot,
    plotted_series,
    rows_by_partition,
    run_plot_metadata,
    top_symbols,
)
from beta_assets.assets.returns import ticker_tick_counts
from beta_assets.assets.silver import SENSOR_TRIGGER_TAG
from beta_assets.band import BUCKET_SCHEMA
from beta_assets.partitions import hour_of_key, partition_key
from beta_assets.settings import SYMBOL

FIRST_WINDOW = datetime(2026, 1, 5, 14, 0, tzinfo=timezone.utc)
DATA_URI = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def gold_rows(sample_sizes: dict[str, int], windows: int = 12) -> pa.Table:
    """Gold rows with a constant sample size per symbol, a beta that drifts by window, and an
    aligned beta above it whose standard error grows by window (none in the first window)."""
    rows = []
    for rank, (symbol, size) in enumerate(sample_sizes.items()):
        for index in range(windows):
            beta = 0.5 + 0.1 * rank + 0.01 * index
            aligned = (beta + 0.5, 0.02 * index) if index else (None, None)
            start = FIRST_WINDOW + index * timedelta(minutes=5)
            rows.append(
                {
                    SYMBOL: symbol,
                    WINDOW_START: start,
                    "window_end": start + timedelta(hours=2),
                    "beta": beta,
                    "volatility": 0.1,
                    "momentum": 0.0,
                    "close_price": 100.0,
                    "sample_size": size,
                    "cost_of_equity": 0.0425 + beta * 0.05,
                    "is_final": False,
                    "beta_aligned": aligned[0],
                    "beta_aligned_se": aligned[1],
                }
            )
    return pa.Table.from_pylist(rows, schema=GOLD_SCHEMA)


def plotted_png(markdown: str) -> Image.Image:
    match = DATA_URI.search(markdown)
    assert match, markdown[:300]
    return Image.open(io.BytesIO(base64.b64decode(match.group(1))))


def test_plot_shows_the_symbols_with_the_most_pairs_as_an_inline_png():
    sizes = {"AAA": 30, "BBB": 90, "CCC": 50, "DDD": 70, "EEE": 20, "FFF": 60, "GGG": 40}
    markdown = metrics_plot(gold_rows(sizes), SYMBOL, WINDOW_START).value
    assert "5 symbols with the most pairs: BBB, DDD, FFF, CCC, GGG" in markdown
    image = plotted_png(markdown)
    assert image.format == "PNG"
    assert image.size == (640, 400)
    # The palette keeps it small in the event log; a blank image would have very few colours.
    assert len(markdown) < 80_000
    assert len(image.getcolors(maxcolors=256) or []) > 8


def test_plot_draws_beta_aligned_with_its_standard_error_band_beside_the_notebook_beta():
    rows = gold_rows({"AAA": 30, "BBB": 90, "CCC": 50}, windows=4)
    # Newest window first on disk: the plot still draws each symbol in time order.
    plotted = plotted_series(rows.take([11 - i for i in range(12)]), SYMBOL, WINDOW_START, 2)
    assert list(plotted) == ["BBB", "CCC"]
    bbb = plotted["BBB"]
    starts = [FIRST_WINDOW + i * timedelta(minutes=5) for i in range(4)]
    assert bbb[WINDOW_START].tolist() == starts
    assert bbb["beta"].tolist() == pytest.approx([0.6, 0.61, 0.62, 0.63])
    # The first window has no aligned beta: no band there, a gap in the line.
    assert bbb["beta_aligned"].isna().tolist() == [True, False, False, False]
    assert bbb[ALIGNED_LOW][1:].tolist() == pytest.approx([1.11 - 0.02, 1.12 - 0.04, 1.13 - 0.06])
    assert bbb[ALIGNED_HIGH][1:].tolist() == pytest.approx([1.11 + 0.02, 1.12 + 0.04, 1.13 + 0.06])
    assert bbb[[ALIGNED_LOW, ALIGNED_HIGH]].iloc[0].isna().all()
    assert plotted["CCC"]["beta_aligned"][1:].tolist() == pytest.approx([1.21, 1.22, 1.23])

    markdown = metrics_plot(rows, SYMBOL, WINDOW_START).value
    assert markdown.startswith(
        "beta_aligned (solid, its standard error as a band), the notebook's beta (dashed) and "
        "cost of equity by window_start"
    )


def test_fewer_symbols_than_the_top_are_all_plotted():
    markdown = metrics_plot(gold_rows({"ONE": 25, "TWO": 25}), SYMBOL, WINDOW_START).value
    assert "2 symbols with the most pairs: ONE, TWO" in markdown
    plotted_png(markdown)


def test_ties_in_sample_size_go_to_the_first_name():
    frame = gold_rows({"ZED": 40, "ABE": 40, "MID": 10}).to_pandas()
    assert top_symbols(frame, SYMBOL, 2) == ["ABE", "ZED"]


def test_no_rows_give_no_plot():
    assert metrics_plot(GOLD_SCHEMA.empty_table(), SYMBOL, WINDOW_START).value == "(no rows)"


def test_tick_counts_come_from_the_bucket_counters():
    rows = [
        {SYMBOL: "AAA", "paired_ticks": 10, "unpaired_ticks": 2},
        {SYMBOL: "AAA", "paired_ticks": 5, "unpaired_ticks": 0},
        {SYMBOL: "BBB", "paired_ticks": 0, "unpaired_ticks": 3},
    ]
    buckets = pa.Table.from_pylist(
        rows, schema=pa.schema([BUCKET_SCHEMA.field(name) for name in rows[0]])
    )
    assert ticker_tick_counts(buckets) == {"ticker_ticks": 20, "unpaired_ticks": 5, "symbols": 2}
    assert ticker_tick_counts(buckets.slice(0, 0)) == {
        "ticker_ticks": 0,
        "unpaired_ticks": 0,
        "symbols": 0,
    }


def test_rows_by_partition_are_each_hours_rows_in_their_order():
    rows = gold_rows({"T001": 5, "T002": 9}, windows=30)  # 14:00 ... 16:25, two symbols
    shuffled = rows.take(list(range(rows.num_rows))[::-1])
    by_key = rows_by_partition(shuffled, WINDOW_START)
    assert list(by_key) == ["2026-01-05-14:00", "2026-01-05-15:00", "2026-01-05-16:00"]
    for key, own in by_key.items():
        hour = hour_of_key(key)
        expected = [
            row
            for row in shuffled.to_pylist()
            if hour <= row[WINDOW_START] < hour + timedelta(hours=1)
        ]
        assert own.to_pylist() == expected
    assert rows_by_partition(rows.slice(0, 0), WINDOW_START) == {}


def test_a_preview_is_a_markdown_table_of_its_rows():
    rows = gold_rows({"T001": 5}, windows=2)
    lines = markdown_table(rows.select([SYMBOL, WINDOW_START, "beta", "beta_aligned"])).split("\n")
    assert lines == [
        f"| {SYMBOL} | {WINDOW_START} | beta | beta_aligned |",
        "|:---|:---|---:|---:|",
        "| T001 | 2026-01-05 14:00:00+00:00 | 0.5 |  |",
        "| T001 | 2026-01-05 14:05:00+00:00 | 0.51 | 1.01 |",
    ]


class _ContextWithoutAccumulator:
    """An asset context whose step keeps its metadata elsewhere (another Dagster version)."""

    asset_key = AssetKey("gold_beta_metrics")
    partition_keys = ["2026-01-05-14:00", "2026-01-05-15:00"]

    def __init__(self):
        self.added = []

    def get_step_execution_context(self) -> object:
        return object()

    def add_asset_metadata(self, metadata, partition_key):
        self.added.append((partition_key, metadata))


def test_partition_metadata_goes_through_dagsters_call_where_its_step_differs():
    context = _ContextWithoutAccumulator()
    per_partition = {key: {"dagster/row_count": 1} for key in context.partition_keys}
    add_metadata_per_partition(context, per_partition)
    assert context.added == list(per_partition.items())


def test_metadata_for_a_partition_the_run_does_not_target_is_refused():
    context = _ContextWithoutAccumulator()
    with pytest.raises(DagsterInvariantViolationError, match="2026-01-05-16:00"):
        add_metadata_per_partition(context, {"2026-01-05-16:00": {"dagster/row_count": 1}})
    assert context.added == []


class _ContextOfHours(_ContextWithoutAccumulator):
    def __init__(self, hours: int, tags: dict[str, str] | None = None):
        super().__init__()
        first = datetime(2026, 1, 5, tzinfo=timezone.utc)
        self.partition_keys = [partition_key(first + timedelta(hours=h)) for h in range(hours)]
        self.run = SimpleNamespace(tags=tags or {})


def test_a_runs_plot_is_on_every_partition_up_to_two_days_then_on_the_newest():
    plot = MetadataValue.md("a plot")
    short = _ContextOfHours(PLOT_ON_EVERY_PARTITION_UP_TO)
    assert run_plot_metadata(short, plot) == {"plot": plot}
    assert short.added == []
    long = _ContextOfHours(PLOT_ON_EVERY_PARTITION_UP_TO + 1)
    assert run_plot_metadata(long, plot) == {}
    assert long.added == [(long.partition_keys[-1], {"plot": plot})]


def test_a_sensors_run_has_its_plot_on_its_newest_partition_only():
    """A live feed's run a minute would otherwise store its plot once per partition."""
    plot = MetadataValue.md("a plot")
    minute = _ContextOfHours(9, tags={SENSOR_TRIGGER_TAG: "append"})
    assert run_plot_metadata(minute, plot) == {}
    assert minute.added == [(minute.partition_keys[-1], {"plot": plot})]

"""Materialization metadata helpers: the plot of the top symbols and the tick counters."""

import base64
import io
import re
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from PIL import Image

from beta_assets.assets.catalog import GOLD_SCHEMA, WINDOW_START
from beta_assets.assets.reporting import metrics_plot, top_symbols
from beta_assets.assets.returns import ticker_tick_counts
from beta_assets.band import BUCKET_SCHEMA
from beta_assets.settings import SYMBOL

FIRST_WINDOW = datetime(2026, 1, 5, 14, 0, tzinfo=timezone.utc)
DATA_URI = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def gold_rows(sample_sizes: dict[str, int], windows: int = 12) -> pa.Table:
    """Gold rows with a constant sample size per symbol and a beta that drifts by window."""
    rows = []
    for rank, (symbol, size) in enumerate(sample_sizes.items()):
        for index in range(windows):
            beta = 0.5 + 0.1 * rank + 0.01 * index
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

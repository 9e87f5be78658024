"""Materialization metadata people want to read: counts, lineage, time range, a preview, a plot."""

import base64
import io
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext, DagsterInvariantViolationError, MetadataValue
from dagster._core.execution.context.metadata_logging import (
    AssetMetadataHandle,
    OutputMetadataAccumulator,
)

from beta_assets.assets.silver import SENSOR_TRIGGER_TAG
from beta_assets.band import epoch_micros
from beta_assets.partitions import hourly_partitions, partition_key
from beta_assets.settings import PARTITION_SPAN_MICROS
from beta_assets.storage import SilverRead, WrittenHours, micros_to_utc

PREVIEW_ROWS = 20
PLOT_SYMBOLS = 5
# Dagster copies a run's metadata into each of its partitions' events: the plot (25-50 kB)
# goes on every partition of runs by hand up to two days, on the newest one only beyond (a
# 3,296-partition run's plot is 50 kB: 165 MB of event log otherwise) and on a sensor's runs:
# a live feed's run a minute over 9 partitions added 1.25-1.38 MB to the instance's history
# with a copy per partition, 0.78-0.89 MB with one.
PLOT_ON_EVERY_PARTITION_UP_TO = 48
_PLOT_SIZE_INCHES = (8, 5)
_PLOT_DPI = 80  # 640 x 400 pixels, readable in the UI
# The PNG goes into the event log on every materialization: a 64-colour palette makes it about
# 4x smaller (~25 kB) than matplotlib's true-colour output and looks the same.
_PLOT_COLOURS = 64
_PLOTTED_COLUMNS = ["beta", "beta_aligned", "beta_aligned_se", "cost_of_equity", "sample_size"]
ALIGNED_LOW, ALIGNED_HIGH = "beta_aligned_low", "beta_aligned_high"  # beta_aligned -/+ its se


class Stopwatch:
    def __init__(self) -> None:
        self._started = time.monotonic()

    def seconds(self) -> float:
        return round(time.monotonic() - self._started, 3)


def partition_span(context: AssetExecutionContext) -> str:
    """The run's partitions as a person reads them: first ... last (count)."""
    keys = context.partition_keys
    hours = f"{len(keys)} hour{'s' if len(keys) != 1 else ''}"
    return f"{keys[0]} ({hours})" if len(keys) == 1 else f"{keys[0]} ... {keys[-1]} ({hours})"


def spark_job_label(context: AssetExecutionContext) -> str:
    """How the asset's Spark jobs are named in the Spark UI."""
    return f"tickbeta {context.asset_key.to_user_string()} {partition_span(context)}"


def commit_metadata(context: AssetExecutionContext, silver_version: int) -> dict[str, str]:
    """What a Delta commit records about the run that wrote it (never settings or secrets)."""
    keys = context.partition_keys
    return {
        "dagster_run_id": context.run_id,
        "dagster_partitions": f"{keys[0]}...{keys[-1]}",
        "silver_version": str(silver_version),
    }


def warn_if_kept_newer(context: AssetExecutionContext, written: WrittenHours) -> None:
    if written.kept_newer:
        context.log.warning(
            f"{len(written.kept_newer)} hour(s) kept as they are, since the table holds them "
            f"from a newer silver version than this run read: {', '.join(written.kept_newer)}"
        )


def run_metadata(
    written: WrittenHours, silver_version: int, watch: Stopwatch, table_uri: str
) -> dict:
    """What every partition of a run shares: the table, its commit, the silver read, the time."""
    return {
        "dagster/uri": MetadataValue.path(table_uri),
        "silver_version": MetadataValue.int(silver_version),
        "table_version": MetadataValue.int(written.table_version),
        "hours_replaced": MetadataValue.int(written.hours),
        # Hours this silver version had already produced: a replayed run, rewritten identically.
        "hours_replayed": MetadataValue.int(written.replayed_hours),
        "rows_in_run": MetadataValue.int(written.rows),
        # Hours this run computed from an older silver version than the table holds: kept.
        "hours_kept_newer": MetadataValue.json(list(written.kept_newer)),
        "elapsed_seconds": MetadataValue.float(watch.seconds()),
    }


def add_partition_metadata(
    context: AssetExecutionContext,
    rows: pa.Table,
    time_column: str,
    details: Callable[[pa.Table], dict] | None = None,
    recomputed: tuple[datetime, datetime] | None = None,
) -> None:
    """Each partition's own row count and time range (and `details` of its rows).

    A run over a range reports one materialization per partition: without this, every
    partition's page would show the counts of the whole run. Partitions outside
    `recomputed` (an incremental run's reach) were left as they were: they say so.
    """
    own_rows = rows_by_partition(rows, time_column)
    no_rows = rows.slice(0, 0)
    per_partition = {}
    for key in context.partition_keys:
        hour = hourly_partitions.time_window_for_partition_key(key).start
        if recomputed is not None and not recomputed[0] <= hour < recomputed[1]:
            per_partition[key] = {"recomputed": False}
            continue
        own = own_rows.get(key, no_rows)
        low, high = _time_range(own, time_column)
        per_partition[key] = {
            "dagster/row_count": MetadataValue.int(own.num_rows),
            "event_time_min": MetadataValue.text(low),
            "event_time_max": MetadataValue.text(high),
            **(details(own) if details else {}),
        }
    add_metadata_per_partition(context, per_partition)


def add_metadata_per_partition(
    context: AssetExecutionContext, per_partition: Mapping[str, Mapping[str, Any]]
) -> None:
    """`context.add_asset_metadata(metadata, partition_key=key)` for every key at once.

    Dagster checks each call's key by listing every key of the run's range: quadratic in the
    partitions (1.2 ms a call at 3,296 partitions, 9,888 calls a run). The keys here are the
    run's own, so the step's metadata is extended in one go where Dagster keeps it as this
    version does; else through the public call, key by key.
    """
    unknown = set(per_partition) - set(context.partition_keys)
    if unknown:
        raise DagsterInvariantViolationError(
            f"metadata for partitions the run does not target: {sorted(unknown)}"
        )
    step = context.get_step_execution_context()
    accumulator = getattr(step, "_metadata_accumulator", None)
    if not isinstance(accumulator, OutputMetadataAccumulator):
        for key, metadata in per_partition.items():
            context.add_asset_metadata(metadata, partition_key=key)
        return
    merged = dict(accumulator.per_output_metadata)
    for key, metadata in per_partition.items():
        handle = AssetMetadataHandle(asset_key=context.asset_key, partition_key=key)
        merged[handle] = {**merged.get(handle, {}), **metadata}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)


def rows_by_partition(rows: pa.Table, time_column: str) -> dict[str, pa.Table]:
    """The rows of each hourly partition (by the hour `time_column` falls in), in their order.

    One sort and a slice per partition: filtering the run's rows once per partition took
    1.6 ms a partition on gold's 202k rows of 3,296 partitions (5.4 s; the sort 0.12 s).
    """
    timed = rows.filter(pc.is_valid(rows.column(time_column)))
    hours = epoch_micros(timed.column(time_column)) // PARTITION_SPAN_MICROS
    order = np.argsort(hours, kind="stable")
    ordered, ordered_hours = timed.take(order), hours[order]
    bounds = [0, *(np.flatnonzero(np.diff(ordered_hours)) + 1).tolist(), len(ordered_hours)]
    return {
        partition_key(micros_to_utc(int(ordered_hours[first]) * PARTITION_SPAN_MICROS)): (
            ordered.slice(first, last - first)
        )
        for first, last in zip(bounds[:-1], bounds[1:], strict=True)
        if last > first
    }


def read_metadata(silver: SilverRead) -> dict:
    files = silver.files
    return {
        "silver_files_read": MetadataValue.int(len(files.uris)),
        "silver_files_total": MetadataValue.int(files.total_files),
        "silver_bytes_read": MetadataValue.int(files.bytes),
        "silver_bytes_total": MetadataValue.int(files.total_bytes),
    }


def preview(rows: pa.Table, sort_by: list[tuple[str, str]]) -> MetadataValue:
    head = rows.sort_by(sort_by).slice(0, PREVIEW_ROWS)
    return MetadataValue.md(markdown_table(head) if head.num_rows else "(no rows)")


def markdown_table(rows: pa.Table) -> str:
    """`rows` as a Markdown pipe table: numbers right-aligned, floats to 6 significant digits,
    nulls empty. Written here rather than through pandas' `to_markdown` (tabulate), which took
    3 ms a table: one per partition of a run."""
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in rows.schema.types]
    columns = [[_cell(value) for value in column.to_pylist()] for column in rows.columns]
    lines = [
        "| " + " | ".join(rows.column_names) + " |",
        "|" + "|".join("---:" if right else ":---" for right in numeric) + "|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in zip(*columns, strict=True)]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def run_plot_metadata(context: AssetExecutionContext, plot: MetadataValue) -> dict:
    """The run's plot as metadata of its result (every partition's event), or, on a sensor's
    run or one of more than `PLOT_ON_EVERY_PARTITION_UP_TO` partitions, of its newest partition
    only."""
    keys = context.partition_keys
    by_sensor = SENSOR_TRIGGER_TAG in context.run.tags
    if len(keys) <= PLOT_ON_EVERY_PARTITION_UP_TO and not by_sensor:
        return {"plot": plot}
    add_metadata_per_partition(context, {keys[-1]: {"plot": plot}})
    return {}


def metrics_plot(
    rows: pa.Table, symbol: str, time_column: str, top: int = PLOT_SYMBOLS
) -> MetadataValue:
    """beta_aligned with its standard error, the notebook's beta and cost of equity over time
    for the `top` symbols by total sample size.

    A PNG inside markdown as a data URI: the Dagster UI's markdown renderer allows `data:`
    image sources, so the plot shows on the materialization with nothing stored elsewhere.
    """
    if rows.num_rows == 0:
        return MetadataValue.md("(no rows)")
    plotted = plotted_series(rows, symbol, time_column, top)
    picture = _plot_png(plotted, time_column)
    names = ", ".join(plotted)
    low, high = _time_range(rows, time_column)
    return MetadataValue.md(
        f"beta_aligned (solid, its standard error as a band), the notebook's beta (dashed) and "
        f"cost of equity by {time_column} ({low} ... {high}, every partition of the run) for "
        f"the {len(plotted)} symbols with the most pairs: {names}\n\n"
        f"![beta_aligned, beta and cost of equity of {names}](data:image/png;base64,{picture})"
    )


def plotted_series(
    rows: pa.Table, symbol: str, time_column: str, top: int
) -> dict[str, pd.DataFrame]:
    """What the plot draws: per top symbol (most pairs first), its windows in time order with
    beta_aligned's band, beta_aligned minus and plus its standard error."""
    frame = rows.select([symbol, time_column, *_PLOTTED_COLUMNS]).to_pandas()
    frame[ALIGNED_LOW] = frame["beta_aligned"] - frame["beta_aligned_se"]
    frame[ALIGNED_HIGH] = frame["beta_aligned"] + frame["beta_aligned_se"]
    return {
        name: frame[frame[symbol] == name].sort_values(time_column).reset_index(drop=True)
        for name in top_symbols(frame, symbol, top)
    }


def top_symbols(frame: pd.DataFrame, symbol: str, top: int) -> list[str]:
    """The symbols with the largest total sample_size; ties go to the first name."""
    totals = frame.groupby(symbol, as_index=False)["sample_size"].sum()
    ranked = totals.sort_values(["sample_size", symbol], ascending=[False, True])
    return ranked[symbol].head(top).tolist()


def _plot_png(plotted: dict[str, pd.DataFrame], time_column: str) -> str:
    # Imported here: matplotlib and Pillow cost every process that loads the code location
    # (each run's, the UI's) about 0.4 s, and only gold's step draws.
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from PIL import Image

    # A bare Figure renders through Agg without pyplot: no global backend, safe in any thread.
    # Fixed margins (room for the legend above): constrained layout drew the figure twice to
    # measure it, a third of the plot's 0.27 s, paid on every gold materialization.
    figure = Figure(figsize=_PLOT_SIZE_INCHES, dpi=_PLOT_DPI)
    figure.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.1, hspace=0.08)
    beta_axes, equity_axes = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    for rank, (name, series) in enumerate(plotted.items()):
        colour = f"C{rank % 10}"  # one per symbol: its lines and band in both panels
        times = series[time_column]
        beta_axes.fill_between(
            times, series[ALIGNED_LOW], series[ALIGNED_HIGH], color=colour, alpha=0.2, lw=0
        )
        beta_axes.plot(times, series["beta_aligned"], color=colour, linewidth=1.4, label=name)
        beta_axes.plot(times, series["beta"], color=colour, linewidth=1.0, linestyle="--")
        equity_axes.plot(times, series["cost_of_equity"], color=colour, linewidth=1.2)
    beta_axes.set_ylabel("beta")
    equity_axes.set_ylabel("cost of equity\n(from beta)")
    equity_axes.set_xlabel(f"{time_column} (UTC)")
    locator = AutoDateLocator()
    equity_axes.xaxis.set_major_locator(locator)
    equity_axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    # Above the panels, off the lines: what each kind of line is, then each symbol's colour.
    handles = _line_kinds() + beta_axes.get_legend_handles_labels()[0]
    figure.legend(handles=handles, loc="upper center", fontsize="small", ncols=len(handles))
    for axes in (beta_axes, equity_axes):
        axes.grid(alpha=0.3)
    rendered = io.BytesIO()
    figure.savefig(rendered, format="png")
    paletted = io.BytesIO()
    with Image.open(rendered) as image:
        image.convert("RGB").quantize(colors=_PLOT_COLOURS).save(paletted, "PNG")
    return base64.b64encode(paletted.getvalue()).decode("ascii")


def _line_kinds() -> list:
    """Legend entries for what each kind of line in the beta panel is, whatever the symbol."""
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], color="black", linewidth=1.4, label="beta_aligned (band: ± se)"),
        Line2D([], [], color="black", linewidth=1.0, linestyle="--", label="beta (notebook)"),
    ]


def _time_range(rows: pa.Table, column: str) -> tuple[str, str]:
    if rows.num_rows == 0:
        return "", ""
    low, high = pc.min(rows.column(column)).as_py(), pc.max(rows.column(column)).as_py()
    return _iso(low), _iso(high)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""

"""Window sums from bucket sums, in numpy: a 2-hour window is exactly 24 five-minute buckets.

Each window's sums are taken in the reference frame of its earliest bucket with pairs; every
other bucket is moved into that frame with the exact shift identities. Bar sums of the
aligned beta are plain sums. Nothing here knows Spark or Dagster.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beta_assets.band import BUCKET_SCHEMA, BUCKET_START, UTC_MICROS, WINDOW_FIELDS, epoch_micros
from beta_assets.settings import SYMBOL

WINDOW_START = "window_start"
_PLAIN_SUMS = (
    "pair_count",
    "paired_ticks",
    "unpaired_ticks",
    "aligned_bars",
    "sum_rm",
    "sum_rt",
    "sum_rm_rm",
    "sum_rt_rt",
    "sum_rm_rt",
)

# One row per (symbol, window): the window's sums, in its own reference frame.
WINDOW_SUMS_SCHEMA = pa.schema(
    [(SYMBOL, pa.string()), (WINDOW_START, UTC_MICROS)]
    + [BUCKET_SCHEMA.field(name) for name in WINDOW_FIELDS if name != BUCKET_START]
)


def window_sums(
    buckets: pa.Table, slide_us: int, buckets_per_window: int, start_us: int, end_us: int
) -> pa.Table:
    """Sums of every window starting in [start_us, end_us) that has pairs, for the buckets of
    whole symbols (every bucket of a symbol that the windows need must be present)."""
    with_pairs = buckets.filter(pc.greater(buckets.column("pair_count"), 0))
    if with_pairs.num_rows == 0:
        return WINDOW_SUMS_SCHEMA.empty_table()
    ordered = with_pairs.sort_by([(SYMBOL, "ascending"), (BUCKET_START, "ascending")])
    symbols = pc.dictionary_encode(ordered.column(SYMBOL)).combine_chunks()
    codes = symbols.indices.to_numpy().astype(np.int64)
    slots = epoch_micros(ordered.column(BUCKET_START)) // slide_us
    column = {name: _floats(ordered, name) for name in WINDOW_FIELDS if name != BUCKET_START}

    # Key = (symbol, slot) in one int64. Slots are offset by one window so that the windows
    # reaching back from a symbol's first bucket keep clear of the previous symbol's keys.
    base = int(slots.min()) - buckets_per_window
    spread = int(slots.max()) - base + buckets_per_window
    keys = codes * spread + (slots - base)
    window_keys = np.unique((keys[:, None] - np.arange(buckets_per_window)[None, :]).ravel())
    window_slots = window_keys % spread + base
    inside = (window_slots * slide_us >= start_us) & (window_slots * slide_us < end_us)
    window_keys, window_slots = window_keys[inside], window_slots[inside]
    if len(window_keys) == 0:
        return WINDOW_SUMS_SCHEMA.empty_table()

    lo = np.searchsorted(keys, window_keys, side="left")
    positions = lo[:, None] + np.arange(buckets_per_window)[None, :]
    members = np.minimum(positions, len(keys) - 1)
    present = (positions < len(keys)) & (
        keys[members] < (window_keys + buckets_per_window)[:, None]
    )
    sums = _shifted_sums(column, members, present)
    return pa.table(
        {
            SYMBOL: pc.take(symbols.dictionary, pa.array(window_keys // spread)),
            WINDOW_START: pa.array(window_slots * slide_us, pa.int64()).cast(UTC_MICROS),
            **sums,
        },
        schema=WINDOW_SUMS_SCHEMA,
    )


def _shifted_sums(
    column: dict[str, np.ndarray], members: np.ndarray, present: np.ndarray
) -> dict[str, pa.Array]:
    first = members[np.arange(len(members)), np.argmax(present, axis=1)]

    def gather(name: str) -> np.ndarray:
        return np.where(present, column[name][members], 0.0)

    n = gather("pair_count")
    dx = np.where(present, column["x_ref"][members] - column["x_ref"][first][:, None], 0.0)
    dy = np.where(present, column["y_ref"][members] - column["y_ref"][first][:, None], 0.0)
    sx, sy = gather("sum_x"), gather("sum_y")
    out = {name: gather(name).sum(axis=1) for name in _PLAIN_SUMS}
    out.update(
        x_ref=column["x_ref"][first],
        y_ref=column["y_ref"][first],
        sum_x=(sx + n * dx).sum(axis=1),
        sum_y=(sy + n * dy).sum(axis=1),
        sum_xx=(gather("sum_xx") + 2 * dx * sx + n * dx * dx).sum(axis=1),
        sum_yy=(gather("sum_yy") + 2 * dy * sy + n * dy * dy).sum(axis=1),
        sum_xy=(gather("sum_xy") + dx * sy + dy * sx + n * dx * dy).sum(axis=1),
        x_min=np.where(present, column["x_min"][members], np.inf).min(axis=1),
        x_max=np.where(present, column["x_max"][members], -np.inf).max(axis=1),
        y_min=np.where(present, column["y_min"][members], np.inf).min(axis=1),
        y_max=np.where(present, column["y_max"][members], -np.inf).max(axis=1),
    )
    # Buckets do not overlap in time: the latest paired tick is in the latest bucket.
    latest = np.where(present, column["last_paired_time"][members], -np.inf).argmax(axis=1)
    rows = members[np.arange(len(members)), latest]
    out["last_paired_time"] = column["last_paired_time"][rows]
    out["last_paired_price"] = column["last_paired_price"][rows]
    return {name: _typed(name, values) for name, values in out.items()}


def _typed(name: str, values: np.ndarray) -> pa.Array:
    kind = BUCKET_SCHEMA.field(name).type
    if pa.types.is_timestamp(kind):
        return pa.array(values.astype(np.int64), pa.int64()).cast(kind)
    if pa.types.is_integer(kind):
        return pa.array(np.rint(values).astype(np.int64), kind)
    return pa.array(values, kind)


def _floats(table: pa.Table, name: str) -> np.ndarray:
    values = table.column(name)
    if pa.types.is_timestamp(values.type):
        return epoch_micros(values).astype(np.float64)
    return values.to_numpy().astype(np.float64)

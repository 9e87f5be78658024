"""The run process plans; Spark's tasks read silver. Measured: its peak memory stays flat while
the ticks of the range grow tenfold (DESIGN.md, "Where the ticks flow").

Through Spark Connect the run process is only Python (the JVM, executors and Python workers
are the server's), so its resident memory is what a per-tick path would show: a day of ticks
shipped as Arrow costs its size several times over (read, combined, serialized as a plan).
"""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from beta_assets.feed.simulator import SimulationSpec, simulate_sessions
from beta_assets.settings import LAKE_ENV, SPARK_REMOTE_ENV, SPARK_UI_ENV
from tests.pipeline import TABLE_KEYS, covering_keys, write_silver
from tests.servers import spark_connect_server

SYMBOLS = 100
SPARSE_INTERVAL, DENSE_INTERVAL = 20.0, 2.0  # seconds between a symbol's ticks: 10x the ticks
# What the run process may grow by between the two; a per-tick path grows by well over 100 MB.
FLAT_BOUND_MB = 40


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory) -> str:
    with spark_connect_server(tmp_path_factory.mktemp("spark-connect"), memory="3g") as url:
        yield url


def peak_rss_of_run(env: dict[str, str], first: str, last: str) -> float:
    """`dagster asset materialize` over the range in its own process; its peak RSS in MB."""
    command = [
        str(Path(sys.executable).parent / "dagster"),
        *("asset", "materialize", "-m", "beta_assets.definitions"),
        *("--select", ",".join(TABLE_KEYS)),
        *("--partition-range", f"{first}...{last}"),
    ]
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = 0
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(run.stdout.read()), daemon=True)
    reader.start()
    process = psutil.Process(run.pid)
    while run.poll() is None:
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    reader.join(timeout=30)
    text = b"".join(output).decode(errors="replace")
    assert run.returncode == 0, text[-3000:]
    assert "RUN_SUCCESS" in text
    return peak / 2**20


def day_of_ticks(interval: float):
    spec = SimulationSpec(symbols=SYMBOLS, interval_seconds=interval, seed=31)
    return next(simulate_sessions(spec))


def test_the_run_process_memory_stays_flat_while_the_ticks_grow_tenfold(connect_url, tmp_path):
    peaks = {}
    for interval in (SPARSE_INTERVAL, DENSE_INTERVAL):
        ticks = day_of_ticks(interval)
        root = str(tmp_path / f"every-{interval:g}s")
        write_silver(root, ticks)
        env = {**os.environ, LAKE_ENV: root, SPARK_REMOTE_ENV: connect_url, SPARK_UI_ENV: "false"}
        env.pop("DAGSTER_HOME", None)  # an ephemeral instance
        peaks[ticks.num_rows] = peak_rss_of_run(env, *covering_keys(ticks))

    (sparse, sparse_mb), (dense, dense_mb) = sorted(peaks.items())
    print(f"run process peak RSS by ticks (MB): {peaks}")
    assert dense >= 9 * sparse
    assert dense_mb - sparse_mb < FLAT_BOUND_MB, (
        f"run process peak {sparse_mb:.0f} MB at {sparse} ticks, {dense_mb:.0f} MB at {dense}"
    )

"""Benchmark: one day of silver through every way of running Spark, one run each.

    .venv/bin/python -m bench.scale_out                      # the 500-symbol day (11.7M ticks)
    .venv/bin/python -m bench.scale_out --size 100x1s --modes local connect-local

Each row is the README's `dagster asset materialize` over the day's hours in a new process
(JVM start included), on fresh derived tables: local Spark, a Spark Connect server, a Spark
standalone cluster with one and with two workers, each with the lake on this disk and on an
S3-compatible server (moto). The servers are the tests' own (tests/servers.py), on localhost.

It prints the end-to-end seconds, the run process's peak RSS (the Dagster process alone) and
the Spark driver's (the run process's JVM in local and cluster mode; the Connect server's JVM,
whose local executors share it, through Spark Connect). Written to bench/results/scale_out.md.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psutil

from bench.run_bench import RESULTS, SIZES, lake_for, silver_hours
from beta_assets.partitions import partition_key
from beta_assets.settings import (
    LAKE_ENV,
    SILVER_TABLE,
    SPARK_MASTER_ENV,
    SPARK_REMOTE_ENV,
    SPARK_UI_ENV,
)
from resources.lake import DeltaLake
from tests.pipeline import TABLE_KEYS
from tests.servers import (
    S3Server,
    lake_on,
    moto_s3_server,
    s3_client,
    s3_environment,
    spark_connect_server,
    spark_standalone_cluster,
)

BUCKET = "tickbeta-bench"
# What each Spark gets on this 2-core machine: the two cores, and memory a laptop has to spare.
CORES = 2
CONNECT_MEMORY = "6g"
WORKER_MEMORY = "6g"


@dataclass(frozen=True)
class Mode:
    name: str
    spark: str  # local | connect | cluster-1 | cluster-2
    lake: str  # local | s3


MODES = {
    mode.name: mode
    for mode in (
        Mode("local", "local", "local"),
        Mode("local-s3", "local", "s3"),
        Mode("connect-local", "connect", "local"),
        Mode("connect-s3", "connect", "s3"),
        Mode("cluster1-local", "cluster-1", "local"),
        Mode("cluster2-local", "cluster-2", "local"),
        Mode("cluster1-s3", "cluster-1", "s3"),
    )
}


@dataclass
class Result:
    mode: str
    seconds: float
    run_process_mb: float
    driver_mb: float
    note: str = ""


class PeakRss:
    """Peak RSS of the run process and of the Spark driver JVM, sampled every 50 ms."""

    def __init__(self, run_pid: int, driver: Callable[[], psutil.Process | None]) -> None:
        self.run_process = self.driver = 0
        self._run = psutil.Process(run_pid)
        self._driver = driver
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_process = max(self.run_process, self._run.memory_info().rss)
                driver = self._driver() or _java_child(self._run)
                if driver is not None:
                    self.driver = max(self.driver, driver.memory_info().rss)
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.05)


def _java_child(process: psutil.Process) -> psutil.Process | None:
    return next((c for c in process.children(recursive=True) if c.name() == "java"), None)


def _connect_server_jvm(url: str) -> Callable[[], psutil.Process | None]:
    port = url.rsplit(":", 1)[-1]

    def find() -> psutil.Process | None:
        for process in psutil.process_iter(["name", "cmdline"]):
            line = " ".join(process.info["cmdline"] or [])
            if process.info["name"] == "java" and f"binding.port={port}" in line:
                return process
        return None

    return find


def materialize(env: dict[str, str], first: str, last: str, driver) -> tuple[float, PeakRss, str]:
    command = [
        str(Path(sys.executable).parent / "dagster"),
        *("asset", "materialize", "-m", "beta_assets.definitions"),
        *("--select", ",".join(TABLE_KEYS)),
        *("--partition-range", f"{first}...{last}"),
    ]
    started = time.monotonic()
    with tempfile.TemporaryFile() as log:
        run = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        with PeakRss(run.pid, driver) as peaks:
            run.wait()
        seconds = time.monotonic() - started
        log.seek(0)
        output = log.read().decode(errors="replace")
    if run.returncode != 0 or "RUN_SUCCESS" not in output:
        raise RuntimeError(f"run failed (exit {run.returncode}):\n{output[-4000:]}")
    return seconds, peaks, output


# --- lakes


def fresh_local_lake(source: DeltaLake, scratch: Path) -> DeltaLake:
    """The day's silver, copied, with no derived tables yet."""
    root = scratch / "lake"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(source.uri(SILVER_TABLE), root / SILVER_TABLE)
    return DeltaLake(root=str(root))


def fresh_s3_lake(source: DeltaLake, s3: S3Server, prefix: str) -> DeltaLake:
    """The day's silver uploaded file by file (log included) under a new prefix."""
    client = s3_client(s3.endpoint)
    table = Path(source.uri(SILVER_TABLE))
    for path in table.rglob("*"):
        if path.is_file():
            key = f"{prefix}/{SILVER_TABLE}/{path.relative_to(table)}"
            client.upload_file(str(path), BUCKET, key)
    return lake_on(s3, prefix)


# --- modes


@contextmanager
def spark_for(mode: Mode, logs: Path, s3: S3Server) -> Iterator[tuple[dict[str, str], Callable]]:
    """The environment a run of the mode gets, and how to find its driver's JVM."""
    executors_env = s3_environment(s3)  # as on a real cluster: credentials of their own
    if mode.spark == "local":
        yield {}, lambda: None
    elif mode.spark == "connect":
        with spark_connect_server(
            logs, cores=CORES, memory=CONNECT_MEMORY, env=executors_env
        ) as url:
            yield {SPARK_REMOTE_ENV: url}, _connect_server_jvm(url)
    else:
        workers = int(mode.spark.split("-")[1])
        with spark_standalone_cluster(
            logs,
            workers=workers,
            cores=CORES // workers,
            memory=WORKER_MEMORY,
            env=executors_env,
        ) as url:
            yield {SPARK_MASTER_ENV: url}, lambda: None


def run_mode(mode: Mode, source: DeltaLake, s3: S3Server, work: Path) -> Result:
    print(f"== {mode.name}", flush=True)
    scratch = work / mode.name
    scratch.mkdir(parents=True, exist_ok=True)
    if mode.lake == "s3":
        lake = fresh_s3_lake(source, s3, mode.name)
    else:
        lake = fresh_local_lake(source, scratch)
    start, end = silver_hours(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("DAGSTER_HOME", None)  # an ephemeral instance
    env.update({LAKE_ENV: lake.root, SPARK_UI_ENV: "false"})
    if mode.lake == "s3":
        env.update(s3_environment(s3))
    with spark_for(mode, scratch, s3) as (spark_env, driver):
        env.update(spark_env)
        seconds, peaks, _ = materialize(
            env, partition_key(start), partition_key(end - timedelta(hours=1)), driver
        )
    result = Result(mode.name, seconds, peaks.run_process / 2**20, peaks.driver / 2**20)
    print(f"   {result}", flush=True)
    return result


def table(results: list[Result], ticks: int, files: int) -> str:
    lines = [
        f"{ticks:,} ticks in {files} files; one run each, JVM start included",
        "",
        "| mode | end to end s | run process peak RSS MB | Spark driver peak RSS MB |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        memory = f"{r.run_process_mb:,.0f} | {r.driver_mb:,.0f}"
        lines.append(f"| {r.mode} | {r.seconds:.1f} | {memory} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="500x1s", choices=list(SIZES))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    source = lake_for(SIZES[args.size])
    snapshot = source.require(SILVER_TABLE)
    ticks = snapshot.to_pyarrow_dataset().count_rows()
    work = RESULTS / "scale_out"
    shutil.rmtree(work, ignore_errors=True)
    results = []
    with ExitStack() as stack:
        s3 = stack.enter_context(moto_s3_server(BUCKET, work.parent))
        for name in args.modes:
            results.append(run_mode(MODES[name], source, s3, work))
    output = (
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, size {args.size}: "
        + table(results, ticks, len(snapshot.file_uris()))
        + "\n"
    )
    (RESULTS / "scale_out.md").write_text(output)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

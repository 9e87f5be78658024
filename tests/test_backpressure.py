"""Backpressure under the real daemon: a feed appends to silver faster than runs finish, and the
project's sensor keeps at most one run of the pipeline queued or in flight while gold follows.

`dagster dev` (webserver and daemon) runs the project's code location and sensor, on the
instance settings users copy (deploy/dagster.yaml), with runs on a warm Spark Connect server.
The test appends a simulated day in slices: the first, then, once the sensor has requested a
run for it, the others one every 1.5 s, one of them hours late. A thread polls the instance
every 0.2 s for the pipeline's runs that are queued or not finished. Then the test waits until
a run has read the newest silver version having seen every version, and compares gold with a
full recompute of the final silver. The dagster dev log (daemon, run workers) is
tests/artifacts/dagster_dev_backpressure.log."""

import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from dagster import DagsterRunStatus, RunsFilter
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES, RunRecord

from bench.latency import append_to_gold_latencies
from beta_assets.assets.silver import SILVER_VERSION_READ_TAG, SILVER_VERSION_SEEN_TAG
from beta_assets.definitions import beta_pipeline
from beta_assets.settings import (
    EVENT_TIME,
    GOLD_COLUMNS,
    GOLD_TABLE,
    LAKE_ENV,
    SENSOR_INTERVAL_ENV,
    SILVER_TABLE,
    SPARK_REMOTE_ENV,
    SPARK_UI_ENV,
)
from resources.lake import DeltaLake
from tests import datasets
from tests.commands import open_instance
from tests.compare import ABSOLUTE_FLOOR, KEY, RELATIVE
from tests.dagster_dev import running_dagster_dev
from tests.pipeline import read_table, run_all, write_silver
from tests.servers import spark_connect_server

pytestmark = pytest.mark.daemon

# The daemon evaluates sensors at most every 5 s whatever their interval (dagster's
# MIN_INTERVAL_LOOP_TIME): 2 s asks for every loop.
SENSOR_INTERVAL_SECONDS = 2
APPEND_EVERY_SECONDS = 1.5  # a run takes several times that
SLICES = 12
# The slice with the day's second tenth of event times arrives after the ninth: hours behind
# the high-water marks (and the 3h watermark), so its windows take the late path.
LATE_SLICE, LATE_AFTER = 2, 9
POLL_SECONDS = 0.2
FIRST_RUN_TIMEOUT_SECONDS = 60
CATCH_UP_TIMEOUT_SECONDS = 150
LATE_TICKS_TAG = "tickbeta/late_ticks"
LOG_NAME = "dagster_dev_backpressure.log"
ANSI_COLOR = re.compile(r"\x1b\[[0-9;]*m")
DAEMON_LINE = re.compile(r"dagster\.daemon|silver_new_versions|RUN_FAILURE|STEP_FAILURE|Error")
# silver_version is lineage: an hour computed at an earlier version says so.
COMPARED = [*GOLD_COLUMNS, "partition_hour"]


def feed_slices(ticks: pa.Table) -> list[pa.Table]:
    """The day in time-ordered slices, in the order the feed appends them (one arrives late)."""
    ordered = ticks.sort_by(EVENT_TIME)
    cuts = [i * ordered.num_rows // SLICES for i in range(SLICES + 1)]
    slices = [ordered.slice(cuts[i], cuts[i + 1] - cuts[i]) for i in range(SLICES)]
    late = slices.pop(LATE_SLICE)
    slices.insert(LATE_AFTER, late)
    return slices


class PipelineRunWatcher:
    """Polls the instance in a thread: the most pipeline runs queued or not finished at once,
    and the latest records of every pipeline run."""

    def __init__(self, dagster_home: Path):
        self._home = dagster_home
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="run-watcher", daemon=True)
        self.most_in_flight = 0
        self.most_in_flight_runs: list[str] = []
        self.polls = 0
        self.errors: list[str] = []
        self._records: list[RunRecord] = []

    def __enter__(self) -> "PipelineRunWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    @property
    def records(self) -> list[RunRecord]:
        """Every pipeline run as last polled, oldest first."""
        with self._lock:
            return list(self._records)

    def _watch(self) -> None:
        instance = open_instance(self._home)
        try:
            while not self._stop.is_set():
                try:
                    records = instance.get_run_records(
                        filters=RunsFilter(job_name=beta_pipeline.name), ascending=True
                    )
                except Exception as error:  # a SQLite read racing the daemon's write
                    self.errors.append(repr(error))
                else:
                    in_flight = [
                        r.dagster_run.run_id
                        for r in records
                        if r.dagster_run.status in NOT_FINISHED_STATUSES
                    ]
                    with self._lock:
                        self._records = records
                        self.polls += 1
                        if len(in_flight) > self.most_in_flight:
                            self.most_in_flight, self.most_in_flight_runs = (
                                len(in_flight),
                                in_flight,
                            )
                self._stop.wait(POLL_SECONDS)
        finally:
            instance.dispose()


@dataclass(frozen=True)
class Observed:
    lake_root: str
    appended: list[tuple[int, float]]  # (silver version, wall time of the append)
    runs: list[RunRecord]  # every pipeline run, oldest first
    most_in_flight: int
    most_in_flight_runs: list[str]
    polls: int
    outcome: str | None  # None once gold caught up; else why it did not
    log_tail: str

    def statuses(self) -> list[DagsterRunStatus]:
        return [r.dagster_run.status for r in self.runs]

    def versions_seen(self) -> list[int]:
        return [int(r.dagster_run.tags[SILVER_VERSION_SEEN_TAG]) for r in self.runs]

    def versions_read(self) -> list[int | None]:
        read = [r.dagster_run.tags.get(SILVER_VERSION_READ_TAG) for r in self.runs]
        return [int(version) if version else None for version in read]

    def latencies(self) -> list[float]:
        return append_to_gold_latencies(self.appended, self.runs)

    def summary(self) -> str:
        latencies = self.latencies()
        latency = (
            f"append->gold median {statistics.median(latencies):.1f} s, max {max(latencies):.1f} s"
            if latencies
            else "no append reached gold"
        )
        return (
            f"{len(self.appended)} appends, {len(self.runs)} runs (silver versions seen "
            f"{self.versions_seen()}, read {self.versions_read()}), at most "
            f"{self.most_in_flight} in flight over {self.polls} polls, {latency}"
        )

    def failure(self, message: str) -> str:
        return f"{message}\n{self.summary()}\ntail of the dagster dev log:\n{self.log_tail}"


def caught_up(watcher: PipelineRunWatcher, silver: DeltaLake) -> bool:
    """No run in flight and the last run, requested having seen the newest silver version,
    read that version; or some run did not succeed (then it never will)."""
    records = watcher.records
    if failed_runs(records):
        return True
    if not records or not all(r.dagster_run.is_finished for r in records):
        return False
    newest = str(silver.require(SILVER_TABLE).version())
    tags = records[-1].dagster_run.tags
    return tags.get(SILVER_VERSION_SEEN_TAG) == newest == tags.get(SILVER_VERSION_READ_TAG)


def failed_runs(records: list[RunRecord]) -> str | None:
    failed = [
        f"{r.dagster_run.run_id} {r.dagster_run.status.value}"
        for r in records
        if r.dagster_run.is_finished and r.dagster_run.status != DagsterRunStatus.SUCCESS
    ]
    return f"runs that did not succeed: {failed}" if failed else None


def within(seconds: float, condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(1)
    return False


def daemon_log_tail(log_path: Path, lines: int = 40) -> str:
    """The last lines of the daemon and the sensor, and any failure, from the dagster dev log
    (whose run events drown them)."""
    text = ANSI_COLOR.sub("", log_path.read_text(errors="replace"))
    kept = [line for line in text.splitlines() if DAEMON_LINE.search(line)]
    return "\n".join([*kept[-lines:], f"(the whole log: {log_path})"])


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory) -> Iterator[str]:
    with spark_connect_server(tmp_path_factory.mktemp("spark-connect")) as url:
        yield url


@pytest.fixture(scope="module")
def observed(tmp_path_factory, connect_url) -> Observed:
    root = tmp_path_factory.mktemp("backpressure")
    lake_root, home = str(root / "lake"), root / "dagster_home"
    silver = DeltaLake(root=lake_root)
    env = {
        LAKE_ENV: lake_root,
        SENSOR_INTERVAL_ENV: str(SENSOR_INTERVAL_SECONDS),
        SPARK_REMOTE_ENV: connect_url,
        SPARK_UI_ENV: "false",
    }
    first, *rest = feed_slices(datasets.simulated(symbols=2, interval=45.0, seed=41))
    appended: list[tuple[int, float]] = []
    with (
        running_dagster_dev(lake_root, home, env, log_name=LOG_NAME) as dev,
        PipelineRunWatcher(home) as watcher,
    ):
        appended.append((write_silver(silver, first), time.time()))
        # The rest lands while the sensor's first run is queued or in flight, however fast
        # this machine is.
        if within(FIRST_RUN_TIMEOUT_SECONDS, lambda: bool(watcher.records)):
            next_append = time.monotonic()
            for batch in rest:
                time.sleep(max(0.0, next_append - time.monotonic()))
                appended.append((write_silver(silver, batch), time.time()))
                next_append += APPEND_EVERY_SECONDS
            outcome = None
            if not within(CATCH_UP_TIMEOUT_SECONDS, lambda: caught_up(watcher, silver)):
                outcome = (
                    f"gold did not catch up with silver v{appended[-1][0]} within "
                    f"{CATCH_UP_TIMEOUT_SECONDS} s of the last append"
                )
        else:
            outcome = f"the sensor requested no run within {FIRST_RUN_TIMEOUT_SECONDS} s"
        time.sleep(POLL_SECONDS * 2)  # one more poll after the last run ended
    result = Observed(
        lake_root=lake_root,
        appended=appended,
        runs=watcher.records,
        most_in_flight=watcher.most_in_flight,
        most_in_flight_runs=watcher.most_in_flight_runs,
        polls=watcher.polls,
        outcome=outcome or failed_runs(watcher.records),
        log_tail=daemon_log_tail(dev.log_path),
    )
    print(result.summary())
    return result


def test_at_most_one_pipeline_run_was_ever_queued_or_in_flight(observed):
    assert observed.polls > 0 and observed.runs, observed.failure("no pipeline run was seen")
    assert observed.most_in_flight == 1, observed.failure(
        f"{observed.most_in_flight} pipeline runs queued or in flight at once: "
        f"{observed.most_in_flight_runs}"
    )


def test_gold_caught_up_and_no_run_failed(observed):
    assert observed.outcome is None, observed.failure(observed.outcome)
    assert set(observed.statuses()) == {DagsterRunStatus.SUCCESS}, observed.failure("a run failed")


def test_versions_that_arrive_during_a_run_fold_into_the_next(observed):
    seen = observed.versions_seen()
    assert len(observed.runs) < len(observed.appended), observed.failure("a run per append")
    steps = [later - earlier for earlier, later in zip([-1, *seen], seen, strict=False)]
    assert max(steps) > 1, observed.failure("no run covered more than one new version")
    late = [int(r.dagster_run.tags[LATE_TICKS_TAG].rstrip("+")) for r in observed.runs]
    assert sum(late) > 0, observed.failure("the late slice was not counted late")


def test_gold_equals_a_full_recompute_of_the_final_silver(observed, tmp_path):
    assert observed.outcome is None, observed.failure(observed.outcome)
    final_silver = DeltaLake(root=observed.lake_root).require(SILVER_TABLE).to_pyarrow_table()
    full = run_all(str(tmp_path / "full"), final_silver)[COMPARED]
    gold = read_table(observed.lake_root, GOLD_TABLE)[COMPARED]
    pd.testing.assert_frame_equal(
        gold.sort_values(KEY).reset_index(drop=True),
        full.sort_values(KEY).reset_index(drop=True),
        check_exact=False,
        rtol=RELATIVE,
        atol=ABSOLUTE_FLOOR,
    )
    assert gold["is_final"].any() and not gold["is_final"].all()

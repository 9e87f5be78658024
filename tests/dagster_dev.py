"""`dg dev` (webserver + daemon) started by a test on a free localhost port, and what the
tests ask it over GraphQL."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import requests
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from tests.commands import REPOSITORY, checkout_python_path, dagster_home

ARTIFACTS = REPOSITORY / "tests" / "artifacts"
LOCATION = "tickbeta"  # workspace.yaml's location_name
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

_LOCATION_STATUS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

_RUN_EVENTS = """
query RunEvents($runId: ID!, $cursor: String) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      tags { key value }
      eventConnection(afterCursor: $cursor) {
        cursor
        hasMore
        events {
          __typename
          ... on MessageEvent { message level }
          ... on MaterializationEvent {
            assetKey { path }
            partition
            metadataEntries {
              label
              ... on IntMetadataEntry { intRepr }
              ... on MarkdownMetadataEntry { mdStr }
              ... on TextMetadataEntry { text }
            }
          }
          ... on AssetCheckEvaluationEvent {
            evaluation { checkName success assetKey { path } }
          }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


@dataclass(frozen=True)
class DagsterDev:
    port: int
    lake_root: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.port)

    def graphql(self, query: str, variables: Mapping | None = None) -> dict:
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_dagster_dev(
    lake_root: str,
    home: Path,
    env: Mapping[str, str],
    startup_timeout: float = 150.0,
    log_name: str = "dagster_dev.log",
) -> Iterator[DagsterDev]:
    """`dg dev` on the project's workspace.yaml with its own DAGSTER_HOME; stopped after.

    Its code server, run workers and their Spark Python workers import this checkout first (an
    editable install may point at another one). Its output goes to tests/artifacts/`log_name`.
    """
    dagster_home(home)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dev = DagsterDev(free_port(), lake_root, ARTIFACTS / log_name)
    python_path = checkout_python_path()
    # `dg dev`, as `make ui` runs it (`dagster dev` does the same but warns it is superseded).
    command = [str(Path(sys.executable).parent / "dg"), "dev", "-w", "workspace.yaml"]
    command += ["-h", "127.0.0.1", "-p", str(dev.port)]
    with open(dev.log_path, "w") as log:
        # A session of its own: teardown can end dagster dev and everything it started at once.
        process = subprocess.Popen(
            command,
            cwd=REPOSITORY,
            env={**os.environ, **env, "DAGSTER_HOME": str(home), "PYTHONPATH": python_path},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_location(dev, process, startup_timeout)
            yield dev
        finally:
            stop(process)


def wait_for_location(dev: DagsterDev, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status = "webserver not up"
    while time.monotonic() < deadline:
        assert process.poll() is None, f"dagster dev exited early:\n{dev.log_tail()}"
        try:
            entries = dev.graphql(_LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
        except requests.RequestException:
            time.sleep(1)
            continue
        entry = next((e for e in entries if e["name"] == LOCATION), None)
        status = entry and (entry["loadStatus"], entry["locationOrLoadError"])
        if entry and entry["loadStatus"] == "LOADED":
            loaded = entry["locationOrLoadError"]
            assert loaded["__typename"] == "RepositoryLocation", loaded
            return
        time.sleep(1)
    raise TimeoutError(f"code location not loaded after {timeout}s ({status}):\n{dev.log_tail()}")


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C for dagster dev, then its whole session if something hangs on."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    # Its webserver, daemon and code servers share its session (start_new_session above).
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def wait_for_run(dev: DagsterDev, run_id: str, timeout: float) -> DagsterRunStatus:
    client = dev.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id)
        if status in FINISHED:
            return status
        time.sleep(2)
    raise TimeoutError(f"run {run_id} not finished after {timeout}s:\n{dev.log_tail()}")


@dataclass(frozen=True)
class RunRecord:
    tags: dict[str, str]
    events: list[dict]

    def of_type(self, typename: str) -> list[dict]:
        return [event for event in self.events if event["__typename"] == typename]

    def messages(self) -> list[str]:
        return [e["message"] for e in self.events if e.get("message") is not None]


def run_record(dev: DagsterDev, run_id: str) -> RunRecord:
    """The run's tags and every event of its log, page by page."""
    events: list[dict] = []
    cursor = None
    while True:
        run = dev.graphql(_RUN_EVENTS, {"runId": run_id, "cursor": cursor})["runOrError"]
        assert run["__typename"] == "Run", run
        connection = run["eventConnection"]
        events += connection["events"]
        cursor = connection["cursor"]
        if not connection["hasMore"]:
            return RunRecord({tag["key"]: tag["value"] for tag in run["tags"]}, events)


def metadata_of(materialization: dict) -> dict:
    """A materialization's metadata entries by label, as plain Python values."""
    values = {}
    for entry in materialization["metadataEntries"]:
        if "intRepr" in entry:
            values[entry["label"]] = int(entry["intRepr"])
        else:
            values[entry["label"]] = entry.get("mdStr", entry.get("text"))
    return values


# The mutation the UI's "Materialize" dialog sends for a range of partitioned assets.
_LAUNCH_PARTITION_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}
"""

_BACKFILL = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { status runs(limit: 100) { runId status } }
    ... on PythonError { message }
  }
}
"""
_BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def launch_partition_backfill(dev: DagsterDev, assets: list[str], partitions: list[str]) -> str:
    """An asset backfill over `partitions` of `assets`, launched as the UI launches it."""
    params = {
        "assetSelection": [{"path": [name]} for name in assets],
        "partitionNames": partitions,
        "fromFailure": False,
        "tags": [],
    }
    launched = dev.graphql(_LAUNCH_PARTITION_BACKFILL, {"backfillParams": params})
    result = launched["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def wait_for_backfill(dev: DagsterDev, backfill_id: str, timeout: float) -> tuple[str, list[str]]:
    """The backfill's final status and the ids of the runs it created, once all are finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backfill = dev.graphql(_BACKFILL, {"backfillId": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        runs = backfill["runs"]
        finished = all(DagsterRunStatus(run["status"]) in FINISHED for run in runs)
        if backfill["status"] in _BACKFILL_DONE and finished:
            return backfill["status"], [run["runId"] for run in runs]
        time.sleep(3)
    raise TimeoutError(f"backfill {backfill_id} not done after {timeout}s:\n{dev.log_tail()}")

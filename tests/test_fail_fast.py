"""A Spark that cannot be reached, or dies under a run, fails it within a minute naming the URL,
and the process exits (DESIGN.md, "Runs under load": Fail fast).

Every case runs in processes of its own: through the README's command line, or a client
process (tests/spark_job_process.py) whose Spark the test kills once the job's tasks run.
Nothing here sleeps and hopes: every wait is bounded and says what it waited for.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
import pyspark

from beta_assets.settings import LAKE_ENV, SPARK_MASTER_ENV, SPARK_REMOTE_ENV, SPARK_UI_ENV
from tests import datasets
from tests.pipeline import covering_keys, write_silver
from tests.servers import SERVER_START_TIMEOUT, free_port, spark_connect_server

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FAIL_WITHIN = 60.0  # seconds: the promise
PROCESS_TIMEOUT = 90.0  # seconds: past this a process is hanging, not failing slowly
JOB_START_TIMEOUT = 120.0  # seconds: a driver JVM and its executors starting on 2 busy cores
SIGTERM_AFTER_SECONDS = 6.0  # the run is then in resource initialisation, waiting on Spark
SIGTERM_EXIT_SECONDS = 15.0


@dataclass(frozen=True)
class Ended:
    returncode: int
    seconds: float  # from the start (or the kill) to the exit
    output: str


def ended(process: subprocess.Popen, since: float) -> Ended:
    """Wait for `process` to exit, at most PROCESS_TIMEOUT seconds (then kill it and fail)."""
    try:
        output, _ = process.communicate(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(
            f"still running {PROCESS_TIMEOUT:.0f} s later:\n{output[-3000:]}"
        ) from None
    return Ended(process.returncode, time.monotonic() - since, output)


def started(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env or dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def assert_failed_fast(result: Ended, url: str) -> None:
    print(f"exit {result.returncode} after {result.seconds:.1f} s")  # shown by pytest -rP
    tail = result.output[-3000:]
    assert result.returncode != 0, tail
    assert result.seconds < FAIL_WITHIN, f"failed after {result.seconds:.1f} s:\n{tail}"
    assert url in result.output, f"the error does not name {url}:\n{tail}"


# --- an unreachable Spark: the README's command line


def materialize_from_cli(tmp_path: Path, spark_env: dict[str, str]) -> Ended:
    begin = time.monotonic()
    return ended(materialize_in_background(tmp_path, spark_env), begin)


def materialize_in_background(tmp_path: Path, spark_env: dict[str, str]) -> subprocess.Popen:
    """`dagster asset materialize ... --select '*' --partition <key>` over a small lake, with a
    DAGSTER_HOME made as the README says."""
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=61)
    lake = str(tmp_path / "lake")
    write_silver(lake, ticks)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        LAKE_ENV: lake,
        SPARK_UI_ENV: "false",
        **spark_env,
    }
    command = [
        str(BIN / "dagster"),
        *("asset", "materialize", "-m", "beta_assets.definitions"),
        *("--select", "*", "--partition", covering_keys(ticks)[0]),
    ]
    return started(command, env)


def test_an_unreachable_connect_url_fails_the_run_within_a_minute(tmp_path):
    url = "sc://127.0.0.1:1"
    result = materialize_from_cli(tmp_path, {SPARK_REMOTE_ENV: url})
    assert_failed_fast(result, url)
    assert "SparkUnreachableError" in result.output


def test_an_unreachable_master_fails_the_run_within_a_minute(tmp_path):
    url = f"spark://127.0.0.1:{free_port()}"  # nothing listens there
    result = materialize_from_cli(tmp_path, {SPARK_MASTER_ENV: url})
    assert_failed_fast(result, url)
    assert "SparkUnreachableError" in result.output


@contextmanager
def silent_listener() -> Iterator[int]:
    """A localhost port that accepts connections and never answers: a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_a_connect_server_that_never_answers_fails_the_run_within_a_minute(tmp_path):
    with silent_listener() as port:
        url = f"sc://127.0.0.1:{port}"
        result = materialize_from_cli(tmp_path, {SPARK_REMOTE_ENV: url})
    assert_failed_fast(result, url)
    assert "SparkUnreachableError" in result.output


def test_a_run_waiting_on_a_silent_server_exits_on_sigterm(tmp_path):
    with silent_listener() as port:
        process = materialize_in_background(tmp_path, {SPARK_REMOTE_ENV: f"sc://127.0.0.1:{port}"})
        time.sleep(SIGTERM_AFTER_SECONDS)
        assert process.poll() is None, "the run ended before the signal"
        os.kill(process.pid, signal.SIGTERM)
        result = ended(process, time.monotonic())
    print(f"exit {result.returncode} {result.seconds:.1f} s after SIGTERM")
    assert result.seconds < SIGTERM_EXIT_SECONDS, result.output[-3000:]


def test_a_master_url_on_a_port_that_is_not_a_master_fails_the_run_within_a_minute(tmp_path):
    with silent_listener() as port:  # accepts connections, never speaks Spark
        url = f"spark://127.0.0.1:{port}"
        result = materialize_from_cli(tmp_path, {SPARK_MASTER_ENV: url})
    assert_failed_fast(result, url)
    assert "registered no application" in result.output


def test_an_unreachable_connect_url_with_a_token_names_the_server_not_the_token(tmp_path):
    process = started(
        [
            sys.executable,
            *("-m", "tests.spark_job_process"),
            *("--remote", "sc://127.0.0.1:1/;token=canary-token-61"),
            str(tmp_path / "never"),
        ]
    )
    result = ended(process, time.monotonic())
    assert_failed_fast(result, "sc://127.0.0.1:1/;token=...")
    assert "canary-token-61" not in result.output
    assert not (tmp_path / "never").exists()


# --- a Spark Connect server that dies under a job


def job_process(target: list[str], marker: Path, *options: str) -> subprocess.Popen:
    return started(
        [sys.executable, "-m", "tests.spark_job_process", *target, str(marker), *options]
    )


def wait_for(marker: Path, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + JOB_START_TIMEOUT
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"exited before {what}:\n{process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"no {what} within {JOB_START_TIMEOUT:.0f} s")
        time.sleep(0.1)


def server_process(url: str) -> psutil.Process:
    """The JVM (a child of this process) that listens on the Connect URL's port."""
    port = int(url.rsplit(":", 1)[1])
    for child in psutil.Process().children(recursive=True):
        try:
            if any(c.laddr.port == port and c.status == "LISTEN" for c in child.net_connections()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no child process listens on {url}")


def test_a_connect_server_killed_under_a_job_fails_the_client_within_a_minute(tmp_path):
    marker = tmp_path / "tasks_running"
    with spark_connect_server(tmp_path) as url:
        client = job_process(["--remote", url], marker)
        wait_for(marker, client, "running task")
        server_process(url).send_signal(signal.SIGKILL)
        killed = time.monotonic()
        result = ended(client, killed)
    assert_failed_fast(result, url)
    assert "SparkUnreachableError" in result.output


def test_a_connect_server_out_of_memory_exits_and_its_client_fails_within_a_minute(tmp_path):
    marker = tmp_path / "filling_the_heap"
    with spark_connect_server(tmp_path, memory="512m") as url:
        server = server_process(url)
        client = job_process(["--remote", url], marker, "--oom")
        wait_for(marker, client, "query")
        begin = time.monotonic()
        try:
            server.wait(timeout=FAIL_WITHIN)
        except psutil.TimeoutExpired:
            os.killpg(client.pid, signal.SIGKILL)
            raise AssertionError(
                f"the server still runs {FAIL_WITHIN:.0f} s into an OutOfMemoryError"
            ) from None
        result = ended(client, begin)
    assert_failed_fast(result, url)
    assert "OutOfMemoryError" in (tmp_path / "spark-connect.log").read_text(errors="replace")


def test_a_connect_server_killed_under_a_dagster_run_fails_the_run_within_a_minute(tmp_path):
    """The run's own retries of a transient failure (two, 10 s apart) fit in the minute too."""
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=62)
    lake = str(tmp_path / "lake")
    write_silver(lake, ticks)
    log_path = tmp_path / "run.log"
    with spark_connect_server(tmp_path) as url:
        env = {**os.environ, LAKE_ENV: lake, SPARK_REMOTE_ENV: url, SPARK_UI_ENV: "false"}
        env.pop("DAGSTER_HOME", None)  # an ephemeral instance
        command = [
            str(BIN / "dagster"),
            *("asset", "materialize", "-m", "beta_assets.definitions"),
            *("--select", "*", "--partition", covering_keys(ticks)[0]),
        ]
        with open(log_path, "w") as log:
            run = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + JOB_START_TIMEOUT
            while not re.search(r"joined_returns - STEP_START", log_path.read_text()):
                assert run.poll() is None, (
                    "the run ended before joined_returns:\n" + (log_path.read_text()[-3000:])
                )
                assert time.monotonic() < deadline, "the run never reached joined_returns"
                time.sleep(0.1)
            server_process(url).send_signal(signal.SIGKILL)
            killed = time.monotonic()
            run.wait(timeout=PROCESS_TIMEOUT)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
        result = Ended(run.returncode, time.monotonic() - killed, log_path.read_text())
    assert_failed_fast(result, url)
    assert "RUN_FAILURE" in result.output


# --- a standalone cluster that loses its only worker


@dataclass(frozen=True)
class Cluster:
    master_url: str
    worker: subprocess.Popen


@contextmanager
def standalone_cluster(log_dir: Path, cores: int = 2, memory: str = "2g") -> Iterator[Cluster]:
    """A master and one worker on localhost (pyspark's bin/spark-class in the foreground: the
    package ships no start-master.sh), on free ports."""
    spark_home = os.path.dirname(pyspark.__file__)
    spark_class = os.path.join(spark_home, "bin", "spark-class")
    env = {
        **os.environ,
        "SPARK_HOME": spark_home,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_WORKER_DIR": str(log_dir / "work"),
    }
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    daemons = {
        "master": [
            *("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"),
            *("--port", str(port), "--webui-port", str(free_port())),
        ],
        "worker": [
            *("org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1"),
            *("--cores", str(cores), "--memory", memory, "--webui-port", str(free_port()), url),
        ],
    }
    processes = {}
    try:
        for name, arguments in daemons.items():
            with open(log_dir / f"{name}.log", "wb") as log:
                processes[name] = subprocess.Popen(
                    [spark_class, *arguments],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # the worker's executors die with its group
                )
        worker_log = log_dir / "worker.log"
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while "Successfully registered with master" not in worker_log.read_text(errors="replace"):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes.values()):
                raise RuntimeError(f"no standalone cluster:\n{worker_log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Cluster(url, processes["worker"])
    finally:
        for process in processes.values():
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_cluster_that_loses_its_only_worker_fails_the_job_within_a_minute(tmp_path):
    marker = tmp_path / "tasks_running"
    with standalone_cluster(tmp_path) as cluster:
        client = job_process(["--master", cluster.master_url], marker)
        wait_for(marker, client, "running task")
        cluster.worker.send_signal(signal.SIGKILL)  # its executor follows (WorkerWatcher)
        result = ended(client, time.monotonic())
    assert_failed_fast(result, cluster.master_url)
    assert "SPARK_JOB_CANCELLED" in result.output

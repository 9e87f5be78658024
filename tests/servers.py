"""Servers the scaling-out tests start on localhost: a Spark standalone cluster, Spark Connect
and an S3-compatible store.

Every server runs in the foreground in a process group of its own, on free localhost ports,
and is stopped with everything it started (a worker's executors, their Python workers) when
its context exits, also when a test fails. A server that does not come up raises with the
tail of its log.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import boto3
import pyspark
from dagster_deltalake import S3Config
from dagster_deltalake.config import ClientConfig

from resources.lake import DeltaLake
from resources.spark import connect_server_command

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SPARK_HOME = Path(pyspark.__file__).parent  # the pyspark package is a Spark home
SERVER_START_TIMEOUT = 180  # seconds; a JVM start on two busy cores
SERVER_STOP_TIMEOUT = 30

# The server logs this line once its gRPC service listens; the port is the one it really bound
# (Spark moves to the next port when the requested one is taken).
_CONNECT_STARTED = re.compile(r"Spark Connect server started at: \S+:(\d+)")
_MASTER_STARTED = re.compile(r"Starting Spark master at (spark://\S+)")
_WORKER_REGISTERED = re.compile(r"Successfully registered with master (spark://\S+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a Spark server and its executors see: this process's environment without any
    object-store credentials, then `extra`.

    A test decides what credentials the executors have, as their own environment does on a real
    cluster. Python workers run this interpreter and import this checkout first.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    inherited = [path for path in env.get("PYTHONPATH", "").split(os.pathsep) if path]
    env.update(
        SPARK_HOME=str(SPARK_HOME),
        PYSPARK_PYTHON=sys.executable,
        PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT), *inherited]),
        SPARK_LOCAL_IP="127.0.0.1",  # drivers and executors bind and advertise localhost
    )
    env.update(extra or {})
    return env


@contextmanager
def foreground_server(
    command: list[str], log_path: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """`command` with its output in `log_path`, stopped with its whole process group at exit."""
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield server
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the group (spark-class and spark-submit exec the JVM, whose shutdown hooks
    stop a worker's executors), then SIGKILL to whatever of the group is left."""
    _signal_group(server.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        server.wait(timeout=SERVER_STOP_TIMEOUT)
    _signal_group(server.pid, signal.SIGKILL)
    server.wait()


def _signal_group(group: int, signal_number: int) -> None:
    with suppress(ProcessLookupError):  # the group is gone
        os.killpg(group, signal_number)


def wait_for_log_line(
    server: subprocess.Popen, log_path: Path, line: re.Pattern, what: str
) -> re.Match:
    """The first match of `line` in the server's log; raises with the log's tail when the
    server exits or the line does not come within SERVER_START_TIMEOUT."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        found = line.search(log_path.read_text(errors="replace"))
        if found:
            return found
        if server.poll() is not None:
            break
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-3000:]
    state = f"exit {server.poll()}" if server.poll() is not None else "still running"
    raise RuntimeError(f"{what} did not start ({state}); tail of {log_path}:\n{tail}")


def _spark_class(*arguments: str) -> list[str]:
    return [str(SPARK_HOME / "bin" / "spark-class"), *arguments]


@contextmanager
def spark_standalone_cluster(
    log_dir: Path,
    workers: int = 1,
    cores: int = 2,
    memory: str = "2g",
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """A Spark standalone master and `workers` workers on localhost; yields the spark:// URL
    once every worker has registered.

    With the pyspark package's `bin/spark-class` in the foreground (the package has no
    start-master.sh). Each worker offers `cores` and `memory` to applications; `env` is added
    to the workers' environment (see `server_environment`), which their executors inherit:
    that is where executors find object-store credentials. Logs: `master.log`,
    `worker-N.log`, and each executor's stdout and stderr under `worker-N/work/`.
    """
    with ExitStack() as servers:
        master_log = log_dir / "master.log"
        master = servers.enter_context(
            foreground_server(
                _spark_class(
                    "org.apache.spark.deploy.master.Master",
                    *("--host", "127.0.0.1", "--port", str(free_port())),
                    *("--webui-port", str(free_port())),
                ),
                master_log,
                server_environment(),
            )
        )
        url = wait_for_log_line(master, master_log, _MASTER_STARTED, "Spark master").group(1)
        started = []
        for index in range(workers):
            work_dir = log_dir / f"worker-{index}" / "work"
            work_dir.mkdir(parents=True)
            worker_log = log_dir / f"worker-{index}.log"
            command = _spark_class(
                "org.apache.spark.deploy.worker.Worker",
                *("--host", "127.0.0.1", "--cores", str(cores), "--memory", memory),
                *("--webui-port", str(free_port()), "--work-dir", str(work_dir)),
                url,
            )
            worker = foreground_server(command, worker_log, server_environment(env))
            started.append((servers.enter_context(worker), worker_log))
        for index, (worker, worker_log) in enumerate(started):
            wait_for_log_line(worker, worker_log, _WORKER_REGISTERED, f"Spark worker {index}")
        # Workers stop first (the stack unwinds in reverse), taking their executors with them.
        yield url


@contextmanager
def spark_connect_server(
    log_dir: Path,
    cores: int = 2,
    memory: str = "1g",
    master: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """A Spark Connect server on a free localhost port; yields its sc:// URL.

    Its executors run in its own JVM (`local[cores]`), or on a cluster when `master` is a
    spark:// URL: there the server takes at most `cores` of the cluster's cores, so other
    applications can share it. `env` is added to the server's environment (see
    `server_environment`). Started with spark-submit in the foreground rather than
    sbin/start-connect-server.sh: that script daemonizes and keeps a pid file per user in /tmp,
    which other test runs on the same machine would share.
    """
    log_path = log_dir / "spark-connect.log"
    command, _ = connect_server_command(
        free_port(), master=master or f"local[{cores}]", memory=memory
    )
    command += ["--conf", "spark.ui.enabled=false"]
    if master is not None:
        command += ["--conf", f"spark.cores.max={cores}"]
    with foreground_server(command, log_path, server_environment(env)) as server:
        port = wait_for_log_line(server, log_path, _CONNECT_STARTED, "Spark Connect server")
        yield f"sc://127.0.0.1:{port.group(1)}"


# Any values do for moto; the tests check that these never leak into events or the Delta log.
TEST_ACCESS_KEY_ID = "AKIATICKBETATEST0001"
TEST_SECRET_ACCESS_KEY = "tickbeta-test-secret-3b1f9c"
TEST_REGION = "us-east-1"


_ANSI_COLOR = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours the status of failed requests


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    log: Path  # one line per request, with its HTTP status

    def rejected_commits(self, table_prefix: str) -> int:
        """Commit files whose conditional put was refused: writers that lost a race."""
        log = _ANSI_COLOR.sub("", self.log.read_text(errors="replace"))
        return len(re.findall(rf'"PUT /{self.bucket}/{table_prefix}/_delta_log/\S+ \S+" 412', log))


@contextmanager
def moto_s3_server(bucket: str, log_dir: Path) -> Iterator[S3Server]:
    """moto's S3 in server mode (real HTTP on a free localhost port) with one bucket.

    In its own process, not moto's ThreadedMotoServer: delta-rs' DeltaStorageHandler (the
    sensor reads the Delta log through it) keeps the GIL while it waits for S3, so a server
    thread in the same interpreter could never answer it.
    """
    port = free_port()
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    log_path = log_dir / "moto.log"
    with foreground_server(command, log_path) as server:
        _wait_for_port(server, port, log_path)
        endpoint = f"http://127.0.0.1:{port}"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        yield S3Server(endpoint, bucket, log_path)


def _wait_for_port(server: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline and server.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"moto did not start on port {port} (exit {server.poll()}):\n{tail}")


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=TEST_ACCESS_KEY_ID,
        aws_secret_access_key=TEST_SECRET_ACCESS_KEY,
        region_name=TEST_REGION,
    )


def s3_environment(server: S3Server) -> dict[str, str]:
    """What a user exports to put the lake on this server (README, "Scaling out")."""
    return {
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_ACCESS_KEY,
        "AWS_REGION": TEST_REGION,
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ALLOW_HTTP": "true",
    }


def lake_on(server: S3Server, prefix: str) -> DeltaLake:
    """A lake under `prefix` of the server's bucket, as a run's resource holds it once its
    EnvVars resolve: the test credentials, which this process's environment need not have."""
    return DeltaLake(
        root=f"s3://{server.bucket}/{prefix}",
        storage=S3Config(
            access_key_id=TEST_ACCESS_KEY_ID,
            secret_access_key=TEST_SECRET_ACCESS_KEY,
            region=TEST_REGION,
            endpoint=server.endpoint,
        ),
        client=ClientConfig(allow_http=True),
    )

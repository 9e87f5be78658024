"""Servers the scaling-out tests start on localhost: Spark Connect and an S3-compatible store."""

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3

from resources.spark import connect_server_command

# The server logs this line once its gRPC service listens; the port is the one it really bound
# (Spark moves to the next port when the requested one is taken).
_CONNECT_STARTED = re.compile(r"Spark Connect server started at: \S+:(\d+)")
SERVER_START_TIMEOUT = 180  # seconds; a JVM start on two busy cores


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def spark_connect_server(log_dir: Path, cores: int = 2, memory: str = "1g") -> Iterator[str]:
    """A Spark Connect server in local mode on a free localhost port; yields its sc:// URL.

    Started with spark-submit in the foreground rather than sbin/start-connect-server.sh: that
    script daemonizes and keeps a pid file per user in /tmp, which other test runs on the same
    machine would share. Its Python workers run this interpreter, which has tickbeta installed.
    """
    log_path = log_dir / "spark-connect.log"
    command, env = connect_server_command(free_port(), master=f"local[{cores}]", memory=memory)
    command += ["--conf", "spark.ui.enabled=false"]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        port = _wait_for_connect_port(server, log_path)
        yield f"sc://127.0.0.1:{port}"
    finally:
        _stop(server)


def _wait_for_connect_port(server: subprocess.Popen, log_path: Path) -> int:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        started = _CONNECT_STARTED.search(log_path.read_text(errors="replace"))
        if started:
            return int(started.group(1))
        if server.poll() is not None:
            break
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"Spark Connect server did not start (exit {server.poll()}):\n{tail}")


def _stop(server: subprocess.Popen) -> None:
    # spark-submit execs the JVM, so for Spark this is the server itself; its Python workers
    # exit with it.
    server.terminate()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


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
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(server, port, log_path)
        endpoint = f"http://127.0.0.1:{port}"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        yield S3Server(endpoint, bucket, log_path)
    finally:
        _stop(server)


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

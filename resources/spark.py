"""The Spark session: local mode by default, a cluster or a Spark Connect server on demand."""

import atexit
import functools
import gc
import os
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
import pyarrow as pa
from dagster import InitResourceContext
from dagster_pyspark import PySparkResource
from pydantic import Field
from pyspark import SparkContext
from pyspark import __file__ as pyspark_file
from pyspark import __version__ as pyspark_version
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.connect.client.retries import DefaultPolicy, RetryPolicyState

DRIVER_MEMORY = "spark.driver.memory"
EXECUTOR_MEMORY = "spark.executor.memory"

LOCAL_DEFAULTS = {
    # Local mode runs the executors inside the driver JVM: give it room for a day of ticks.
    DRIVER_MEMORY: "4g",
    # A few partitions per core; adaptive execution coalesces what is left over.
    "spark.sql.shuffle.partitions": "8",
    # Silver's files are listed here, not by a Spark job per read: above this many paths
    # (Spark's default: 32) each read of a live feed's table (hundreds of small files) launched
    # a listing job, 2.7 s a read at 390 files.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
}

CLUSTER_DEFAULTS = {
    # On a cluster (spark://, yarn, k8s://) the driver only plans and collects small results:
    # the market series (a few 10k rows a day), bucket and window rows. Spark's 1g is tight
    # for that plus the broadcast market series; the executors read silver and compute.
    DRIVER_MEMORY: "2g",
    # Fits one executor on a worker of a small machine (a worker offers its RAM less 1 GB).
    EXECUTOR_MEMORY: "4g",
}

# A driver JVM out of memory dies at once instead of thrashing in GC while the run waits on it
# (executors already exit on an OutOfMemoryError). Spark's *default* Java options, so that a
# user's own spark.driver.extraJavaOptions (spark_config, spark-defaults.conf) are kept.
DRIVER_DEFAULT_JAVA_OPTIONS = "spark.driver.defaultJavaOptions"
EXIT_ON_OUT_OF_MEMORY = "-XX:+ExitOnOutOfMemoryError"
# The driver's log4j2 settings (warnings and errors, minus start-up noise), unless the user's
# Java options name their own.
DRIVER_LOGGING = Path(__file__).with_name("log4j2.properties")
LOG4J_CONFIGURATION = "-Dlog4j2.configurationFile="

# The Connect client retries an unavailable server for about 10 minutes by default (15
# retries, backoff x4 up to 60 s), and a run waits that long, even at exit. A run retries a
# transient step failure twice, 10 s apart (beta_assets/assets/retries.py), so a server that
# died fails the run after about 3 x 8 + 2 x 10 = 44 s; one that restarts within that is
# picked up again.
CONNECT_RETRY_SECONDS = 8.0
CONNECT_PROBE_SECONDS = 50.0

# A class archive of the driver JVM (Java's dynamic class data sharing): the classes a run
# loads, mapped from one file instead of read from Spark's jars and verified one by one.
# Measured in a scratch session on this 2-core machine (a session, then one aggregation over a
# day of 500 symbols, three alternated runs): 3.5-4.5 s against 6.0-6.9 s to the session and
# 5.0-5.2 s against 7.3-8.9 s for the first action. `tickbeta jvm-archive` (run by `make
# install`) writes it.
# Named by the pyspark version and where it is installed: a JVM checks the archive's jars by
# path, so two environments (two checkouts) each keep their own.
_SPARK_JARS = Path(pyspark_file).parent / "jars"
CLASS_ARCHIVE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "tickbeta"
    / f"spark-{pyspark_version}-{zlib.crc32(str(_SPARK_JARS).encode()):08x}-driver.jsa"
)
# The JVM's own notes on an archive it cannot use (another Java, other jars) would reach the
# run's console: it then starts as it would without one, silently.
QUIET_CLASS_SHARING = "-Xlog:cds=off -Xlog:cds+dynamic=off"
# Java options with which a user decides class sharing themselves.
CLASS_SHARING_OPTIONS = ("SharedArchiveFile", "ArchiveClassesAtExit", "-Xshare:off")

SESSION_DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    # Larger Arrow batches to and from Python workers: fewer round trips (measured: -0.5 s
    # on a trading day of 500 symbols; the default is 10k rows).
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
}

# How classic PySpark moves data between Python and the JVM. A Spark Connect client always
# speaks Arrow and the server warns that these are not supported there: classic only.
CLASSIC_ARROW_DEFAULTS = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
}


class SparkSessionResource(PySparkResource):
    """A SparkSession built from a master URL, or a Spark Connect URL when `remote` is set.

    The session is process-wide (`getOrCreate`): every step of a run shares it. Settings
    given to a second resource in the same process are ignored by Spark, as with any
    `getOrCreate`.
    """

    master: str = Field(
        default="local[*]",
        description="Spark master URL: local[*], spark://host:7077, yarn, k8s://...",
    )
    remote: str | None = Field(
        default=None,
        description="Spark Connect URL (sc://host:15002). Used instead of `master` when set.",
    )
    ui_enabled: bool = Field(default=True, description="Start the Spark web UI (port 4040).")
    driver_memory: str | None = Field(
        default=None,
        description=f"spark.driver.memory (default {LOCAL_DEFAULTS[DRIVER_MEMORY]} in local "
        f"mode, {CLUSTER_DEFAULTS[DRIVER_MEMORY]} on a cluster). Not for Spark Connect: the "
        "server's memory is set where it starts.",
    )
    executor_memory: str | None = Field(
        default=None,
        description="spark.executor.memory on a cluster (default "
        f"{CLUSTER_DEFAULTS[EXECUTOR_MEMORY]}); local mode has no separate executors.",
    )
    spark_config: dict[str, Any] = Field(
        default_factory=dict, description="Extra Spark settings, applied last."
    )
    class_archive: str = Field(
        default=str(CLASS_ARCHIVE),
        description="The driver JVM's class archive (see `tickbeta jvm-archive`); used when "
        "the file exists. Empty: none.",
    )
    connect_retry_seconds: float = Field(
        default=CONNECT_RETRY_SECONDS,
        description="How long the Spark Connect client retries an unavailable server before "
        "the call fails (Spark's own default is about 10 minutes).",
    )

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._spark_session = self.create_session()

    def create_session(self) -> SparkSession:
        """The session, or a `SparkUnreachableError` naming the URL within a minute."""
        skip_final_collections_at_exit()
        # Python workers must run the interpreter that has this project installed.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if self.remote:
            return self._connect_session()
        is_cluster = not self.master.startswith("local")
        if is_cluster and SparkContext._active_spark_context is None:  # else getOrCreate reuses it
            check_master_reachable(self.master)
        builder = SparkSession.builder.master(self.master).appName("tickbeta")
        for key, value in self._settings().items():
            builder = builder.config(key, value)
        try:
            session = started_within(builder, self.master) if is_cluster else builder.getOrCreate()
        except Exception as error:
            if not is_cluster or isinstance(error, SparkUnreachableError):
                raise
            # Spark's own error ("Cannot call methods on a stopped SparkContext") does not say
            # which cluster refused the application.
            raise SparkUnreachableError(f"Spark master {self.master}: {error}") from error
        if is_cluster:
            watch_executors(session.sparkContext, self.master)
        return session

    def _connect_session(self) -> SparkSession:
        """A Spark Connect session: the JVM, its executors and their Python workers are the
        server's; this process only sends plans. Only runtime (SQL) settings can be changed
        from here: Spark rejects others (spark.driver.memory, ...) with CANNOT_MODIFY_CONFIG,
        they belong to the command that starts the server.

        Creating the client sends nothing; the first call probes the server, under the same
        bounded retries as every later call."""
        url = self.remote
        session = SparkSession.builder.remote(url).getOrCreate()
        session.client.set_retry_policies([BoundedConnectRetries(url, self.connect_retry_seconds)])
        try:
            # The probe: one round trip, bounded by the retries above (the deadline is a
            # backstop); waited for where a SIGTERM can end the run at once.
            interruptible(
                lambda: session.version,
                CONNECT_PROBE_SECONDS,
                f"Spark Connect server {redacted_url(url)} did not answer within "
                f"{CONNECT_PROBE_SECONDS:.0f} s",
            )
        except BaseException as error:
            # Closed, so that the client's exit hook does not call the silent server again
            # (it would hold a terminated run's exit for the retries' length, twice).
            _discard(session)
            if isinstance(error, SparkUnreachableError) or not isinstance(error, Exception):
                raise
            raise SparkUnreachableError(
                f"Spark Connect server {redacted_url(url)} refused a session: {error}"
            ) from error
        for key, value in {**SESSION_DEFAULTS, **self.spark_config}.items():
            session.conf.set(key, str(value))
        return session

    def _settings(self) -> dict[str, str]:
        defaults = LOCAL_DEFAULTS if self.master.startswith("local") else CLUSTER_DEFAULTS
        memory = {
            key: value
            for key, value in {
                DRIVER_MEMORY: self.driver_memory,
                EXECUTOR_MEMORY: self.executor_memory,
            }.items()
            if value
        }
        ui = {
            "spark.ui.enabled": str(self.ui_enabled).lower(),
            # Progress bars garble Dagster's captured logs.
            "spark.ui.showConsoleProgress": "false",
        }
        user = {k: str(v) for k, v in self.spark_config.items()}
        extra_java_options = user.get("spark.driver.extraJavaOptions", "")
        java_options = {
            DRIVER_DEFAULT_JAVA_OPTIONS: with_class_archive(
                with_quiet_logging(
                    with_exit_on_out_of_memory(user.get(DRIVER_DEFAULT_JAVA_OPTIONS, "")),
                    extra_java_options,
                ),
                extra_java_options,
                self.class_archive,
            )
        }
        return {
            **defaults,
            **SESSION_DEFAULTS,
            **CLASSIC_ARROW_DEFAULTS,
            **ui,
            **memory,
            **user,
            **java_options,
        }


@functools.cache
def skip_final_collections_at_exit() -> None:
    """At exit, move every object to the collector's permanent generation: a run process's
    heap (Dagster's, pandas', Spark's client objects) goes back to the OS whole, and Python's
    finalizing collections over it took about 0.9 s of each run's 1.5 s exit. Registered at
    the session's start, so the exit handlers registered before it (logging's flush among
    them) still run after it; weakref finalizers (temporary directories) run regardless."""
    atexit.register(gc.freeze)


def with_exit_on_out_of_memory(java_options: str) -> str:
    """`java_options` with the JVM told to exit on its first OutOfMemoryError, unless they
    already say what to do then."""
    if "OnOutOfMemoryError" in java_options:  # Exit..., Crash..., or -XX:OnOutOfMemoryError=cmd
        return java_options
    return f"{EXIT_ON_OUT_OF_MEMORY} {java_options}".strip()


def with_quiet_logging(java_options: str, extra_java_options: str) -> str:
    """`java_options` with the driver logging through DRIVER_LOGGING, unless either option set
    names a log4j2 configuration already."""
    if LOG4J_CONFIGURATION in f"{java_options} {extra_java_options}":
        return java_options
    return f"{java_options} {LOG4J_CONFIGURATION}{DRIVER_LOGGING.as_uri()}".strip()


def with_class_archive(java_options: str, extra_java_options: str, archive: str) -> str:
    """`java_options` with the driver mapping its classes from `archive` when that file exists,
    unless either option set decides class sharing already."""
    if not archive or not Path(archive).is_file():
        return java_options
    if any(option in f"{java_options} {extra_java_options}" for option in CLASS_SHARING_OPTIONS):
        return java_options
    return f"{java_options} -XX:SharedArchiveFile={archive} {QUIET_CLASS_SHARING}".strip()


def write_class_archive(archive: Path, workload: Callable[[SparkSession], None]) -> int:
    """Start a driver JVM that records the classes `workload(session)` loads, stop it, and put
    its archive at `archive`; the byte size written.

    The JVM writes the archive as it exits, to a temporary file that is renamed into place only
    once the JVM exited cleanly: a JVM maps the archive, and a partial one would crash it."""
    if SparkContext._gateway is not None:
        raise RuntimeError("a class archive needs a new JVM: this process already runs one")
    archive.parent.mkdir(parents=True, exist_ok=True)
    written = archive.with_name(f"{archive.name}.{os.getpid()}.tmp")
    options = f"-XX:ArchiveClassesAtExit={written} {QUIET_CLASS_SHARING}"
    resource = SparkSessionResource(
        ui_enabled=False,
        class_archive="",
        spark_config={"spark.driver.extraJavaOptions": options},
    )
    try:
        workload(resource.create_session())
        exit_code = stop_with_jvm()
        if exit_code != 0 or not written.is_file() or written.stat().st_size == 0:
            raise RuntimeError(f"the driver JVM exited with {exit_code} and wrote no archive")
        written.replace(archive)
    finally:
        written.unlink(missing_ok=True)
    return archive.stat().st_size


def stop_with_jvm() -> int | None:
    """Stop this process's classic session and the JVM behind it; the JVM's exit code."""
    context = SparkContext._active_spark_context
    if context is not None:
        context.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return None
    gateway.shutdown()
    SparkContext._gateway = None
    SparkContext._jvm = None
    process = getattr(gateway, "proc", None)
    if process is None:
        return None
    process.stdin.close()  # Spark's gateway server exits when its stdin closes
    return process.wait(timeout=300)


class SparkUnreachableError(ConnectionError):
    """Spark (a Connect server, a cluster master, its executors) cannot be reached or stopped
    answering: raised within a minute with the URL and Spark's own error, instead of a hang."""


# --- Spark Connect: bounded retries


class BoundedConnectRetries(DefaultPolicy):
    """Spark's default retry rules (UNAVAILABLE, server-sent retry delays) with a time budget per
    call: past it, the call fails with a `SparkUnreachableError` that names the server. A server
    asking for a longer delay than the budget has left is given up on at once."""

    def __init__(self, url: str, budget_seconds: float):
        super().__init__(
            max_retries=None,
            initial_backoff=250,
            backoff_multiplier=2.0,
            max_backoff=2000,
            jitter=250,
            min_jitter_threshold=1000,
        )
        self.url = url
        self.budget_seconds = budget_seconds
        # At exit nothing is retried: the client's exit hook still calls the server.
        atexit.register(self._stop_retrying)

    def _stop_retrying(self) -> None:
        self.budget_seconds = 0.0

    def to_state(self) -> RetryPolicyState:
        return _BudgetedRetries(self)


class _BudgetedRetries(RetryPolicyState):
    def __init__(self, policy: BoundedConnectRetries):
        super().__init__(policy)
        self._first_failure: float | None = None
        self._failures = 0

    def next_attempt(self, exception: BaseException | None = None) -> int | None:
        policy: BoundedConnectRetries = self.policy  # type: ignore[assignment]
        now = time.monotonic()
        if self._first_failure is None:
            self._first_failure = now
        self._failures += 1
        wait_ms = super().next_attempt(exception)
        waited = now - self._first_failure
        if wait_ms is not None and waited + wait_ms / 1000 <= policy.budget_seconds:
            return wait_ms
        raise SparkUnreachableError(
            f"Spark Connect server {redacted_url(policy.url)} unavailable: gave up after "
            f"{self._failures} attempts in {waited:.1f} s: {_grpc_summary(exception)}"
        ) from exception


def _grpc_summary(error: BaseException | None) -> str:
    if isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"


def redacted_url(url: str) -> str:
    """A Spark Connect URL fit for a log: parameters (`;token=...`) show only their names."""
    address, *parameters = url.split(";")
    names = [parameter.split("=", 1)[0] for parameter in parameters if parameter]
    return ";".join([address, *(f"{name}=..." for name in names)])


def _discard(session: SparkSession) -> None:
    """Close a Connect session whose server does not answer, without asking it to release."""
    session.release_session_on_close = False
    session.stop()


# --- a cluster: master and executors

# Spark retries registering with a master that does not answer 3 times, 20 s apart (fixed),
# then stops the context with "Cannot call methods on a stopped SparkContext": 74 s measured.
MASTER_CONNECT_SECONDS = 10.0


# A session on a cluster is up once a master registered the application: about 10-15 s of JVM
# start here, the registration itself well under a second. Something else listening on the
# master's port (a port mix-up) would otherwise hold the run for 74 s (above).
SESSION_START_SECONDS = 40.0


def started_within(
    builder: SparkSession.Builder, master: str, seconds: float = SESSION_START_SECONDS
) -> SparkSession:
    """`builder.getOrCreate()`, or a `SparkUnreachableError` after `seconds`."""
    return interruptible(
        builder.getOrCreate,
        seconds,
        f"Spark master {master} accepted a connection but registered no application within "
        f"{seconds:.0f} s: is a Spark standalone master listening there?",
    )


Result = TypeVar("Result")


def interruptible(call: Callable[[], Result], seconds: float, timeout_message: str) -> Result:
    """`call()` in a daemon thread while this one waits in Python, where a signal's handler can
    run: a SIGTERM (Dagster's run termination) ends the wait at once, where a wait inside
    Spark's JVM bridge or gRPC would hold it until the call returns. After `seconds`, a
    `SparkUnreachableError(timeout_message)`; the call goes on in its thread, which the
    failing process does not wait for at exit."""
    outcome: dict[str, Any] = {}

    def calling() -> None:
        try:
            outcome["result"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = error

    worker = threading.Thread(target=calling, name="tickbeta-spark-call", daemon=True)
    worker.start()
    worker.join(seconds)
    if "error" in outcome:
        raise outcome["error"]
    if "result" not in outcome:
        raise SparkUnreachableError(timeout_message)
    return outcome["result"]


def check_master_reachable(master: str) -> None:
    """Raise a `SparkUnreachableError` unless a standalone master (spark://h1:p1,h2:p2) accepts
    a TCP connection. Other cluster managers (yarn, k8s://) are not checked."""
    if not master.startswith("spark://"):
        return
    failures = []
    for address in master.removeprefix("spark://").split(","):
        parts = urlsplit(f"spark://{address}")
        try:
            socket.create_connection(
                (parts.hostname, parts.port or 7077), timeout=MASTER_CONNECT_SECONDS
            ).close()
            return
        except (OSError, ValueError) as error:
            failures.append(f"{address}: {error}")
    raise SparkUnreachableError(f"Spark master {master} is not reachable ({'; '.join(failures)})")


# A job waits for executors forever when a cluster has none for it (workers lost and not coming
# back, or none with the cores and memory it asks for): after this long, its jobs are cancelled.
EXECUTOR_WAIT_SECONDS = 45.0
_WATCH_INTERVAL_SECONDS = 1.0
_watched_applications: set[str] = set()


def watch_executors(
    context: SparkContext, master: str, wait_seconds: float = EXECUTOR_WAIT_SECONDS
) -> None:
    """Cancel the active jobs of `context` once they have waited `wait_seconds` with no executor,
    with a reason that names the master: the step fails with Spark's error instead of hanging.
    One daemon thread per application; it ends with the context."""
    application = context.applicationId
    if application in _watched_applications:
        return
    _watched_applications.add(application)
    threading.Thread(
        target=_watch_executors,
        args=(context, master, wait_seconds),
        name="tickbeta-executor-watchdog",
        daemon=True,
    ).start()


def _watch_executors(context: SparkContext, master: str, wait_seconds: float) -> None:
    waiting_since: float | None = None
    while True:
        time.sleep(_WATCH_INTERVAL_SECONDS)
        try:
            if context._jsc is None:  # stopped
                return
            jobs = context.statusTracker().getActiveJobsIds()
            executors = executor_count(context)
        except Exception:  # noqa: BLE001 - the context or its JVM is gone: nothing to watch
            return
        if executors or not jobs:
            waiting_since = None
            continue
        now = time.monotonic()
        waiting_since = waiting_since or now
        if now - waiting_since < wait_seconds:
            continue
        reason = (
            f"by tickbeta: the Spark master {master} gave this application no executor for "
            f"{wait_seconds:.0f} s (workers lost and not back, or none with the cores and "
            "memory it asks for)"
        )
        for job in jobs:
            context._jsc.sc().cancelJob(job, reason)
        waiting_since = None


def executor_count(context: SparkContext) -> int:
    """Live executors of a classic session's application; the driver is not counted."""
    # The status tracker lists the driver too.
    return max(0, len(context._jsc.sc().statusTracker().getExecutorInfos()) - 1)


def reads_local_files(spark: SparkSession) -> bool:
    """Whether Spark's tasks see this machine's files: a classic session in local mode.

    A Spark Connect server (even on localhost) or a cluster's executors may run where this
    machine's paths do not exist: data of a local lake is then shipped to them through Arrow.
    """
    # A Spark Connect session is another class (pyspark.sql.connect.session.SparkSession).
    return isinstance(spark, SparkSession) and spark.sparkContext.master.startswith("local")


def read_parallelism(spark: SparkSession) -> int:
    """The cores a read can spread over: Spark's default parallelism in a classic session.

    A Spark Connect client cannot ask the server's SparkContext; the server's shuffle
    partitions, which a deployment sizes to its cluster, stand in for it there.
    """
    context = _spark_context(spark)
    if context is None:
        return _shuffle_partitions(spark)
    return max(1, context.defaultParallelism)


def _shuffle_partitions(spark: SparkSession) -> int:
    return max(1, int(spark.conf.get("spark.sql.shuffle.partitions") or 1))


def dataframe_from_arrow(spark: SparkSession, table: pa.Table) -> DataFrame:
    """`createDataFrame` of an Arrow table in a few large slices.

    Spark cuts an Arrow table into one partition per `maxRecordsPerBatch` rows (10k by
    default): for millions of rows that is thousands of tiny tasks. Two slices per core keep
    every core busy at a fraction of the scheduling cost. (Through Spark Connect the table
    travels as one local relation that the server spreads over its default parallelism; the
    setting then only sizes the batches that Arrow UDFs see.)
    """
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    slices = 2 * (os.cpu_count() or 2)
    previous = spark.conf.get(key)
    spark.conf.set(key, str(max(10_000, -(-table.num_rows // slices))))
    try:
        return spark.createDataFrame(table.combine_chunks())
    finally:
        spark.conf.set(key, previous)


# Often enough to see a long stage move, rarely enough not to drown a run's log.
PROGRESS_INTERVAL_SECONDS = 5.0
_STAGE_NAME_LENGTH = 60


@contextmanager
def stage_progress(
    spark: SparkSession,
    description: str,
    log: Callable[[str], None],
    every_seconds: float = PROGRESS_INTERVAL_SECONDS,
) -> Iterator[None]:
    """Report the Spark stages that run inside this block, every `every_seconds`.

    The jobs started inside carry `description` in the Spark UI. A line is logged only when a
    stage moved since the last one. Spark Connect sessions have no SparkContext to ask: there
    the block runs without reports.
    """
    context = _spark_context(spark)
    if context is None:
        yield
        return
    previous = context.getLocalProperty("spark.job.description")
    context.setJobDescription(description)
    stop = threading.Event()
    reporter = threading.Thread(
        target=_report_stages,
        args=(context, log, stop, every_seconds),
        name="tickbeta-spark-progress",
        daemon=True,
    )
    reporter.start()
    try:
        yield
    finally:
        stop.set()
        reporter.join()
        context.setJobDescription(previous)  # type: ignore[arg-type]  # None clears it


def _spark_context(spark: SparkSession) -> SparkContext | None:
    # A Spark Connect session raises an AttributeError subclass for JVM-side attributes.
    return getattr(spark, "sparkContext", None)


def _report_stages(
    context: SparkContext, log: Callable[[str], None], stop: threading.Event, every: float
) -> None:
    last_reported: list[str] = []
    while not stop.wait(every):
        lines = stage_lines(context)
        if lines and lines != last_reported:
            log("Spark: " + "; ".join(lines))
        last_reported = lines


def stage_lines(context: SparkContext) -> list[str]:
    """One line per active stage: its id, name and tasks done / running / failed."""
    tracker = context.statusTracker()
    lines = []
    for stage_id in sorted(tracker.getActiveStageIds()):
        stage = tracker.getStageInfo(stage_id)
        if stage is None:  # finished between the two calls
            continue
        failed = f", {stage.numFailedTasks} failed" if stage.numFailedTasks else ""
        lines.append(
            f"stage {stage.stageId} ({stage.name[:_STAGE_NAME_LENGTH]}): "
            f"{stage.numCompletedTasks}/{stage.numTasks} tasks done, "
            f"{stage.numActiveTasks} running{failed}"
        )
    return lines


CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def connect_server_command(
    port: int,
    master: str = "local[*]",
    memory: str = LOCAL_DEFAULTS[DRIVER_MEMORY],
    host: str = "127.0.0.1",
) -> tuple[list[str], dict[str, str]]:
    """The spark-submit command (and environment) of a Spark Connect server from this pyspark.

    In the foreground, unlike sbin/start-connect-server.sh, which daemonizes with a pid file
    per user in /tmp. Its Python workers run this interpreter, which has tickbeta installed.
    The server's JVM exits on its first OutOfMemoryError instead of thrashing: its clients
    then fail within their retry budget. On a cluster master its executors get the cluster
    default memory.
    """
    import pyspark

    spark_home = os.path.dirname(pyspark.__file__)
    command = [
        os.path.join(spark_home, "bin", "spark-submit"),
        "--class",
        CONNECT_SERVER_CLASS,
        "--name",
        "tickbeta",
        "--master",
        master,
        "--driver-memory",
        memory,
        "--conf",
        f"spark.connect.grpc.binding.port={port}",
        "--conf",
        f"spark.connect.grpc.binding.address={host}",
        "--conf",
        f"spark.sql.shuffle.partitions={LOCAL_DEFAULTS['spark.sql.shuffle.partitions']}",
        "--conf",
        f"{DRIVER_DEFAULT_JAVA_OPTIONS}={EXIT_ON_OUT_OF_MEMORY}",
    ]
    if not master.startswith("local"):
        command += ["--conf", f"{EXECUTOR_MEMORY}={CLUSTER_DEFAULTS[EXECUTOR_MEMORY]}"]
    env = {**os.environ, "SPARK_HOME": spark_home, "PYSPARK_PYTHON": sys.executable}
    return command, env

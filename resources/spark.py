"""The Spark session: local mode by default, a cluster or a Spark Connect server on demand."""

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from dagster import InitResourceContext
from dagster_pyspark import PySparkResource
from pydantic import Field
from pyspark import SparkContext
from pyspark.sql import DataFrame, SparkSession

DRIVER_MEMORY = "spark.driver.memory"
EXECUTOR_MEMORY = "spark.executor.memory"

LOCAL_DEFAULTS = {
    # Local mode runs the executors inside the driver JVM: give it room for a day of ticks.
    DRIVER_MEMORY: "4g",
    # A few partitions per core; adaptive execution coalesces what is left over.
    "spark.sql.shuffle.partitions": "8",
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

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._spark_session = self.create_session()

    def create_session(self) -> SparkSession:
        # Python workers must run the interpreter that has this project installed.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if self.remote:
            return self._connect_session()
        builder = SparkSession.builder.master(self.master).appName("tickbeta")
        for key, value in self._settings().items():
            builder = builder.config(key, value)
        return builder.getOrCreate()

    def _connect_session(self) -> SparkSession:
        """A Spark Connect session: the JVM, its executors and their Python workers are the
        server's; this process only sends plans. Only runtime (SQL) settings can be changed
        from here: Spark rejects others (spark.driver.memory, ...) with CANNOT_MODIFY_CONFIG,
        they belong to the command that starts the server."""
        session = SparkSession.builder.remote(self.remote).getOrCreate()
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
        java_options = {
            DRIVER_DEFAULT_JAVA_OPTIONS: with_exit_on_out_of_memory(
                user.get(DRIVER_DEFAULT_JAVA_OPTIONS, "")
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


def with_exit_on_out_of_memory(java_options: str) -> str:
    """`java_options` with the JVM told to exit on its first OutOfMemoryError, unless they
    already say what to do then."""
    if "OnOutOfMemoryError" in java_options:  # Exit..., Crash..., or -XX:OnOutOfMemoryError=cmd
        return java_options
    return f"{EXIT_ON_OUT_OF_MEMORY} {java_options}".strip()


def reads_local_files(spark: SparkSession) -> bool:
    """Whether Spark's tasks see this machine's files: a classic session in local mode.

    A Spark Connect server (even on localhost) or a cluster's executors may run where this
    machine's paths do not exist: data of a local lake is then shipped to them through Arrow.
    """
    # A Spark Connect session is another class (pyspark.sql.connect.session.SparkSession).
    return isinstance(spark, SparkSession) and spark.sparkContext.master.startswith("local")


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
    The server's JVM exits on its first OutOfMemoryError instead of thrashing. On a cluster
    master its executors get the cluster default memory.
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

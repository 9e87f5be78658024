"""What a session is asked for: memory by kind of master, a driver that dies on OutOfMemoryError,
its classes mapped from an archive; a session's process that skips Python's final collections."""

import json
import subprocess
import sys

from beta_assets.resources import spark_from_environment
from resources.spark import (
    CLUSTER_DEFAULTS,
    DRIVER_LOGGING,
    EXIT_ON_OUT_OF_MEMORY,
    LOCAL_DEFAULTS,
    QUIET_CLASS_SHARING,
    SparkSessionResource,
    connect_server_command,
    redacted_url,
)

DRIVER, EXECUTOR = "spark.driver.memory", "spark.executor.memory"
DEFAULT_JAVA_OPTIONS = "spark.driver.defaultJavaOptions"
EXTRA_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
QUIET_LOGGING = f"-Dlog4j2.configurationFile={DRIVER_LOGGING.as_uri()}"


def settings(**fields) -> dict[str, str]:
    """A resource's settings; without a class archive unless `fields` name one."""
    return SparkSessionResource(**{"class_archive": "", **fields})._settings()


def test_local_mode_gives_the_driver_room_and_asks_for_no_executors():
    local = settings(master="local[2]")
    assert local[DRIVER] == LOCAL_DEFAULTS[DRIVER]
    assert EXECUTOR not in local


def test_cluster_masters_size_the_driver_and_the_executors():
    for master in ("spark://h:7077", "yarn", "k8s://https://h:6443"):
        cluster = settings(master=master)
        assert (cluster[DRIVER], cluster[EXECUTOR]) == (
            CLUSTER_DEFAULTS[DRIVER],
            CLUSTER_DEFAULTS[EXECUTOR],
        ), master


def test_memory_fields_override_the_defaults_and_spark_config_overrides_both():
    sized = settings(master="spark://h:7077", driver_memory="3g", executor_memory="12g")
    assert (sized[DRIVER], sized[EXECUTOR]) == ("3g", "12g")
    configured = settings(
        master="spark://h:7077", executor_memory="12g", spark_config={EXECUTOR: "16g"}
    )
    assert configured[EXECUTOR] == "16g"


def test_memory_comes_from_the_environment():
    spark = spark_from_environment(
        {"TICKBETA_SPARK_DRIVER_MEMORY": "3g", "TICKBETA_SPARK_EXECUTOR_MEMORY": "8g"}
    )
    assert (spark.driver_memory, spark.executor_memory) == ("3g", "8g")
    unset = spark_from_environment({})
    assert (unset.driver_memory, unset.executor_memory) == (None, None)


def test_the_driver_exits_on_out_of_memory_and_a_users_java_options_are_kept():
    plain = settings(master="spark://h:7077")
    assert plain[DEFAULT_JAVA_OPTIONS].split() == [EXIT_ON_OUT_OF_MEMORY, QUIET_LOGGING]
    assert EXTRA_JAVA_OPTIONS not in plain

    users = settings(
        spark_config={EXTRA_JAVA_OPTIONS: "-Dmine=1", DEFAULT_JAVA_OPTIONS: "-Dadmin=1"}
    )
    assert users[EXTRA_JAVA_OPTIONS] == "-Dmine=1"
    assert users[DEFAULT_JAVA_OPTIONS] == f"{EXIT_ON_OUT_OF_MEMORY} -Dadmin=1 {QUIET_LOGGING}"

    # A user who already chose what an OutOfMemoryError does keeps that choice.
    crash = settings(spark_config={DEFAULT_JAVA_OPTIONS: "-XX:+CrashOnOutOfMemoryError"})
    assert crash[DEFAULT_JAVA_OPTIONS] == f"-XX:+CrashOnOutOfMemoryError {QUIET_LOGGING}"
    # So does one with a logging configuration of their own.
    logging = settings(spark_config={EXTRA_JAVA_OPTIONS: "-Dlog4j2.configurationFile=x.xml"})
    assert logging[DEFAULT_JAVA_OPTIONS] == EXIT_ON_OUT_OF_MEMORY


def test_the_running_driver_jvm_has_the_exit_on_out_of_memory_flag(spark):
    jvm = spark.sparkContext._jvm
    arguments = list(
        jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()
    )
    assert EXIT_ON_OUT_OF_MEMORY in arguments
    assert QUIET_LOGGING in arguments and DRIVER_LOGGING.is_file()


def test_the_connect_server_command_exits_on_out_of_memory():
    command, _ = connect_server_command(15002)
    assert f"{DEFAULT_JAVA_OPTIONS}={EXIT_ON_OUT_OF_MEMORY}" in command
    assert command[command.index("--driver-memory") + 1] == LOCAL_DEFAULTS[DRIVER]
    assert not any(arg.startswith(EXECUTOR) for arg in command)
    cluster, _ = connect_server_command(15002, master="spark://h:7077")
    assert f"{EXECUTOR}={CLUSTER_DEFAULTS[EXECUTOR]}" in cluster


def test_a_connect_url_in_an_error_shows_no_token():
    assert redacted_url("sc://h:15002") == "sc://h:15002"
    assert (
        redacted_url("sc://h:15002/;token=s3cret;user_id=me")
        == "sc://h:15002/;token=...;user_id=..."
    )


def test_the_driver_maps_its_classes_from_an_archive_when_there_is_one(tmp_path):
    archive = tmp_path / "driver.jsa"
    assert "SharedArchiveFile" not in settings(class_archive=str(archive))[DEFAULT_JAVA_OPTIONS]
    archive.write_bytes(b"archive")
    shared = settings(class_archive=str(archive))[DEFAULT_JAVA_OPTIONS]
    assert shared == (
        f"{EXIT_ON_OUT_OF_MEMORY} {QUIET_LOGGING} -XX:SharedArchiveFile={archive} "
        f"{QUIET_CLASS_SHARING}"
    )
    # A user who decides class sharing themselves keeps that decision.
    for options in ("-Xshare:off", "-XX:SharedArchiveFile=mine.jsa"):
        own = settings(class_archive=str(archive), spark_config={EXTRA_JAVA_OPTIONS: options})
        assert "SharedArchiveFile" not in own[DEFAULT_JAVA_OPTIONS]


def test_a_written_class_archive_is_one_a_new_driver_jvm_maps(tmp_path):
    """Written by one JVM, its classes loaded from it by the next; both in processes of their
    own (tests/class_archive_process.py)."""
    archive = tmp_path / "driver.jsa"

    def archive_process(mode: str) -> dict:
        command = [sys.executable, "-m", "tests.class_archive_process", mode, str(archive)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return json.loads(result.stdout.splitlines()[-1])

    written = archive_process("write")
    assert written["size"] == archive.stat().st_size > 0
    assert [path.name for path in tmp_path.iterdir()] == ["driver.jsa"]  # no temporary left
    used = archive_process("use")
    assert used["rows"] == [[0, 334], [1, 333], [2, 333]]
    assert f"-XX:SharedArchiveFile={archive}" in used["arguments"]
    # Spark's own classes: thousands of them come from the archive.
    assert used["classes_from_archive"] > 1000


EXIT_PROBE = """
import atexit, sys
from resources.spark import skip_final_collections_at_exit

class Cyclic:
    def __del__(self):
        print("collected at exit", flush=True)

atexit.register(print, "earlier handler ran")  # after the hook's freeze (exit handlers: LIFO)
if sys.argv[1] == "skip":
    skip_final_collections_at_exit()
atexit.register(print, "later handler ran")
garbage = Cyclic()
garbage.itself = garbage
del garbage
print("run done", flush=True)
"""


def test_a_session_process_exits_without_the_final_collections():
    """Unreachable cycles left at exit are not collected once the hook is in (the seconds of
    the final collections), and the exit handlers still run."""
    outputs = {
        mode: subprocess.run(
            [sys.executable, "-c", EXIT_PROBE, mode], capture_output=True, text=True, check=True
        ).stdout.split("\n")
        for mode in ("skip", "collect")
    }
    handlers = ["run done", "later handler ran", "earlier handler ran"]
    assert outputs["collect"][:4] == [*handlers, "collected at exit"]
    assert outputs["skip"][:4] == [*handlers, ""]

"""The early start of a run's Spark session, in a process of its own (it stops a JVM).

`python -m tests.early_start_process` starts a session early for one resource and sets up a
resource with a larger driver: the early JVM must be stopped and the session rebuilt with the
driver's memory the second resource asks for. Then an early start for that same resource: its
setup must take the early session. Prints one JSON line of what it saw.
"""

import json
import time

from dagster import build_init_resource_context
from pyspark import SparkContext

from resources.spark import SparkSessionResource, start_session_early

RUN_ARGV = ["dagster", "asset", "materialize"]
GIB = 1024**3


def heap_gib(resource: SparkSessionResource) -> float:
    jvm = resource.spark_session.sparkContext._jvm
    return jvm.java.lang.Runtime.getRuntime().maxMemory() / GIB


def setup(resource: SparkSessionResource) -> list[str]:
    """Set `resource` up as a run does; the lines it logged."""
    context = build_init_resource_context()
    logged = []
    context.log.info = logged.append  # type: ignore[method-assign]
    resource.setup_for_execution(context)
    return logged


def main() -> None:
    small = SparkSessionResource(ui_enabled=False, driver_memory="768m")
    large = SparkSessionResource(ui_enabled=False, driver_memory="1536m")
    assert start_session_early(small, RUN_ARGV)
    early_process = _gateway_process()
    other_settings_logged = setup(large)
    report = {
        "other_settings_logged": other_settings_logged,
        "early_jvm_exit_code": early_process.poll(),
        "rebuilt_heap_gib": heap_gib(large),
    }
    again = SparkSessionResource(ui_enabled=False, driver_memory="1536m")
    assert start_session_early(again, RUN_ARGV)
    report["same_settings_logged"] = setup(again)
    report["same_session"] = again.spark_session is large.spark_session
    print(json.dumps(report), flush=True)


def _gateway_process():
    """The JVM process of the session being started early, once it is launched."""
    while getattr(SparkContext._gateway, "proc", None) is None:
        time.sleep(0.05)
    return SparkContext._gateway.proc


if __name__ == "__main__":
    main()

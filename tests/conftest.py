"""One Spark session per test process (each xdist worker has its own), temporary lakes, and a
way to run the pipeline."""

import os
import sys

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ["TICKBETA_SPARK_UI"] = "false"

from resources.spark import SparkSessionResource  # noqa: E402
from tests.pipeline import TEST_SPARK_CONFIG  # noqa: E402


@pytest.fixture(scope="session")
def spark():
    session = SparkSessionResource(
        master="local[2]", ui_enabled=False, spark_config=TEST_SPARK_CONFIG
    ).create_session()
    yield session
    session.stop()


@pytest.fixture
def lake_root(tmp_path):
    return str(tmp_path / "lake")


# The files of a minute or more each (their own servers, JVMs and CLI processes; `--durations`
# of 2026-12-03). They run first, so that `make test`'s workers (xdist, a file each at a time,
# in collection order with --no-loadscope-reorder) do not end on one of them while the other
# idles. The first two, mostly waiting on processes and servers, start one on each worker. A
# stale list costs only time.
LONGEST_FILES = (
    "test_fail_fast.py",
    "test_ui.py",
    "test_backpressure.py",
    "test_distributed_modes.py",
    "test_cli.py",
    "test_incremental.py",
    "test_faults.py",
    "test_run_process_memory.py",
    "test_dg.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: position for position, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FILES)))

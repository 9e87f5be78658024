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

"""Spark stage progress in the run log: reported in classic mode, silently absent on Connect."""

import re
import time

from pyspark.errors import PySparkAttributeError

from resources.spark import stage_progress

PROGRESS_LINE = re.compile(r"stage \d+ \(.+\): \d+/2 tasks done, \d+ running")


def slow_count(spark, seconds: float) -> int:
    """A two-task job that takes a few seconds: long enough to be seen in progress."""

    def wait(index: int) -> int:
        time.sleep(seconds)
        return index

    return spark.sparkContext.parallelize(range(2), 2).map(wait).count()


def test_running_stages_are_reported_and_jobs_are_labelled(spark):
    lines: list[str] = []
    descriptions: list[str | None] = []
    context = spark.sparkContext
    with stage_progress(spark, "tickbeta test job", lines.append, every_seconds=0.2):
        descriptions.append(context.getLocalProperty("spark.job.description"))
        assert slow_count(spark, 2.0) == 2
    assert descriptions == ["tickbeta test job"]
    assert context.getLocalProperty("spark.job.description") is None
    assert lines, "no progress was reported during a 2-second stage"
    assert all(line.startswith("Spark: ") for line in lines)
    assert any(PROGRESS_LINE.search(line) for line in lines), lines
    # A line is repeated only when a stage moved.
    assert all(a != b for a, b in zip(lines, lines[1:], strict=False))


def test_nothing_is_reported_after_the_block(spark):
    lines: list[str] = []
    with stage_progress(spark, "tickbeta quick", lines.append, every_seconds=0.2):
        pass
    slow_count(spark, 0.6)
    assert lines == []


class ConnectSession:
    """Like a Spark Connect session: JVM-side attributes raise an AttributeError subclass."""

    def __getattr__(self, name: str):
        raise PySparkAttributeError(
            errorClass="JVM_ATTRIBUTE_NOT_SUPPORTED", messageParameters={"attr_name": name}
        )


def test_a_connect_session_runs_the_block_without_reports():
    lines: list[str] = []
    ran = False
    with stage_progress(ConnectSession(), "tickbeta connect", lines.append, every_seconds=0.01):
        time.sleep(0.05)
        ran = True
    assert ran
    assert lines == []

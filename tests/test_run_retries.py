"""A failed sensor run is retried, not lost: the shipped instance re-executes it once from its
failure with its tags, and that re-execution brings gold back to what silver says, even after
later runs that covered only later changes."""

import pyarrow as pa
import pyarrow.compute as pc
from dagster import DagsterInstance, ReexecutionOptions, execute_job
from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import DEFAULT_REEXECUTION_POLICY

from beta_assets.assets import returns
from beta_assets.settings import (
    EVENT_TIME,
    GOLD_TABLE,
    SPY_RETURNS_TABLE,
    SYMBOL,
)
from tests import datasets
from tests.commands import dagster_home, open_instance
from tests.job_from_environment import reconstructable_pipeline
from tests.pipeline import differences, recomputed_from_scratch, write_silver
from tests.sensing import SensorDriver


def test_the_shipped_instance_retries_a_failed_run_once_from_its_failure(tmp_path):
    with open_instance(dagster_home(tmp_path / "home")) as instance:
        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 1
        assert instance.run_retries_retry_on_asset_or_op_failure
    # Without a `dagster/retry_strategy` tag the daemon re-executes from the failure.
    assert DEFAULT_REEXECUTION_POLICY == ReexecutionStrategy.FROM_FAILURE


def _split(day: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(the day before 19:00 but for one symbol's half hour at 15:10, that half hour, the day
    from 19:00): three appends whose changes lie hours apart."""
    times = day.column(EVENT_TIME)
    late = pc.and_(
        pc.equal(day.column(SYMBOL), "T001"),
        pc.and_(pc.greater_equal(times, datasets.at(15, 10)), pc.less(times, datasets.at(15, 40))),
    )
    tail = pc.greater_equal(times, datasets.at(19))
    base = pc.invert(pc.or_(late, tail))
    return day.filter(base), day.filter(late), day.filter(tail)


def test_a_failed_sensor_run_re_executed_from_its_failure_leaves_gold_equal_to_silver(
    spark, tmp_path, monkeypatch
):
    """Silver's day -> a run; late ticks at 15:10 -> a run whose joined_returns fails; the day's
    last hours -> a run (its changes reach back to 18:00 only): gold is stale. The failed run
    re-executed from its failure, as the instance's run retries do, makes it equal to a fresh
    computation over silver."""
    lake_root = str(tmp_path / "lake")
    base, late, tail = _split(datasets.simulated(symbols=2, interval=120.0, seed=8))
    assert late.num_rows > 0
    (tmp_path / "runs").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "runs"))
    job = reconstructable_pipeline(lake_root)
    sensor = SensorDriver(lake_root)

    def run_requested_by_sensor():
        (request,) = sensor.evaluate().run_requests
        return execute_job(job, instance, tags=request.tags)

    write_silver(lake_root, base)
    assert run_requested_by_sensor().success
    write_silver(lake_root, late)
    with monkeypatch.context() as failing:

        def lost_executor(*_):
            raise RuntimeError("executor lost (injected)")

        failing.setattr(returns, "unchanged_buckets", lost_executor)
        failed = run_requested_by_sensor()
    assert [event.step_key for event in failed.get_step_failure_events()] == ["joined_returns"]
    write_silver(lake_root, tail)
    assert run_requested_by_sensor().success

    fresh_root = str(tmp_path / "fresh")
    recomputed_from_scratch(lake_root, fresh_root)
    assert differences(lake_root, fresh_root, GOLD_TABLE) is not None  # the late ticks' windows

    retried = execute_job(
        job,
        instance,
        tags=failed.dagster_run.tags,
        reexecution_options=ReexecutionOptions.from_failure(failed.run_id, instance),
    )

    assert retried.success
    assert differences(lake_root, fresh_root, SPY_RETURNS_TABLE) is None
    assert differences(lake_root, fresh_root, GOLD_TABLE) is None

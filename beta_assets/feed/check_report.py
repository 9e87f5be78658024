"""`tickbeta checks`: did the latest run of the instance pass every check? (CI gate)"""

from dataclasses import dataclass

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus


@dataclass(frozen=True)
class CheckOutcome:
    asset: str
    check: str
    passed: bool
    severity: str
    description: str


def latest_run_outcomes(
    instance: DagsterInstance,
) -> tuple[str, DagsterRunStatus, list[CheckOutcome]]:
    runs = instance.get_runs(limit=1)
    if not runs:
        raise SystemExit(f"no runs in the Dagster instance at {instance.root_directory}")
    run = runs[0]
    records = instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    outcomes = []
    for record in records:
        evaluation = record.get_dagster_event().event_specific_data
        outcomes.append(
            CheckOutcome(
                asset=evaluation.asset_key.to_user_string(),
                check=evaluation.check_name,
                passed=evaluation.passed,
                severity=evaluation.severity.value,
                description=evaluation.description or "",
            )
        )
    return run.run_id, run.status, outcomes


def report(expected_checks: set[tuple[str, str]]) -> int:
    """Print the latest run's checks; 1 if the run failed, a check failed or one is missing."""
    run_id, status, outcomes = latest_run_outcomes(DagsterInstance.get())
    print(f"run {run_id}: {status.value}")
    for outcome in outcomes:
        mark = "PASS" if outcome.passed else f"FAIL ({outcome.severity})"
        print(f"  {mark:14} {outcome.asset}:{outcome.check}  {outcome.description}")
    missing = expected_checks - {(o.asset, o.check) for o in outcomes}
    for asset, check in sorted(missing):
        print(f"  {'MISSING':14} {asset}:{check}")
    failed = [o for o in outcomes if not o.passed]
    return 1 if status != DagsterRunStatus.SUCCESS or failed or missing else 0

"""Where the seconds of a `dagster asset materialize` run go, step by step, action by action.

    .venv/bin/python -m bench.profile_steps --lake data/lakes/feed_100x1s --repeat 2
    .venv/bin/python -m bench.profile_steps --lake A --lake B --layout time10mb

Each run is the README's command in a new process over every hour of the lake's silver, with
the derived tables removed first (as `bench/run_bench.py` does). The process keeps its Dagster
events in a temporary DAGSTER_HOME, set up with the shipped `deploy/dagster.yaml` (`--instance
dagster-default` for Dagster's own SQLite storage instead), and Spark writes its event log (through
PYSPARK_SUBMIT_ARGS); the table puts both on one clock: process start to the run's start
(imports, code location, run creation), resource initialisation (the JVM start), each step and,
inside it, each Spark action (a SQL execution) by call site, with how many ran, and what the
step spent outside them (Delta log replays, delta-rs writes, pandas checks, query planning).
`--layout time10mb` profiles a copy of silver rewritten as ~10 MB time-contiguous files,
`--layout appends1min` one written as an append per minute of event time (a live feed's table).
`--rerun` keeps the derived tables after the first run: the later runs re-run the same range.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bench.run_bench import DERIVED, INSTANCES, fresh_dagster_home, silver_hours
from beta_assets.partitions import partition_key
from beta_assets.settings import EVENT_TIME, SILVER_TABLE
from resources.lake import DeltaLake

ASSETS = ("spy_returns", "joined_returns", "gold_beta_metrics")


@dataclass(frozen=True)
class SparkAction:
    start: float
    seconds: float
    call_site: str


@dataclass(frozen=True)
class RunProfile:
    total: float
    phases: list[tuple[str, float]]  # (name, seconds) in order
    actions_per_step: dict[str, list[SparkAction]]
    step_seconds: dict[str, float]


def profile_run(lake_root: str, instance_yaml: str, rerun: bool = False) -> RunProfile:
    """One run over every hour of silver: on new derived tables, or (`rerun`) over the tables
    the last run left, as a re-executed or re-launched range finds them."""
    lake = DeltaLake(root=lake_root)
    if not rerun:
        for table in DERIVED:
            shutil.rmtree(lake.uri(table), ignore_errors=True)
    start, end = silver_hours(lake)
    with fresh_dagster_home(instance_yaml) as home, tempfile.TemporaryDirectory() as spark_log:
        env = {
            **os.environ,
            "DAGSTER_HOME": home,
            "TICKBETA_LAKE": lake_root,
            "TICKBETA_SPARK_UI": "false",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            "PYSPARK_SUBMIT_ARGS": (
                "--conf spark.eventLog.enabled=true --conf spark.eventLog.compress=false "
                f"--conf spark.eventLog.dir=file://{spark_log} pyspark-shell"
            ),
        }
        command = [
            str(Path(sys.executable).parent / "dagster"),
            *("asset", "materialize", "-m", "beta_assets.definitions"),
            *("--select", ",".join(ASSETS)),
            *(
                "--partition-range",
                f"{partition_key(start)}...{partition_key(end - timedelta(hours=1))}",
            ),
        ]
        started = time.time()
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        ended = time.time()
        if result.returncode != 0:
            raise RuntimeError(result.stdout[-3000:] + result.stderr[-3000:])
        events = dagster_events(home)
        actions = spark_actions(spark_log)
    return breakdown(started, ended, events, actions)


def dagster_events(home: str) -> list[tuple[float, str, str | None]]:
    """(timestamp, event type, step) of the one run in the instance at `home`."""
    from dagster import DagsterInstance

    os.environ["DAGSTER_HOME"] = home
    instance = DagsterInstance.get()
    (run,) = instance.get_runs()
    events = []
    for entry in instance.all_logs(run.run_id):
        if entry.dagster_event is not None:
            events.append((entry.timestamp, entry.dagster_event.event_type.name, entry.step_key))
    instance.dispose()
    return events


def spark_actions(log_dir: str) -> list[SparkAction]:
    """Each action a step ran (a root SQL execution, with the jobs adaptive execution split it
    into, named by its call site), and each job outside SQL, from Spark's event log."""
    started: dict[int, tuple[float, str]] = {}
    actions = []
    root = str(Path(__file__).resolve().parent.parent) + "/"
    for path in Path(log_dir).rglob("*"):
        if not path.is_file() or path.name.startswith((".", "appstatus")):
            continue
        for line in path.open():
            event = json.loads(line)
            kind = event["Event"].rsplit(".", 1)[-1]
            if kind == "SparkListenerSQLExecutionStart":
                if event.get("rootExecutionId", event["executionId"]) != event["executionId"]:
                    continue  # nested in another action: counted there
                site = event["description"].replace(root, "")
                started[event["executionId"]] = (event["time"] / 1000, site)
            elif kind == "SparkListenerSQLExecutionEnd" and event["executionId"] in started:
                begun, site = started.pop(event["executionId"])
                actions.append(SparkAction(begun, event["time"] / 1000 - begun, site))
            elif kind == "SparkListenerJobStart" and not _in_sql(event):
                site = event["Stage Infos"][-1]["Stage Name"] if event["Stage Infos"] else "?"
                started[-1 - event["Job ID"]] = (event["Submission Time"] / 1000, site)
            elif kind == "SparkListenerJobEnd" and -1 - event["Job ID"] in started:
                begun, site = started.pop(-1 - event["Job ID"])
                actions.append(SparkAction(begun, event["Completion Time"] / 1000 - begun, site))
    return sorted(actions, key=lambda action: action.start)


def _in_sql(job_start: dict) -> bool:
    return "spark.sql.execution.id" in (job_start.get("Properties") or {})


def breakdown(
    started: float,
    ended: float,
    events: list[tuple[float, str, str | None]],
    actions: list[SparkAction],
) -> RunProfile:
    first = {}
    for timestamp, kind, step in events:
        first.setdefault((kind, step), timestamp)
    run_start = first[("RUN_START", None)]
    init_start = first.get(("RESOURCE_INIT_STARTED", None), run_start)
    init_end = first.get(("RESOURCE_INIT_SUCCESS", None), init_start)
    run_end = first[("RUN_SUCCESS", None)]
    phases = [
        ("process start -> run start", run_start - started),
        ("run start -> resource init", init_start - run_start),
        ("resource init (Spark session)", init_end - init_start),
    ]
    step_seconds = {}
    actions_per_step: dict[str, list[SparkAction]] = {}
    previous_end = init_end
    for asset in ASSETS:
        step_start, step_end = first[("STEP_START", asset)], first[("STEP_SUCCESS", asset)]
        phases.append((f"between steps -> {asset}", step_start - previous_end))
        phases.append((f"step {asset}", step_end - step_start))
        step_seconds[asset] = step_end - step_start
        actions_per_step[asset] = [a for a in actions if step_start <= a.start < step_end]
        previous_end = step_end
    phases.append(("last step -> run success", run_end - previous_end))
    phases.append(("run success -> process exit", ended - run_end))
    return RunProfile(ended - started, phases, actions_per_step, step_seconds)


def profile_table(title: str, runs: list[RunProfile], load_before: tuple[float, ...]) -> str:
    header = " | ".join(f"run {i + 1} s" for i in range(len(runs)))
    lines = [
        f"### {title}",
        f"load average (1, 5, 15 min) before: {_load(load_before)}; "
        f"after: {_load(os.getloadavg())}",
        "",
        f"| phase | {header} |",
        "|---|" + "---:|" * len(runs),
    ]
    for index, (name, _) in enumerate(runs[0].phases):
        lines.append(f"| {name} | " + " | ".join(f"{r.phases[index][1]:.2f}" for r in runs) + " |")
        asset = name.removeprefix("step ")
        if name.startswith("step "):
            lines.extend(_job_lines(asset, runs))
    lines.append("| **end to end** | " + " | ".join(f"**{r.total:.2f}**" for r in runs) + " |")
    return "\n".join(lines)


def _load(load: tuple[float, ...]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def _job_lines(asset: str, runs: list[RunProfile]) -> list[str]:
    per_run = []
    for run in runs:
        sites: dict[str, list[float]] = defaultdict(list)
        for action in run.actions_per_step[asset]:
            sites[action.call_site].append(action.seconds)
        per_run.append(sites)
    lines = []
    for site in dict.fromkeys(s for sites in per_run for s in sites):
        cells = [
            f"{sum(sites.get(site, [])):.2f} ({len(sites.get(site, []))})" for sites in per_run
        ]
        lines.append(f"| &nbsp;&nbsp;Spark: {site} | " + " | ".join(cells) + " |")
    outside = [
        run.step_seconds[asset] - sum(action.seconds for action in run.actions_per_step[asset])
        for run in runs
    ]
    lines.append(
        "| &nbsp;&nbsp;outside Spark actions | " + " | ".join(f"{s:.2f}" for s in outside) + " |"
    )
    return lines


def ticks_by_event_time(source_root: str):
    """Every tick of a lake's silver, sorted by event time."""
    import pyarrow.compute as pc

    source = DeltaLake(root=source_root).require(SILVER_TABLE).to_pyarrow_table()
    return source.take(pc.sort_indices(source, [(EVENT_TIME, "ascending")]))


def rewrite_time_contiguous(source_root: str, target_root: str, file_mb: int) -> None:
    """The same ticks as `source_root`'s silver, sorted by event time, in files of ~file_mb."""
    from deltalake import WriterProperties, write_deltalake

    rows = ticks_by_event_time(source_root)
    target = DeltaLake(root=target_root).uri(SILVER_TABLE)
    write_deltalake(
        target,
        rows,
        target_file_size=file_mb * 1024 * 1024,
        writer_properties=WriterProperties(compression="SNAPPY", max_row_group_size=1_000_000),
    )


def rewrite_as_appends(source_root: str, target_root: str, every: timedelta) -> None:
    """The same ticks as `source_root`'s silver, appended one Delta commit per `every` of event
    time, as a live feed writes them (many small files)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import write_deltalake

    rows = ticks_by_event_time(source_root)
    micros = pc.cast(pc.cast(rows.column(EVENT_TIME), pa.timestamp("us", tz="UTC")), pa.int64())
    step = every // timedelta(microseconds=1)
    slots = pc.divide(micros, step).to_numpy()  # integer division: the commit of each tick
    bounds = [0, *((slots[1:] != slots[:-1]).nonzero()[0] + 1), len(slots)]
    target = DeltaLake(root=target_root).uri(SILVER_TABLE)
    for first, last in zip(bounds[:-1], bounds[1:], strict=True):
        write_deltalake(target, rows.slice(first, last - first), mode="append")


LAYOUTS = {
    "time10mb": (
        "sorted by event time in ~10 MB files",
        lambda a, b: rewrite_time_contiguous(a, b, 10),
    ),
    "appends1min": (
        "appended one commit per minute of event time",
        lambda a, b: rewrite_as_appends(a, b, timedelta(minutes=1)),
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", action="append", required=True, help="a lake with silver")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--layout",
        choices=["as-is", *LAYOUTS],
        default="as-is",
        help="profile a copy of silver "
        + "; ".join(f"{name}: {what}" for name, (what, _) in LAYOUTS.items()),
    )
    parser.add_argument(
        "--instance",
        choices=list(INSTANCES),
        default="shipped",
        help="the DAGSTER_HOME's dagster.yaml: deploy/dagster.yaml, or Dagster's defaults",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="after the first run, run the same range again over the tables it wrote",
    )
    args = parser.parse_args()
    for root in args.lake:
        lake_root = root
        if args.layout in LAYOUTS:
            lake_root = f"{root.rstrip('/')}_{args.layout}"
            if not Path(lake_root, SILVER_TABLE).exists():  # reused: the same files every run
                LAYOUTS[args.layout][1](root, lake_root)
        files = list(Path(lake_root, SILVER_TABLE).glob("*.parquet"))
        size = sum(f.stat().st_size for f in files) / 1e6
        title = f"{lake_root}: silver {len(files)} files, {size:.0f} MB; {args.instance} instance"
        load_before = os.getloadavg()
        runs = [
            profile_run(lake_root, INSTANCES[args.instance], rerun=args.rerun and number > 0)
            for number in range(args.repeat)
        ]
        print(profile_table(title, runs, load_before))
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`tickbeta`: the feed (simulate, import) and the demo, from the command line."""

import argparse
import os
import sys
from datetime import date
from functools import partial
from pathlib import Path

from beta_assets.feed.check_report import report
from beta_assets.feed.demo import RunFailed, run_a_small_day, run_demo
from beta_assets.feed.feed import append_sessions, run_live
from beta_assets.feed.importer import FORMATS, import_capture
from beta_assets.feed.simulator import SimulationSpec
from beta_assets.resources import lake_from_environment
from beta_assets.settings import LAKE_ENV, MARKET_SYMBOL
from resources.lake import DeltaLake
from resources.spark import (
    CLASS_ARCHIVE,
    DRIVER_MEMORY,
    LOCAL_DEFAULTS,
    connect_server_command,
    write_class_archive,
)

DEMO_LOG = "data/demo-run.log"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.lake:
        os.environ[LAKE_ENV] = args.lake
    lake = lake_from_environment(os.environ).process_config_and_initialize()
    return args.command(args, lake)


def _simulate(args: argparse.Namespace, lake: DeltaLake) -> int:
    spec = _spec(args)
    if args.live:
        run_live(lake, spec, args.every, args.duration, print)
    else:
        ticks = append_sessions(lake, spec, print)
        print(f"{ticks} ticks appended to {lake.uri('silver_ticks')}")
    return 0


def _import(args: argparse.Namespace, lake: DeltaLake) -> int:
    failed = False
    for path in args.paths:
        report = import_capture(lake, Path(path), args.format)
        print(
            f"{path}: {report.valid_rows} rows -> silver v{report.silver_version}; "
            f"rejected {report.rejected_rows or 'none'}"
        )
        failed |= bool(report.rejected_rows) and args.strict
    return 1 if failed else 0


def _demo(args: argparse.Namespace, lake: DeltaLake) -> int:
    log_path = Path(args.log_file)
    try:
        summary = run_demo(lake, _spec(args), partial(print, flush=True), log_path)
    except RunFailed as failure:
        print(f"tickbeta demo: the run failed\n{failure}", file=sys.stderr)
        print(f"Dagster's event log: {log_path}", file=sys.stderr)
        return 1
    print()
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\ngold table: {lake.uri('gold_beta_metrics')}")
    print(f"Dagster's event log: {log_path}")
    return 0


def _checks(args: argparse.Namespace, lake: DeltaLake) -> int:
    from beta_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    expected = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    return report(expected)


def _spark_connect(args: argparse.Namespace, lake: DeltaLake) -> int:
    command, env = connect_server_command(args.port, master=args.master, memory=args.memory)
    print(f"Spark Connect server on sc://127.0.0.1:{args.port} ({args.master})", flush=True)
    os.execve(command[0], command, env)


def _jvm_archive(args: argparse.Namespace, lake: DeltaLake) -> int:
    size = write_class_archive(Path(args.path), run_a_small_day)
    print(f"driver class archive: {args.path} ({size / 2**20:.0f} MB)")
    return 0


def _spec(args: argparse.Namespace) -> SimulationSpec:
    return SimulationSpec(
        symbols=args.symbols,
        days=args.days,
        start_date=date.fromisoformat(args.start_date),
        interval_seconds=args.interval,
        jitter=args.jitter,
        seed=args.seed,
        market_symbol=args.market_symbol,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickbeta", description=__doc__)
    parser.add_argument("--lake", help=f"lake root (default: ${LAKE_ENV} or ./data/lake)")
    commands = parser.add_subparsers(required=True)

    simulate = commands.add_parser("simulate", help="append simulated ticks to silver")
    _simulation_options(simulate)
    simulate.add_argument("--live", action="store_true", help="append a batch every --every s")
    simulate.add_argument("--every", type=float, default=5.0, help="live: seconds per batch")
    simulate.add_argument("--duration", type=float, help="live: stop after this many seconds")
    simulate.set_defaults(command=_simulate)

    importer = commands.add_parser("import", help="import captured ticks into silver")
    importer.add_argument("paths", nargs="+", help="CSV, Parquet or JSON-lines files")
    importer.add_argument("--format", choices=FORMATS, help="default: from the file suffix")
    importer.add_argument("--strict", action="store_true", help="exit 1 if any row is rejected")
    importer.set_defaults(command=_import)

    demo = commands.add_parser("demo", help="simulate a day, materialize it, compare betas")
    _simulation_options(demo)
    demo.add_argument(
        "--log-file", default=DEMO_LOG, help="Dagster's event log of the run (%(default)s)"
    )
    demo.set_defaults(command=_demo)

    checks = commands.add_parser(
        "checks", help="exit 1 unless the latest run in $DAGSTER_HOME passed every check"
    )
    checks.set_defaults(command=_checks)

    connect = commands.add_parser(
        "spark-connect", help="a long-lived local Spark Connect server: runs skip the JVM start"
    )
    connect.add_argument("--port", type=int, default=15002)
    connect.add_argument("--master", default="local[*]")
    connect.add_argument(
        "--memory", default=LOCAL_DEFAULTS[DRIVER_MEMORY], help="driver memory (%(default)s)"
    )
    connect.set_defaults(command=_spark_connect)

    archive = commands.add_parser(
        "jvm-archive",
        help="record the classes a run's driver JVM loads: later JVMs start seconds sooner",
    )
    archive.add_argument("--path", default=str(CLASS_ARCHIVE), help="(%(default)s)")
    archive.set_defaults(command=_jvm_archive)
    return parser


def _simulation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", type=int, default=20, help="symbols besides the market")
    parser.add_argument("--days", type=int, default=1, help="trading days")
    parser.add_argument("--start-date", default="2026-01-05", help="first day (weekends skipped)")
    parser.add_argument("--interval", type=float, default=10.0, help="mean seconds between ticks")
    parser.add_argument("--jitter", type=float, default=0.5, help="tick gap spread, 0..1")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--market-symbol", default=MARKET_SYMBOL)


if __name__ == "__main__":
    sys.exit(main())

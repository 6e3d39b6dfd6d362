"""``python -m bench``: run the benchmark and write the report."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from bench import report
from bench.run import Options, log, run

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("change", "storm", "memory", "sites")
DEFAULT_PHASES = ("change", "storm", "memory")


def sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def phases(text: str) -> tuple[str, ...]:
    chosen = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = set(chosen) - set(PHASES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown phase(s): {', '.join(unknown)}")
    return chosen


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark the Presence app against a bare Socket.IO floor.",
    )
    parser.add_argument(
        "--sizes",
        type=sizes,
        default=[100, 1000, 2000],
        help="tab counts for the one-change phase (default 100,1000,2000)",
    )
    parser.add_argument(
        "--changes", type=int, default=20, help="measured changes per size (default 20)"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="unmeasured changes first (default 3)"
    )
    parser.add_argument(
        "--storm",
        type=int,
        default=1000,
        help="tabs in the join storm and memory phases (default 1000)",
    )
    parser.add_argument(
        "--storm-seconds",
        type=float,
        default=2.0,
        help="the storm's joins are spread over this long (default 2)",
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=60.0,
        help="wait after all tabs left before the last memory reading",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="generator processes (default: one per 500 tabs, at least 2)",
    )
    parser.add_argument(
        "--phases",
        type=phases,
        default=DEFAULT_PHASES,
        help="which of change,storm,memory,sites to run (default change,storm,memory;"
        " --profile adds sites)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each measured stretch, wait up to this many seconds for other"
        " processes to use under a quarter core (default 60; 0: don't wait)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the worker with py-spy during one change at"
        " N=1000 and the storm (slows it: numbers are not clean)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "BENCHMARKS.md",
        help="report to write (default BENCHMARKS.md)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=ROOT / "build" / "bench",
        help="project copy, server logs, raw results (default build/bench)",
    )
    args = parser.parse_args(argv)
    if args.changes < 1 or args.warmup < 0:
        parser.error("--changes must be at least 1 and --warmup not negative")
    if args.warmup + args.changes < 2 and "change" in args.phases:
        parser.error("need at least two changes (a join and a leave)")
    return args


def command_line(argv: list[str]) -> str:
    """The command as typed, with the configuration variables that were set."""
    env = [
        f"{name}={shlex.quote(os.environ[name])}"
        for name in ("REFLEX_REDIS_URL", "GRANIAN_WORKERS")
        if os.environ.get(name)
    ]
    program = os.environ.get("BENCH_PROGRAM", "python -m bench")
    return " ".join([*env, program, *map(shlex.quote, argv)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    opts = Options(
        root=ROOT,
        out=args.out,
        workdir=args.workdir.resolve(),
        sizes=args.sizes,
        changes=args.changes,
        warmup=args.warmup,
        storm=args.storm,
        storm_seconds=args.storm_seconds,
        settle_seconds=args.settle_seconds,
        processes=args.processes,
        phases=tuple(args.phases) + (("sites",) if args.profile else ()),
        profile=args.profile,
        quiet_wait=args.quiet_wait,
        command=command_line(argv),
    )
    opts.workdir.mkdir(parents=True, exist_ok=True)
    results = run(opts)
    (opts.workdir / "results.json").write_text(
        json.dumps(results, indent=1, default=str, allow_nan=True)
    )
    report.write(results, ROOT, opts.command, opts.out)
    log(f"report written to {opts.out}")
    if results["problems"]:
        log(f"FAILED: {len(results['problems'])} problem(s); see {opts.out}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

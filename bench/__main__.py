"""``python -m bench``: run the benchmark and write the report."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from bench import report
from bench.run import MEMORY, Config, Options, log, run

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("change", "storm", "memory", "sites")
DEFAULT_PHASES = ("change", "storm", "memory")
CONFIGS = ("memory", "redis")
REDIS_WORKERS = 2
# tracemalloc and the allocation sites are per process: with several workers
# they would describe whichever worker answered, so Redis runs skip them.
PER_WORKER_PHASES = {"memory", "sites"}
REDIS_MISSING = (
    "redis-server not found: install the Debian package `redis-server`"
    " (scripts/system-deps does, as root), or run with --configs memory"
)


def configs(text: str) -> tuple[str, ...]:
    chosen = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = set(chosen) - set(CONFIGS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"configurations are {', '.join(CONFIGS)}; got {text!r}"
        )
    return chosen


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
        "--configs",
        type=configs,
        default=CONFIGS,
        help="memory: in-memory registry, 1 worker (held to the targets); redis:"
        f" a redis-server of our own, {REDIS_WORKERS} workers (reported)."
        " Default: memory,redis",
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
    program = os.environ.get("BENCH_PROGRAM", "python -m bench")
    return " ".join([program, *map(shlex.quote, argv)])


@contextlib.contextmanager
def configuration(key: str, workdir: Path) -> Iterator[Config]:
    """The app's configuration; for Redis, a redis-server of our own for the run."""
    if key == "memory":
        yield MEMORY
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(REDIS_MISSING)
    # Imported here: the helper is shared with the tests, which need pytest.
    from tests.support.redis_server import RedisServer

    (workdir / "redis").mkdir(parents=True, exist_ok=True)
    server = RedisServer(workdir / "redis", binary=binary).start()
    try:
        yield Config(
            "redis",
            f"Redis (a redis-server of its own), {REDIS_WORKERS} workers",
            workers=REDIS_WORKERS,
            env={"REFLEX_REDIS_URL": server.url, "GRANIAN_WORKERS": str(REDIS_WORKERS)},
            redis_url=server.url,
        )
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    base = Options(
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
    base.workdir.mkdir(parents=True, exist_ok=True)
    runs = []
    for key in args.configs:
        with configuration(key, base.workdir) as config:
            phases = base.phases
            if config.workers > 1:
                phases = tuple(p for p in phases if p not in PER_WORKER_PHASES)
            opts = dataclasses.replace(base, config=config, phases=phases)
            runs.append(run(opts))
    (base.workdir / "results.json").write_text(
        json.dumps(runs, indent=1, default=str, allow_nan=True)
    )
    report.write(runs, ROOT, base.command, base.out)
    log(f"report written to {base.out}")
    problems = [p for results in runs for p in results["problems"]]
    if problems:
        log(f"FAILED: {len(problems)} problem(s); see {base.out}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

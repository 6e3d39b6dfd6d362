"""BENCHMARKS.md: the machine, the command, the numbers and the targets."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import math
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.stats import ratio

LAG_LIMIT_S = 0.050
KIB = 1024
MIB = 1024 * 1024


def machine() -> str:
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    model = ""
    mem_kib = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return (
        f"{cores} cores (nproc){', ' + model if model else ''};"
        f" {mem_kib / 2**20:.1f} GiB memory; Linux {platform.release()}"
    )


def versions() -> str:
    names = ["reflex", "granian", "python-socketio", "python-engineio", "aiohttp"]
    found = []
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return f"Python {platform.python_version()}, " + ", ".join(found)


def commit(root: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True
        ).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + (" + uncommitted changes" if git("status", "--porcelain") else "")


def ms(seconds: float) -> str:
    return (
        "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * 1e3:.1f} ms"
    )


def secs(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.2f} s"


def times(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.2f}x"


def mib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / MIB:.1f} MiB"


def kib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / KIB:.1f} KiB"


def cores(used: dict | None) -> str:
    if not used:
        return "n/a"
    return f"{used['ours']:.2f} / {used['others']:.2f}"


QUIET_CORES = 0.25


def status(ok: bool | None, *windows: dict | None) -> str:
    """Met/missed, flagged when the measurement was disturbed.

    ``windows`` are measured stretches (with ``cpu`` and ``lag_max``): when other
    processes used a quarter core or more, or a generator's loop lagged 50 ms or
    more, the verdict says it may not hold on a quiet machine.
    """
    text = {True: "**met**", False: "**missed**", None: "not measured"}[ok]
    others = max(
        ((w.get("cpu") or {}).get("others", 0.0) for w in windows if w), default=0.0
    )
    lag = max((w.get("lag_max", 0.0) for w in windows if w), default=0.0)
    doubts = []
    if others >= QUIET_CORES:
        doubts.append(f"other processes used {others:.2f} cores")
    if lag >= LAG_LIMIT_S:
        doubts.append(f"generator lag {lag * 1e3:.0f} ms")
    if ok is not None and doubts:
        text += " (unreliable: " + ", ".join(doubts) + ")"
    return text


def targets(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    change = results["change"]
    for n, limit in ((1000, 1.5), (2000, 2.0)):
        if n in change:
            r = ratio(change[n]["app"]["p99"], change[n]["floor"]["p99"])
            rows.append(
                (
                    f"One change, N={n}: p99 ≤ {limit}x floor p99",
                    f"{ms(change[n]['app']['p99'])} vs {ms(change[n]['floor']['p99'])}"
                    f" = {times(r)}",
                    status(r <= limit, change[n]["app"], change[n]["floor"]),
                )
            )
        else:
            rows.append(
                (f"One change, N={n}: p99 ≤ {limit}x floor p99", "", status(None))
            )
    storm = results.get("storm")
    if storm:
        rows.append(
            (
                f"Storm (N={storm['n']}): every tab shows the final count ≤ 1 s after"
                " the last join",
                ms(storm["all_final"]),
                status(storm["all_final"] <= 1.0, storm),
            )
        )
        rows.append(
            (
                "Storm: `event` frames per tab ≤ one per 100 ms of storm + 5"
                f" (storm {storm['length']:.2f} s → bound {storm['frames_bound']})",
                f"max {storm['frames_max']}, mean {storm['frames_mean']:.1f}",
                status(storm["frames_max"] <= storm["frames_bound"], storm),
            )
        )
        r = ratio(storm["peak_rss"], storm["idle_rss"])
        rows.append(
            (
                "Storm: peak RSS ≤ 1.5x RSS with the same tabs idle",
                f"{mib(storm['peak_rss'])} vs {mib(storm['idle_rss'])} = {times(r)}",
                status(r <= 1.5),
            )
        )
    else:
        rows.append(("Storm targets", "", status(None)))
    rss = results.get("memory_rss")
    traced = results.get("memory_traced")
    if rss:
        per = (rss["idle"]["rss_bytes"] - rss["base"]["rss_bytes"]) / rss["n"]
        notes = []
        floor_sizes = [m for m, r in change.items() if r.get("floor_rss")]
        if floor_sizes:
            m = max(floor_sizes)
            f = change[m]["floor_rss"]
            notes.append(
                f"bare socket.io floor: {kib((f['connected'] - f['before']) / m)}"
                f" per socket at N={m}"
            )
        if traced:
            t = traced["idle"]["traced_bytes"] - traced["base"]["traced_bytes"]
            notes.append(f"tracemalloc: {kib(t / traced['n'])}")
        extra = f" ({'; '.join(notes)})" if notes else ""
        rows.append(
            (
                "≤ 25 KiB backend memory (RSS) per connected idle tab",
                kib(per) + extra,
                status(per <= 25 * KIB),
            )
        )
        grow = ratio(rss["after"]["rss_bytes"], rss["base"]["rss_bytes"]) - 1
        traced_grow = None
        if traced:
            traced_grow = (
                ratio(traced["after"]["traced_bytes"], traced["base"]["traced_bytes"])
                - 1
            )
        ok = grow <= 0.20 or (traced_grow is not None and traced_grow <= 0.10)
        rows.append(
            (
                f"{rss['settle_seconds']:g} s after every tab left and disconnected:"
                " RSS within 20% of start (or tracemalloc live within 10%)",
                f"RSS {mib(rss['after']['rss_bytes'])}"
                f" vs {mib(rss['base']['rss_bytes'])} ({grow:+.0%})"
                + (
                    f"; tracemalloc {mib(traced['after']['traced_bytes'])}"
                    f" vs {mib(traced['base']['traced_bytes'])} ({traced_grow:+.1%})"
                    if traced_grow is not None
                    else ""
                ),
                status(ok),
            )
        )
    else:
        rows.append(("Memory targets", "", status(None)))
    return rows


def render(runs: list[dict[str, Any]], root: Path, command: str) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Benchmarks",
        "",
        "Written by `scripts/bench` (code in `bench/`); rerun it rather than edit this",
        "file. How each number is taken is described at the end.",
        "",
        "- Run: `scripts/bench` (about 10 min for both configurations here; options:"
        " `scripts/bench --help`, e.g. `--configs memory` for the first only).",
        "- Where the time and memory go: `scripts/bench --profile --configs memory"
        " --sizes 1000 --phases change,storm --out build/bench/PROFILE.md` (py-spy"
        " and tracemalloc; its timings are not clean).",
        "",
        f"- Date: {now}",
        f"- Machine: {machine()}",
        f"- Software: {versions()}",
        f"- Command: `{command}`",
        f"- Commit: {commit(root)}",
        "- Configurations: "
        + "; ".join(r["config"]["title"] for r in runs)
        + ". The first is held to the targets; the one on Redis is reported beside"
        " it, not held to them.",
        "",
    ]
    for results in runs:
        out += section(results)
    out += method()
    return "\n".join(out)


def section(results: dict[str, Any]) -> list[str]:
    """One configuration's tables, under a heading of its own."""
    config = results["config"]
    held = config["key"] == "memory"
    lag = results.get("lag_max", 0.0)
    out = [
        f"## {config['title']}",
        "",
        f"Phases: {', '.join(config['phases'])}. Load generators:"
        f" {results.get('processes')} processes, plus the actor in the coordinator;"
        " largest event-loop lag of a generator during a measured phase:"
        f" {ms(lag)} ({'under' if lag < LAG_LIMIT_S else 'OVER'} the 50 ms limit"
        f"{'' if lag < LAG_LIMIT_S else ': client stamps may be late'}).",
        "",
    ]
    if config["workers"] > 1:
        out += [
            f"With {config['workers']} workers, resident memory is the sum over the"
            " worker processes, tabs spread over them as the kernel hands out"
            " connections; tracemalloc (per process) is not run. Redis memory is"
            " `used_memory_dataset` from `INFO memory`: Reflex keeps every tab's"
            " state there.",
            "",
        ]
    if results.get("problems"):
        out += ["### FAILED: the clients saw wrong or missing counts", ""]
        out += [f"- {p}" for p in results["problems"]] + [""]

    heading = "### Targets" if held else "### Targets (for reference: not held)"
    out += [heading, "", "| Target | Measured | Status |", "|---|---|---|"]
    out += [
        f"| {a} | {b} | {c if held else c.replace('**', '')} |"
        for a, b, c in targets(results)
    ]
    out.append("")

    change = results["change"]
    if change:
        out += [
            "### One change",
            "",
            "N tabs joined; one more tab joins or leaves (alternately). Latency",
            "per tab: from the actor's send of the Join/Leave to that tab receiving",
            'the new count, pooled over the measured changes. "All tabs": per change,',
            "until the last tab has it. Floor: N more tabs, on a bare python-socketio",
            "server running at the same time, receiving one broadcast of the same",
            "bytes; app and floor changes take turns, so interference from other",
            "processes weighs on both alike. Server CPU per change: the server's CPU"
            " time over the measured rounds divided by the changes (it hardly depends"
            " on interference). The last column covers both servers.",
            "",
            "| N | server | changes | samples | p50 | p99 | max | all tabs: median"
            " | all tabs: max | server CPU per change | generator lag max"
            " | CPU: ours / others (cores) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n, r in sorted(change.items()):
            for label in ("app", "floor"):
                s = r[label]
                cells = [
                    str(n),
                    label,
                    str(s["changes"]),
                    str(s["samples"]),
                    *(ms(s[k]) for k in ("p50", "p99", "max", "all_median", "all_max")),
                    ms(s.get("cpu_per_change", math.nan)),
                    ms(s["lag_max"]),
                    cores(s.get("cpu")),
                ]
                out.append("| " + " | ".join(cells) + " |")
            a, f = r["app"], r["floor"]
            keys = ("p50", "p99", "max", "all_median", "all_max", "cpu_per_change")
            cells = [str(n), "**app / floor**", "", ""]
            cells += [
                times(ratio(a.get(k, math.nan), f.get(k, math.nan))) for k in keys
            ]
            cells += ["", ""]
            out.append("| " + " | ".join(cells) + " |")
        sizes = ", ".join(
            f"N={n}: {r['frame_bytes']} bytes" for n, r in sorted(change.items())
        )
        same = all(r["same_bytes"] for r in change.values())
        out += [
            "",
            f"Update frame size ({sizes}); floor frames byte-identical to the app's:"
            f" {'yes' if same else 'NO'}.",
            "",
        ]

    storm = results.get("storm")
    if storm:
        out += [
            "### Join storm",
            "",
            "| N | storm length | last join → every tab final | median tab |"
            " event frames/tab max | mean | bound | idle RSS | peak RSS | peak ÷ idle"
            " | server CPU | generator lag max | CPU: ours / others (cores) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {storm['n']} | {storm['length']:.2f} s | {ms(storm['all_final'])}"
            f" | {ms(storm['median_final'])} | {storm['frames_max']}"
            f" | {storm['frames_mean']:.1f} | {storm['frames_bound']}"
            f" | {mib(storm['idle_rss'])} | {mib(storm['peak_rss'])}"
            f" | {times(ratio(storm['peak_rss'], storm['idle_rss']))}"
            f" | {secs(storm.get('server_cpu_s'))} | {ms(storm['lag_max'])}"
            f" | {cores(storm.get('cpu'))} |",
            "",
            "Server CPU: the CPU time the worker used from just before the first join"
            " until 1 s after every tab had the final count (a floor for the storm's"
            " duration on a machine where the worker has a core to itself).",
            "",
            f"RSS sampled {storm['samples']} times (every ~100 ms) from the storm's"
            " start until 1 s after every tab had the final count.",
            "",
        ]

    rss, traced = results.get("memory_rss"), results.get("memory_traced")
    if rss or traced:
        n = (rss or traced)["n"]
        redis = bool(rss and rss["base"].get("redis_bytes") is not None)
        out += [
            "### Memory",
            "",
            f"Backend, N={n}. RSS from the timing server (no tracing);",
            "tracemalloc (the process's live Python allocations, traced from",
            "interpreter start with `PYTHONTRACEMALLOC=1`) from a separate server,",
            "whose RSS includes tracemalloc's own overhead.",
            "Every reading after `gc.collect()` (`/_presence/stats?collect=1`).",
            "",
            "| moment | RSS | RSS per tab | tracemalloc | tracemalloc per tab"
            " | RSS (traced server) |" + (" Redis | Redis per tab |" if redis else ""),
            "|---|---|---|---|---|---|" + ("---|---|" if redis else ""),
        ]

        def per_tab(run, key, base_key, counter):
            if not (run and base_key) or run[key].get(counter) is None:
                return ""
            return kib((run[key][counter] - run[base_key][counter]) / n)

        def row(label, key, base_key=None):
            def value(run, counter):
                return run[key].get(counter) if run else None

            cells = [
                mib(value(rss, "rss_bytes")),
                per_tab(rss, key, base_key, "rss_bytes"),
                mib(value(traced, "traced_bytes")),
                per_tab(traced, key, base_key, "traced_bytes"),
                mib(value(traced, "rss_bytes")),
            ]
            if redis:
                cells += [
                    mib(value(rss, "redis_bytes")),
                    per_tab(rss, key, base_key, "redis_bytes"),
                ]
            return f"| {label} | " + " | ".join(cells) + " |"

        settle = (rss or traced)["settle_seconds"]
        out += [
            row("fresh start, 0 tabs", "fresh"),
            row(f"start: 0 tabs, after a warm-up of {10} tabs", "base"),
            row(f"{n} tabs connected, idle", "idle", "base"),
            row(f"{n} tabs joined (per tab: on top of idle)", "joined", "idle"),
            row(f"{settle:g} s after all left and disconnected", "after"),
            "",
        ]
        floors = [
            (m, r["floor_rss"])
            for m, r in sorted(change.items())
            if r.get("floor_rss") and r["floor_rss"].get("connected")
        ]
        for m, f in floors:
            out.append(
                f"The floor server (bare python-socketio on granian) with {m} sockets"
                f" connected: {mib(f['connected'])},"
                f" {kib((f['connected'] - f['before']) / m)}"
                " RSS per socket (no gc; for scale)."
            )
        if floors:
            out.append("")
        if rss and rss["after"].get("connected_tabs") is not None:
            s = rss["after"]
            out += [
                f"After the settle the server reported {s['connected_tabs']} connected"
                f" tabs, {s['reflex_states']} Reflex states, {s['online']} online.",
                "",
            ]
        elif rss:
            each = ", ".join(mib(b) for b in rss["idle"].get("rss_each", []))
            out += [
                f"RSS of each worker with the {n} tabs connected: {each}. After the"
                f" settle: {rss['after']['online']} online.",
                "",
            ]

    sites = results.get("memory_sites")
    if sites:
        n = sites["n"]
        out += [
            f"### Where the memory goes (tracemalloc, N={n}, `bench/memtrace.py`)",
            "",
            "Live Python allocations added per tab, by the file that allocated them"
            " (stdlib files shown by path under lib/python3.x).",
            "",
            "| connected idle: per tab | file | | joined: per tab | file |",
            "|---|---|---|---|---|",
        ]
        idle, joined = sites["idle"]["by_file"][:15], sites["joined"]["by_file"][:15]
        for i in range(max(len(idle), len(joined))):
            a = idle[i] if i < len(idle) else None
            b = joined[i] if i < len(joined) else None
            out.append(
                (f"| {a['size_diff'] / n:.0f} B | `{a['file']}` |" if a else "| | |")
                + (
                    f" | {b['size_diff'] / n:.0f} B | `{b['file']}` |"
                    if b
                    else " | | |"
                )
            )
        out += [
            "",
            f"Total: {sites['idle']['total_diff'] / n / KIB:.1f} KiB per idle tab,"
            f" {sites['joined']['total_diff'] / n / KIB:.1f} KiB more per joined tab."
            " Top lines for an idle tab:",
            "",
            "| per tab | objects | line |",
            "|---|---|---|",
        ]
        out += [
            f"| {x['size_diff'] / n:.0f} B | {x['count_diff'] / n:.1f}"
            f" | `{x['where']}` |"
            for x in sites["idle"]["by_line"][:15]
        ]
        out.append("")

    if results.get("profiles"):
        out += [
            "### Profiles (py-spy, backend worker)",
            "",
            "Busy samples only (idle waits in select dropped). Self: where the CPU"
            " was. Inclusive: on the stack above the event loop's callback runner."
            " Package: the innermost non-stdlib frame.",
            "",
        ]
        for where, prof in results["profiles"].items():
            out += [
                f"### {where} ({prof.get('busy', 0)} busy of"
                f" {prof.get('samples', 0)} samples)",
                "",
                "By package: "
                + ", ".join(f"{name} {share:.0%}" for name, share in prof["packages"]),
                "",
                "| self | function | inclusive | function |",
                "|---|---|---|---|",
            ]
            selfs, incl = prof["self"], prof["inclusive"]
            for i in range(max(len(selfs), len(incl))):
                a = selfs[i] if i < len(selfs) else None
                b = incl[i] if i < len(incl) else None
                out.append(
                    (f"| {a[1]:.1%} | `{a[0]}` |" if a else "| | |")
                    + (f" {b[1]:.1%} | `{b[0]}` |" if b else " | |")
                )
            out.append("")

    return out


def method() -> list[str]:
    return [
        "## How it is measured",
        "",
        "- Servers run from a copy of the project (`build/bench/src`: git-tracked and"
        " untracked non-ignored files), each phase on a freshly started one:"
        " `reflex run --env prod --backend-only --backend-port P` (granian, one worker)"
        " for the app; `granian --interface asgi --workers 1 --ws bench.floor:app` for"
        ' the floor (python-socketio `AsyncServer(async_mode="asgi")`, websocket only,'
        " set up like Reflex's own server).",
        "- Tabs (`bench/client.py`) speak Engine.IO v4 / Socket.IO over aiohttp"
        " websockets as the Reflex frontend does: own uuid4 token in the query, the"
        " `hydrate_and_load` boot event in the CONNECT auth packet, real `join`/`leave`"
        " events, `new_token` honoured, PONG for every ping. They run in separate"
        " generator processes (`bench/generator.py`); each stamps every frame with"
        " `time.monotonic()` on arrival (system-wide on Linux) before reading it. Every"
        " frame is parsed in full afterwards and every tab's final count is checked"
        " after every change; any mismatch fails the run.",
        "- The actor (the tab whose Join/Leave is the change) runs in the coordinator"
        " process. Changes are 0.3-0.5 s apart, past the fan-out's 100 ms coalescing"
        " interval, after a warm-up that is not counted. App and floor run side by"
        " side, each with its own N tabs (each idle while the other is measured),"
        " and their changes alternate.",
        "- Generator loop lag: a 10 ms ticker in every generator; the table shows the"
        " largest overshoot during the measured changes or the storm.",
        "- Storm: tab i of N sends its Join at start + i x (storm length / N), spread"
        " over the generator processes; frames counted by each tab from just before"
        " the storm to 1 s after every tab had the final count (its own join reply"
        " included).",
        "- Memory: per-tab figures are differences divided by N: connected idle vs the"
        " start, joined vs idle. The start is taken after 10 warm-up tabs connected,"
        " joined, left and were freed (so first-use costs are not charged per tab);"
        " the fresh-start row is shown too.",
        "- Two cores are shared by the server, the generators and the coordinator, so"
        " client-side work competes with the server in both the app and floor runs."
        ' "CPU: ours / others" is the average number of cores used during the'
        " measured stretch by our processes (server, generators, coordinator) and by"
        " everything else on the machine (from /proc); anything well above 0 for"
        " others means the numbers include interference.",
        "- Redis configuration: the same phases on a redis-server the benchmark"
        " starts on a free port (no persistence), with `REFLEX_REDIS_URL` pointing"
        " at it and `GRANIAN_WORKERS=2`; a change made on one worker reaches the"
        " tabs of the other through the registry's pub/sub.",
        "",
    ]


def write(runs: list[dict[str, Any]], root: Path, command: str, path: Path) -> None:
    path.write_text(render(runs, root, command))

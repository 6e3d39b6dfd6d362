"""The coordinator: starts the servers and the generators, runs every phase.

Phases (each with a server started fresh for it, from a copy of the project):

1. ``change`` for each N: N tabs connected and joined; an actor tab, in this
   process, alternately joins and leaves. Per-tab latency is the tab's receive
   stamp minus the actor's send stamp (both ``time.monotonic()``, one clock for
   every process on the machine). Beside it the floor: N more tabs on the bare
   Socket.IO server, whose actor triggers a broadcast of the very update the
   app sent for that change; app and floor changes take turns.
2. ``storm`` (timing server, no tracing): N tabs connected idle, RSS sampled
   every 100 ms, then every tab joins within ``storm_seconds``; the time from
   the last join until every tab shows the final count; ``event`` frames per
   tab; peak RSS vs the idle RSS. The same server gives the resident memory per
   idle and per joined tab, and RSS ``settle_seconds`` after all left.
3. ``memory``: the same cycle on a server traced from interpreter start
   (``PYTHONTRACEMALLOC=1``, read through ``PRESENCE_TRACEMALLOC=1``; tracing
   slows the worker, so no timing is taken from it): the process's live Python
   allocations per idle and per joined tab, and after the settle.
4. ``sites`` (with ``--profile``, or asked for): the app behind
   ``bench.memtrace``, which names the allocation sites of that memory.

With ``--profile``, py-spy also records the worker during one change at N=1000
and during the storm (which slows it: such a run's timings are not clean).

Every tab checks the counts it is sent; a wrong or missing count is a failure,
reported in the output and in the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import math
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import aiohttp

from bench import cpu, generator, servers
from bench.client import Tab, parse_event_frame
from bench.profile import Profiler, summarize
from bench.stats import summary

# Between two changes: well past the fan-out's 100 ms coalescing interval, so
# every change is sent at once rather than riding along with the previous one.
CHANGE_GAP_S = (0.3, 0.5)
CHANGE_TIMEOUT_S = 30.0
STATS_INTERVAL_S = 0.1
WARM_TABS = 10
TABS_PER_PROCESS = 500
QUIET_CORES = 0.25


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Config:
    """One way of running the app: its environment and number of workers."""

    key: str
    title: str
    workers: int = 1
    # Set for the app's servers; None removes a variable inherited from ours.
    env: dict[str, str | None] = dataclasses.field(default_factory=dict)
    redis_url: str | None = None


MEMORY = Config(
    "memory",
    "In-memory registry and state, 1 worker",
    env={"REFLEX_REDIS_URL": None, "GRANIAN_WORKERS": "1"},
)


@dataclasses.dataclass
class Options:
    root: Path
    out: Path
    workdir: Path
    sizes: list[int] = dataclasses.field(default_factory=lambda: [100, 1000, 2000])
    changes: int = 20
    warmup: int = 3
    storm: int = 1000
    storm_seconds: float = 2.0
    settle_seconds: float = 60.0
    processes: int | None = None
    phases: tuple[str, ...] = ("change", "storm", "memory")
    profile: bool = False
    # Before a measured stretch, wait up to this long for other processes on the
    # machine to leave the cores alone (0: do not wait).
    quiet_wait: float = 60.0
    command: str = ""
    config: Config = MEMORY

    def process_count(self) -> int:
        if self.processes:
            return self.processes
        sizes = self.sizes if "change" in self.phases else []
        storm = {"storm", "memory", "sites"} & set(self.phases)
        largest = max([*sizes, self.storm if storm else 0, 1])
        return max(2, math.ceil(largest / TABS_PER_PROCESS))


class BenchError(RuntimeError):
    pass


class Generators:
    """K generator processes, each holding every K-th tab."""

    def __init__(self, count: int):
        context = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for index in range(count):
            parent, child = context.Pipe()
            process = context.Process(
                target=generator.main, args=(child, index), name=f"bench-gen-{index}"
            )
            process.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(process)

    def __len__(self) -> int:
        return len(self.conns)

    async def call(self, op: str, per: list[dict] | None = None, **common) -> list:
        for index, conn in enumerate(self.conns):
            conn.send((op, {**common, **(per[index] if per else {})}))
        replies = await asyncio.gather(*(generator.recv(c) for c in self.conns))
        failed = [value for status, value in replies if status != "ok"]
        if failed:
            raise BenchError(f"generator {op} failed:\n{failed[0]}")
        return [value for _, value in replies]

    def split(self, items: list[Any]) -> list[list[Any]]:
        """Item i goes to generator i % K (so tab order interleaves processes)."""
        return [items[g :: len(self)] for g in range(len(self))]

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call("quit"), 30)
        for process in self.procs:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


class Bench:
    def __init__(self, opts: Options):
        self.opts = opts
        self.gens: Generators | None = None
        self.session: aiohttp.ClientSession | None = None
        self.src = opts.workdir / "src"
        self.logs = opts.workdir / "logs"
        self.subprotocol = importlib.metadata.version("reflex")
        self.problems: list[str] = []
        self.server: servers.Server | None = None  # the one running now
        self.results: dict[str, Any] = {
            "config": {
                "key": opts.config.key,
                "title": opts.config.title,
                "workers": opts.config.workers,
                "phases": list(opts.phases),
            },
            "change": {},
            "storm": None,
            "memory_rss": None,
            "memory_traced": None,
            "lag_max": 0.0,
            "profiles": {},
        }

    # -- plumbing ---------------------------------------------------------------

    def problem(self, where: str, items: list[str], total: int | None = None) -> None:
        if not items and not total:
            return
        total = total if total is not None else len(items)
        message = f"{where}: {total} problem(s): " + "; ".join(items[:5])
        log("MISMATCH " + message)
        self.problems.append(message)

    def lag(self, replies: list[dict]) -> float:
        worst = max((r.get("lag_max", 0.0) for r in replies), default=0.0)
        self.results["lag_max"] = max(self.results["lag_max"], worst)
        return worst

    async def stats(self, url: str, collect: bool = False) -> dict:
        assert self.session is not None
        query = "?collect=1" if collect else ""
        async with self.session.get(f"{url}/_presence/stats{query}") as response:
            return await response.json()

    async def reading(self, url: str, collect: bool = False) -> dict:
        """The running app's memory and counts, over all of its workers.

        ``/_presence/stats`` answers for whichever worker takes the request. With
        several workers, resident memory is summed over the worker processes
        instead, and the per-worker counts (connected tabs, Reflex states,
        tracemalloc) are left out rather than shown for one worker as if for all.
        With Redis, its own memory is read too: that is where the tabs' state is.
        """
        stats = await self.stats(url, collect)
        if self.opts.config.workers > 1 and self.server is not None:
            each = servers.worker_rss_each(self.server)
            stats.update(
                rss_bytes=sum(each),
                rss_each=each,
                traced_bytes=None,
                connected_tabs=None,
                reflex_states=None,
            )
        if self.opts.config.redis_url:
            stats["redis_bytes"] = await asyncio.to_thread(
                servers.redis_used_memory, self.opts.config.redis_url
            )
        return stats

    def start_app(self, label: str, extra_env: dict[str, str] | None = None):
        port = servers.free_port()
        env = {**self.opts.config.env, **(extra_env or {})}
        log_file = self.logs / f"app-{self.opts.config.key}-{label}.log"
        server = servers.start_app(self.src, port, log_file, env)
        self.server = server
        return server, f"http://127.0.0.1:{port}"

    def start_floor(self, label: str):
        port = servers.free_port()
        server = servers.start_floor(self.src, port, self.logs / f"floor-{label}.log")
        self.server = server
        return server, f"http://127.0.0.1:{port}"

    def cpu_window(self, **named: servers.Server) -> cpu.Window:
        """Start counting CPU: ours (coordinator, generators, servers), the rest.

        ``named`` servers get their own CPU seconds; without any, the server
        running now counts as ``server``.
        """
        if not named and self.server is not None:
            named = {"server": self.server}
        groups = {name: srv.pgid for name, srv in named.items() if srv.pgid}
        return cpu.Window([os.getpid(), *self.results["generator_pids"]], groups)

    async def connect(
        self, url: str, names: list[str], boot: bool = True, group: str = "app"
    ) -> None:
        assert self.gens is not None
        replies = await self.gens.call(
            "connect",
            per=[{"names": part} for part in self.gens.split(names)],
            base_url=url,
            subprotocol=self.subprotocol,
            boot=boot,
            group=group,
        )
        connected = sum(r["connected"] for r in replies)
        failures = [f for r in replies for f in r["failures"] + r["errors"]]
        if connected != len(names) or failures:
            raise BenchError(f"{connected}/{len(names)} tabs connected: {failures[:5]}")

    async def join_all(self, where: str) -> None:
        assert self.gens is not None
        replies = await self.gens.call("join_all")
        failed = sum(r["failed"] for r in replies)
        if failed:
            raise BenchError(
                f"{where}: {failed} tabs could not join: "
                f"{[f for r in replies for f in r['failures']][:3]}"
            )

    async def leave_and_disconnect(self, where: str) -> None:
        assert self.gens is not None
        replies = await self.gens.call("leave_all")
        failed = sum(r["failed"] for r in replies)
        if failed:
            self.problem(
                f"{where} leave", [f for r in replies for f in r["failures"]], failed
            )
        await self.gens.call("disconnect_all")

    async def settle(self, expected: int, where: str) -> None:
        """Every tab should now hold ``expected``; check, and drop kept frames."""
        assert self.gens is not None
        await self.gens.call("expect", count=expected)
        replies = await self.gens.call("collect", timeout=CHANGE_TIMEOUT_S, quiet=0.3)
        self.problem(
            where,
            [p for r in replies for p in r["problems"]],
            sum(r["problem_count"] for r in replies),
        )

    # -- phases -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def phase(self, name: str):
        """A failed phase is reported (and fails the run); the others still run."""
        try:
            yield
        except Exception as err:
            detail = "".join(traceback.format_exception_only(err)).strip()
            log(f"[{name}] FAILED: {detail}")
            self.problems.append(f"{name}: phase failed: {detail}")
            with (self.opts.workdir / "errors.log").open("a") as errors:
                errors.write(f"--- {name}\n{traceback.format_exc()}\n")

    async def run(self) -> dict[str, Any]:
        generator.raise_fd_limit()  # the servers inherit it too
        log(f"configuration: {self.opts.config.title}")
        log(f"copying the project to {self.src}")
        servers.copy_project(self.opts.root, self.src)
        k = self.opts.process_count()
        log(f"starting {k} generator processes")
        self.gens = Generators(k)
        self.results["processes"] = k
        self.results["generator_pids"] = [
            r["pid"] for r in await self.gens.call("hello")
        ]
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, connect=30),
        )
        try:
            if "change" in self.opts.phases:
                for n in self.opts.sizes:
                    async with self.phase(f"change N={n}"):
                        self.results["change"][n] = await self.one_change(n)
            if "storm" in self.opts.phases:
                async with self.phase("storm"):
                    (
                        self.results["storm"],
                        self.results["memory_rss"],
                    ) = await self.memory_cycle(self.opts.storm, traced=False)
            if "memory" in self.opts.phases:
                async with self.phase("memory"):
                    _, self.results["memory_traced"] = await self.memory_cycle(
                        self.opts.storm, traced=True
                    )
            if "sites" in self.opts.phases:
                async with self.phase("memory sites"):
                    self.results["memory_sites"] = await self.memory_sites(
                        self.opts.storm
                    )
        finally:
            await self.session.close()
            await self.gens.stop()
        self.results["problems"] = self.problems
        return self.results

    async def one_change(self, n: int) -> dict[str, Any]:
        """N joined tabs on the app and N tabs on the floor, changes interleaved.

        Both servers run side by side, each with its own N tabs, and every
        measured change on the app is followed by the same change on the floor
        (a broadcast of the bytes the app sent for it). Whatever else the
        machine is doing meanwhile then weighs on both alike, and the ratio
        holds up better than the absolute times.
        """
        assert self.gens is not None and self.session is not None
        names = [f"tab{i:05d}" for i in range(n)]
        where = f"change N={n}"
        log(f"[{where}] starting the app")
        app, app_url = self.start_app(f"change-{n}")
        servers_up = [app]
        profile = None
        try:
            log(f"[{where}] connecting {n} tabs to the app")
            await self.connect(app_url, names)
            log(f"[{where}] joining {n} tabs")
            await self.join_all(where)
            await self.settle(n, f"{where} after joining")
            app_actor = Tab(app_url, name="actor", subprotocol=self.subprotocol)
            await app_actor.connect(self.session)

            async def app_trigger(join: bool, expected: int) -> float:
                return await (app_actor.join() if join else app_actor.leave())

            # The app's update for count n+1 (actor joined) and n (left): the
            # bytes the floor will broadcast. These two changes also warm it up.
            frames: dict[int, str] = {}
            for join in (True, False):
                one = await self.change("app", n, app_actor, app_trigger, join, where)
                if one["sample"] is not None:
                    frames[n + 1 if join else n] = one["sample"]
            missing = [c for c in (n, n + 1) if c not in frames]
            if missing:
                raise BenchError(f"{where}: no app update captured for {missing}")
            payloads = {c: parse_event_frame(text) for c, text in frames.items()}

            log(f"[{where}] starting the floor")
            floor, floor_url = self.start_floor(f"change-{n}")
            servers_up.append(floor)
            await asyncio.sleep(0.5)
            floor_rss = {"before": servers.worker_rss(floor)}
            log(f"[{where}] connecting {n} tabs to the floor")
            await self.connect(floor_url, names, boot=False, group="floor")
            await asyncio.sleep(1.0)
            floor_rss["connected"] = servers.worker_rss(floor)
            floor_actor = Tab(floor_url, name="actor", subprotocol=self.subprotocol)
            await floor_actor.connect(self.session, boot=False)

            async def floor_trigger(join: bool, expected: int) -> float:
                return await floor_actor.emit_raw("broadcast", payloads[expected])

            if self.opts.profile and n == 1000:
                pid = (await self.stats(app_url))["pid"]
                profile = Profiler(pid, self.opts.workdir / f"profile-change-{n}.txt")
            runs = await self.changes(
                n,
                {
                    "app": (app_actor, app_trigger),
                    "floor": (floor_actor, floor_trigger),
                },
                where,
                {"app": app, "floor": floor},
            )
            if profile:
                self.results["profiles"][where] = summarize(profile.stop())
                profile = None
            await app_actor.close()
            await floor_actor.close()
            await self.gens.call("disconnect_all")
        finally:
            if profile:
                profile.stop()
            for server in reversed(servers_up):
                server.stop()
        floor_frames = runs["floor"].pop("frames")
        runs["app"].pop("frames")
        identical = all(floor_frames.get(c) == frames[c] for c in frames)
        if not identical:
            self.problem(f"{where} floor", ["floor frames differ from the app's"])
        app_run, floor_run = runs["app"], runs["floor"]
        log(
            f"[{where}] app p50 {app_run['p50'] * 1e3:.1f} ms p99"
            f" {app_run['p99'] * 1e3:.1f} ms; floor p50 {floor_run['p50'] * 1e3:.1f} ms"
            f" p99 {floor_run['p99'] * 1e3:.1f} ms; generator lag max"
            f" {max(app_run['lag_max'], floor_run['lag_max']) * 1e3:.1f} ms"
        )
        return {
            "app": app_run,
            "floor": floor_run,
            "same_bytes": identical,
            "frame_bytes": len(frames[n + 1].encode()),
            "floor_rss": floor_rss,
        }

    async def wait_for_quiet(self, where: str) -> float:
        """Wait (bounded) until other processes use < 0.25 core; return their use."""
        deadline = time.monotonic() + self.opts.quiet_wait
        while True:
            window = self.cpu_window()
            await asyncio.sleep(1.0)
            others = window.close()["others"]
            if others < QUIET_CORES or time.monotonic() >= deadline:
                if others >= QUIET_CORES:
                    log(
                        f"[{where}] other processes still use {others:.2f} cores;"
                        " measuring anyway"
                    )
                return others
            log(f"[{where}] other processes use {others:.2f} cores; waiting")
            await asyncio.sleep(4.0)

    async def change(
        self, group: str, n: int, actor: Tab, trigger, join: bool, where: str
    ) -> dict[str, Any]:
        """One change seen by the ``group``'s tabs: arm, trigger, collect, check."""
        assert self.gens is not None
        expected = n + 1 if join else n
        armed = await self.gens.call("expect", count=expected, group=group)
        self.problem(
            f"{where} {group}",
            [s for r in armed for s in r["stale"]],
            sum(r["stale_count"] for r in armed),
        )
        await self.gens.call("reset")
        actor.expect, actor.reached_at = expected, None
        sent = await trigger(join, expected)
        replies = await self.gens.call("collect", timeout=CHANGE_TIMEOUT_S, group=group)
        self.problem(
            f"{where} {group}",
            [p for r in replies for p in r["problems"]],
            sum(r["problem_count"] for r in replies),
        )
        with contextlib.suppress(TimeoutError):
            await actor.wait_for(lambda: actor.count == expected, 5, "count")
        if actor.count != expected:
            self.problem(
                f"{where} {group}", [f"actor holds {actor.count}, expected {expected}"]
            )
        actor.frames.clear()
        reached = [t for r in replies for t in r["reached"]]
        return {
            "latencies": [t - sent for t in reached if t is not None],
            "sample": replies[0]["sample"],
            "lag": max(r["lag_max"] for r in replies),
        }

    async def changes(
        self, n: int, actors: dict, where: str, by_name: dict[str, servers.Server]
    ) -> dict[str, Any]:
        """Warm-up + measured rounds; each round one change per group, in turn.

        Changes alternate between count n+1 (the actor joins) and n (it leaves).
        """
        pooled = {g: {"lat": [], "all": [], "lag": 0.0, "frames": {}} for g in actors}
        total = self.opts.warmup + self.opts.changes
        window = None
        for i in range(total):
            if i == self.opts.warmup:
                if self.opts.quiet_wait > 0:
                    await self.wait_for_quiet(where)
                window = self.cpu_window(**by_name)
            join = i % 2 == 0
            for group, (actor, trigger) in actors.items():
                one = await self.change(group, n, actor, trigger, join, where)
                into = pooled[group]
                if one["sample"] is not None:
                    into["frames"].setdefault(n + 1 if join else n, one["sample"])
                if i >= self.opts.warmup:
                    into["lat"].extend(one["latencies"])
                    if len(one["latencies"]) == n:
                        into["all"].append(max(one["latencies"]))
                    into["lag"] = max(into["lag"], one["lag"])
                    self.results["lag_max"] = max(self.results["lag_max"], one["lag"])
                step = (CHANGE_GAP_S[1] - CHANGE_GAP_S[0]) * (i % 5) / 4
                await asyncio.sleep(CHANGE_GAP_S[0] + step)
            if (i + 1) % 10 == 0 or i + 1 == total:
                log(f"[{where}] {i + 1}/{total} rounds")
        used = window.close() if window else None
        return {
            group: {
                **summary(p["lat"], p["all"]),
                "lag_max": p["lag"],
                "cpu": used,
                # The server's CPU time per measured change (its share of the
                # stretch: the app idles while the floor is measured and back).
                "cpu_per_change": (
                    used["server_cpu_s"].get(group, math.nan) / self.opts.changes
                    if used
                    else math.nan
                ),
                "frames": p["frames"],
            }
            for group, p in pooled.items()
        }

    async def wait_states_freed(self, url: str, timeout: float = 20.0) -> None:
        if self.opts.config.workers > 1:
            # No per-worker counts to wait on: give the sweeps a few rounds.
            await asyncio.sleep(3.0)
            return
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.stats(url)
            if stats["connected_tabs"] == 0 and stats["reflex_states"] == 0:
                return
            if time.monotonic() > deadline:
                log(
                    f"warm-up: {stats['reflex_states']} Reflex states still held"
                    f" {timeout:g} s after the warm-up tabs left; going on"
                )
                return
            await asyncio.sleep(0.5)

    async def sample(self, url: str, into: list[dict], stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                into.append(await self.reading(url))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), STATS_INTERVAL_S)

    async def memory_cycle(self, n: int, traced: bool):
        """Baseline, N idle, N joined (a storm when timing), all left + settle."""
        assert self.gens is not None
        label = "memory" if traced else "storm"
        # Traced from interpreter start: the process's live allocations, not
        # only those made after some import (a baseline that depends on where
        # tracing began).
        env = {"PRESENCE_TRACEMALLOC": "1", "PYTHONTRACEMALLOC": "1"} if traced else {}
        log(
            f"[{label} N={n}] starting the app"
            + (" with tracemalloc" if traced else "")
        )
        app, url = self.start_app(f"{label}-{n}", env)
        storm: dict[str, Any] | None = None
        profile = None
        try:
            fresh = await self.reading(url, collect=True)
            # Warm-up: a few tabs connect, join, leave and go, so that first-use
            # costs (imports, caches) are not charged to the measured tabs.
            await self.connect(url, [f"warm{i:02d}" for i in range(WARM_TABS)])
            await self.join_all(f"{label} warm-up")
            # Stay long enough for the app's sweep (every 0.5 s) to see them
            # live: it frees the state only of tabs it saw come and go.
            await asyncio.sleep(1.5)
            await self.leave_and_disconnect(f"{label} warm-up")
            await self.wait_states_freed(url)
            base = await self.reading(url, collect=True)
            log(f"[{label} N={n}] connecting {n} idle tabs")
            names = [f"tab{i:05d}" for i in range(n)]
            await self.connect(url, names)
            await asyncio.sleep(1.0)
            idle = await self.reading(url, collect=True)
            if idle["connected_tabs"] not in (None, n):
                self.problem(
                    label, [f"{idle['connected_tabs']} tabs connected, not {n}"]
                )
            if traced:
                log(f"[{label} N={n}] joining {n} tabs")
                await self.join_all(label)
            else:
                if self.opts.profile:
                    profile = Profiler(
                        idle["pid"], self.opts.workdir / "profile-storm.txt"
                    )
                storm = await self.storm(url, n)
                if profile:
                    self.results["profiles"][f"storm N={n}"] = summarize(profile.stop())
                    profile = None
            await self.settle(n, f"{label} after joining")
            joined = await self.reading(url, collect=True)
            log(f"[{label} N={n}] all tabs leave and disconnect")
            await self.leave_and_disconnect(label)
            left_at = time.monotonic()
            while (left := left_at + self.opts.settle_seconds - time.monotonic()) > 0:
                log(f"[{label} N={n}] settling, {left:.0f} s to go")
                await asyncio.sleep(min(15.0, left))
            after = await self.reading(url, collect=True)
        finally:
            if profile:
                profile.stop()
            app.stop()
        memory = {
            "n": n,
            "traced": traced,
            "fresh": fresh,
            "base": base,
            "idle": idle,
            "joined": joined,
            "after": after,
            "settle_seconds": self.opts.settle_seconds,
        }
        key = "traced_bytes" if traced else "rss_bytes"
        log(
            f"[{label} N={n}] {key}: base {base[key] / 2**20:.1f} MiB, idle"
            f" {(idle[key] - base[key]) / n / 1024:.1f} KiB/tab, joined"
            f" +{(joined[key] - idle[key]) / n / 1024:.1f} KiB/tab, after"
            f" {after[key] / 2**20:.1f} MiB"
        )
        return storm, memory

    async def memory_sites(self, n: int) -> dict[str, Any]:
        """Where per-tab memory goes: tracemalloc diffs by allocation site."""
        log(f"[memory sites N={n}] starting the app behind bench.memtrace")
        port = servers.free_port()
        server = servers.start_memtrace(self.src, port, self.logs / "memtrace.log")
        self.server = server
        url = f"http://127.0.0.1:{port}"
        assert self.session is not None

        async def call(query: str) -> dict:
            assert self.session is not None
            async with self.session.get(f"{url}/_bench/tracemalloc?{query}") as r:
                return await r.json()

        try:
            await self.connect(url, [f"warm{i:02d}" for i in range(WARM_TABS)])
            await self.join_all("memory sites warm-up")
            await asyncio.sleep(1.5)
            await self.leave_and_disconnect("memory sites warm-up")
            await self.wait_states_freed(url)
            await call("mark=1")
            await self.connect(url, [f"tab{i:05d}" for i in range(n)])
            await asyncio.sleep(1.0)
            idle = await call("diff=1")
            await call("mark=1")
            log(f"[memory sites N={n}] joining {n} tabs")
            await self.join_all("memory sites")
            await self.settle(n, "memory sites after joining")
            joined = await call("diff=1")
            await self.gens.call("disconnect_all")
        finally:
            server.stop()
        return {"n": n, "idle": idle, "joined": joined}

    async def storm(self, url: str, n: int) -> dict[str, Any]:
        """Every idle tab joins within ``storm_seconds``; RSS sampled throughout."""
        assert self.gens is not None
        idle_samples: list[dict] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(self.sample(url, idle_samples, stop))
        await asyncio.sleep(1.0)
        stop.set()
        await sampler
        if self.opts.quiet_wait > 0:
            await self.wait_for_quiet(f"storm N={n}")
        await self.gens.call("expect", count=n)
        await self.gens.call("reset")
        window = self.cpu_window()
        samples: list[dict] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(self.sample(url, samples, stop))
        start_at = time.monotonic() + 0.5
        spacing = self.opts.storm_seconds / n
        schedule = [start_at + i * spacing for i in range(n)]
        log(f"[storm N={n}] {n} joins in {self.opts.storm_seconds:g} s")
        sends = await self.gens.call(
            "storm", per=[{"schedule": part} for part in self.gens.split(schedule)]
        )
        replies = await self.gens.call("collect", timeout=CHANGE_TIMEOUT_S, quiet=1.0)
        stop.set()
        await sampler
        used = window.close()
        self.problem(
            "storm",
            [p for r in replies for p in r["problems"]],
            sum(r["problem_count"] for r in replies),
        )
        joined = sum(r["joined"] for r in replies)
        if joined != n:
            self.problem("storm", [f"{joined} of {n} tabs saw themselves joined"])
        sent = [t for r in sends for t in r["sent"] if t is not None]
        first, last = min(sent), max(sent)
        reached = [t for r in replies for t in r["reached"]]
        after_last = [t - last for t in reached if t is not None]
        frames = [f for r in replies for f in r["frames"]]
        length = last - first
        bound = math.ceil(length / 0.1) + 5
        idle_rss = sum(s["rss_bytes"] for s in idle_samples) / max(1, len(idle_samples))
        peak_rss = max((s["rss_bytes"] for s in samples), default=math.nan)
        result = {
            "n": n,
            "length": length,
            "reached": len(after_last),
            "all_final": max(after_last) if len(after_last) == n else math.nan,
            "median_final": sorted(after_last)[len(after_last) // 2]
            if after_last
            else math.nan,
            "frames_max": max(frames),
            "frames_mean": sum(frames) / len(frames),
            "frames_bound": bound,
            "idle_rss": idle_rss,
            "peak_rss": peak_rss,
            "samples": len(samples),
            "lag_max": max(self.lag(replies), self.lag(sends)),
            "cpu": used,
            "server_cpu_s": used["server_cpu_s"].get("server", math.nan),
        }
        log(
            f"[storm N={n}] all final {result['all_final'] * 1e3:.0f} ms after the last"
            f" join; frames/tab max {result['frames_max']} mean"
            f" {result['frames_mean']:.1f} (bound {bound}); peak RSS"
            f" {peak_rss / 2**20:.1f} MiB vs idle {idle_rss / 2**20:.1f} MiB"
        )
        return result


def run(opts: Options) -> dict[str, Any]:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(Bench(opts).run())

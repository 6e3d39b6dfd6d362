"""Tabs that come and go: after N cycles of connect, join, leave and disconnect,
the registry must be empty, every tab's Reflex state freed, and memory back near
where it started.

    python -m bench.cycles --cycles 500

Runs the app (backend only, one worker, live Python allocations traced) from a
copy of the project, drives the cycles ``--parallel`` tabs at a time with the
benchmark's Reflex-protocol client, waits for the grace and the sweep, and
prints resident memory and traced allocations before and after, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.client import Tab
from bench.servers import copy_project, free_port, get_json, start_app

ROOT = Path(__file__).resolve().parents[1]
# A departed tab's state is freed after the grace (3 s) and a sweep (0.5 s),
# and engine.io keeps a closed socket referenced until its pending ping wait
# ends (the 10 s ping interval). Measure after both, with a margin.
SETTLE_S = 13.0


async def one_cycle(session: aiohttp.ClientSession, base: str, index: int) -> None:
    tab = Tab(base_url=base, name=f"cycler{index}")
    await tab.connect(session)
    await tab.join()
    await tab.wait_for(lambda: tab.joined, 30, "join")
    await tab.leave()
    await tab.wait_for(lambda: not tab.joined, 30, "leave")
    await tab.close()
    problems = tab.verify()
    if problems:
        raise AssertionError(f"tab {index}: {problems}")


async def run_cycles(base: str, cycles: int, parallel: int) -> None:
    limit = asyncio.Semaphore(parallel)

    async def limited(index: int) -> None:
        async with limit:
            await one_cycle(session, base, index)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(limited(i) for i in range(cycles)))


def stats(base: str) -> dict:
    return get_json(f"{base}/_presence/stats?collect=1")


def measure(cycles: int, parallel: int, workdir: Path) -> dict:
    src = copy_project(ROOT, workdir / "src")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_app(src, port, workdir / "cycles.log", {"PRESENCE_TRACEMALLOC": "1"})
    try:
        # A first round warms every cache and import the cycles will touch.
        asyncio.run(run_cycles(base, parallel, parallel))
        time.sleep(SETTLE_S)
        before = stats(base)
        started = time.monotonic()
        asyncio.run(run_cycles(base, cycles, parallel))
        took = time.monotonic() - started
        time.sleep(SETTLE_S)
        after = stats(base)
    finally:
        server.stop()
    return {
        "cycles": cycles,
        "seconds": round(took, 1),
        "before": before,
        "after": after,
        "rss_change": after["rss_bytes"] / before["rss_bytes"] - 1,
        "traced_change": after["traced_bytes"] / before["traced_bytes"] - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.cycles, args.parallel, Path(tmp))
    json.dump(result, sys.stdout, indent=2)
    print(file=sys.stdout)


if __name__ == "__main__":
    main()

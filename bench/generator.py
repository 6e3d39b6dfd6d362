"""A load generator: one process holding many tabs, driven over a pipe.

The coordinator (``bench.run``) starts a few of these so that no single event
loop has to receive every frame of a broadcast. Each one runs its tabs on one
asyncio loop and answers commands (``op_*`` methods) one at a time; the
replies carry the clients' own stamps and checks, never anything timed by the
coordinator.

Each process also measures its own event-loop lag with a ticker: a task that
asks to wake every 10 ms and records how late it woke. A late ticker means the
frames that arrived meanwhile were stamped late too, so the maximum lag over a
measured phase is reported next to the numbers it could have distorted.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.connection
import os
import resource
import time
import traceback
from typing import Any

import aiohttp

from bench.client import Tab

TICK = 0.01


async def recv(conn: multiprocessing.connection.Connection) -> Any:
    """Wait for the pipe to become readable without blocking the loop, then read."""
    loop = asyncio.get_running_loop()
    if not conn.poll():
        ready = loop.create_future()

        def on_readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(conn.fileno(), on_readable)
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())
    return conn.recv()


def raise_fd_limit() -> None:
    """Let this process hold thousands of sockets (soft limit up to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def gather_limited(coros, limit: int) -> list[Any]:
    """Run coroutines at most ``limit`` at a time; exceptions are returned."""
    semaphore = asyncio.Semaphore(limit)

    async def one(coro):
        async with semaphore:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)


class Generator:
    """Tabs in named groups (``app``, ``floor``): one server's tabs per group."""

    def __init__(self, conn: multiprocessing.connection.Connection, index: int):
        self.conn = conn
        self.index = index
        self.groups: dict[str, list[Tab]] = {}
        self.session: aiohttp.ClientSession | None = None
        self.lag_max = 0.0

    async def serve(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),  # no cap on open sockets
            timeout=aiohttp.ClientTimeout(total=None, connect=60),
        )
        ticker = asyncio.create_task(self._tick())
        try:
            while True:
                op, kwargs = await recv(self.conn)
                try:
                    result = await getattr(self, f"op_{op}")(**kwargs)
                    self.conn.send(("ok", result))
                except Exception:
                    self.conn.send(("error", traceback.format_exc()))
                if op == "quit":
                    return
        finally:
            ticker.cancel()
            for group in list(self.groups):
                await self._close(group)
            await self.session.close()

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            self.lag_max = max(self.lag_max, now - last - TICK)
            last = now

    async def _close(self, group: str) -> None:
        tabs = self.groups.pop(group, [])
        await gather_limited((t.close() for t in tabs), 100)

    @staticmethod
    def _errors(tabs: list[Tab]) -> list[str]:
        return [f"tab {t.name}: {e}" for t in tabs for e in t.errors]

    # -- commands ---------------------------------------------------------------

    async def op_hello(self) -> dict[str, Any]:
        return {"pid": os.getpid()}

    async def op_connect(
        self,
        base_url: str,
        names: list[str],
        subprotocol: str | None,
        group: str = "app",
        boot: bool = True,
        concurrency: int = 20,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Open one tab per name (hydrated, not joined) as ``group``."""
        await self._close(group)
        tabs = self.groups[group] = [
            Tab(base_url, name=n, subprotocol=subprotocol) for n in names
        ]
        assert self.session is not None
        results = await gather_limited(
            (t.connect(self.session, timeout=timeout, boot=boot) for t in tabs),
            concurrency,
        )
        failures = [
            f"{t.name}: {r!r}"
            for t, r in zip(tabs, results, strict=True)
            if isinstance(r, BaseException)
        ]
        for t in tabs:
            t.frames.clear()
        return {
            "connected": len(tabs) - len(failures),
            "failures": failures[:10],
            "new_tokens": sum(t.new_tokens for t in tabs),
            "errors": self._errors(tabs)[:10],
        }

    async def op_join_all(
        self, group: str = "app", concurrency: int = 10, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Every tab joins, a few at a time; wait until each sees itself joined."""

        async def join(tab: Tab) -> None:
            await tab.join()
            await tab.wait_for(lambda: tab.joined, timeout, "join")

        tabs = self.groups.get(group, [])
        results = await gather_limited((join(t) for t in tabs), concurrency)
        failures = [repr(r) for r in results if isinstance(r, BaseException)]
        return {"failures": failures[:10], "failed": len(failures)}

    async def op_leave_all(
        self, group: str = "app", concurrency: int = 10, timeout: float = 60.0
    ) -> dict[str, Any]:
        async def leave(tab: Tab) -> None:
            await tab.leave()
            await tab.wait_for(lambda: not tab.joined, timeout, "leave")

        tabs = self.groups.get(group, [])
        results = await gather_limited((leave(t) for t in tabs), concurrency)
        failures = [repr(r) for r in results if isinstance(r, BaseException)]
        return {"failures": failures[:10], "failed": len(failures)}

    async def op_disconnect_all(self, group: str | None = None) -> dict[str, Any]:
        groups = [group] if group else list(self.groups)
        closed = 0
        for name in groups:
            closed += len(self.groups.get(name, []))
            await self._close(name)
        return {"closed": closed}

    async def op_expect(self, count: int, group: str = "app") -> dict[str, Any]:
        """Arm every tab for the next change; first check it still holds the last."""
        tabs = self.groups.get(group, [])
        stale = [
            f"tab {t.name}: holds {t.count}, expected it to stay at {t.expect}"
            for t in tabs
            if t.expect is not None and t.count != t.expect
        ]
        now = time.monotonic()
        for t in tabs:
            # A tab already holding the count (a check after a settle, never a
            # timed change: those alternate) has reached it now.
            t.expect, t.reached_at = count, (now if t.count == count else None)
        return {"stale": stale[:10], "stale_count": len(stale)}

    async def op_reset(self) -> dict[str, Any]:
        """Start a measured window: zero the lag maximum and the frame counters."""
        self.lag_max = 0.0
        for tabs in self.groups.values():
            for t in tabs:
                t.reset_counters()
        return {}

    async def op_collect(
        self, timeout: float, quiet: float = 0.0, group: str = "app"
    ) -> dict[str, Any]:
        """Wait until every tab reached its expected count (or time is up).

        Then wait ``quiet`` seconds more (late frames still count), parse every
        frame received since the last collect, and check each tab's final count.
        """
        tabs = self.groups.get(group, [])
        deadline = time.monotonic() + timeout
        while any(t.reached_at is None for t in tabs):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        if quiet:
            await asyncio.sleep(quiet)
        sample = None
        for t in tabs[:1]:
            for frame in t.frames:
                if frame.count == t.expect:
                    sample = frame.text
                    break
        problems: list[str] = []
        for t in tabs:
            problems.extend(t.verify())
            if t.count != t.expect:
                problems.append(
                    f"tab {t.name}: final count {t.count}, expected {t.expect}"
                )
        problems.extend(self._errors(tabs))
        return {
            "reached": [t.reached_at for t in tabs],
            "frames": [t.event_frames for t in tabs],
            "joined": sum(t.joined for t in tabs),
            "problems": problems[:20],
            "problem_count": len(problems),
            "sample": sample,
            "lag_max": self.lag_max,
        }

    async def op_storm(self, schedule: list[float], group: str = "app") -> dict:
        """Tab i joins at monotonic time ``schedule[i]``; return the send stamps."""
        tabs = self.groups.get(group, [])
        order = sorted(range(len(tabs)), key=schedule.__getitem__)
        sent: list[float | None] = [None] * len(tabs)
        for i in order:
            pause = schedule[i] - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            sent[i] = await tabs[i].join()
        return {"sent": sent, "lag_max": self.lag_max}

    async def op_quit(self) -> dict[str, Any]:
        return {}


def main(conn: multiprocessing.connection.Connection, index: int) -> None:
    """Entry point of a generator process."""
    raise_fd_limit()
    asyncio.run(Generator(conn, index).serve())

"""Several workers on one Redis registry: each expires its own tabs, and another
worker's only once that worker has gone silent."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from presence_app.registry.redis import RedisRegistry
from tests.registry.conftest import FakeClock

pytestmark = pytest.mark.redis

GRACE = 3.0
WORKER_TIMEOUT = 10.0


@pytest.fixture
async def workers(redis_server) -> AsyncIterator[tuple[RedisRegistry, ...]]:
    """Workers A and B on one prefix and one clock, as two processes would be."""
    clock, prefix = FakeClock(), f"workers-{uuid.uuid4().hex}:"
    pair = []
    for name in ("A", "B"):
        client = aioredis.Redis.from_url(redis_server.url)
        pair.append(
            RedisRegistry(
                client, prefix, clock, worker=name, worker_timeout=WORKER_TIMEOUT
            )
        )
    try:
        yield (*pair, clock)
    finally:
        for registry in pair:
            await registry.close()


async def sweep(registry: RedisRegistry, clock: FakeClock, live=()) -> list[str]:
    await registry.touch(live)
    return await registry.expire(clock() - GRACE)


async def test_a_live_worker_s_tabs_outlast_another_worker_s_sweep(workers):
    a, b, clock = workers
    await b.join("b1", "bob")
    await sweep(b, clock, ["b1"])

    clock.advance(WORKER_TIMEOUT - 1)  # B was slow to reach Redis, not dead

    assert await sweep(a, clock) == []
    assert (await a.presence()).count == 1


async def test_a_worker_s_own_stale_tabs_leave_after_the_grace(workers):
    _, b, clock = workers
    await b.join("b1", "bob")
    await sweep(b, clock, ["b1"])

    clock.advance(GRACE + 0.1)

    assert await sweep(b, clock) == ["b1"]


async def test_a_silent_worker_s_tabs_are_expired_by_the_others(workers):
    a, b, clock = workers
    await b.join("b1", "bob")
    await a.join("a1", "ann")
    await sweep(b, clock, ["b1"])

    for _ in range(int(WORKER_TIMEOUT) + 1):  # A goes on; B died
        clock.advance(1)
        gone = await sweep(a, clock, ["a1"])
        if gone:
            break

    assert gone == ["b1"]
    assert [u.name for u in (await a.presence()).users] == ["ann"]


async def test_a_silent_worker_s_tab_that_moved_stays(workers):
    a, b, clock = workers
    await b.join("t", "tom")
    await sweep(b, clock, ["t"])
    clock.advance(1)
    await a.join("t", "tom")  # its tab reconnected to A, which took it over

    clock.advance(WORKER_TIMEOUT + GRACE)

    assert await sweep(a, clock, ["t"]) == []
    assert (await a.workers()) == {"t": "A"}


async def test_one_entry_is_removed_once_whichever_workers_sweep(workers):
    a, b, clock = workers
    await b.join("b1", "bob")
    await sweep(b, clock, ["b1"])
    clock.advance(WORKER_TIMEOUT + 1)

    removed = await sweep(a, clock) + await sweep(b, clock) + await sweep(a, clock)

    assert removed == ["b1"]


async def test_a_worker_taken_for_dead_is_told_once(workers):
    a, b, clock = workers
    await b.join("b1", "bob")
    await sweep(b, clock, ["b1"])
    clock.advance(WORKER_TIMEOUT + 1)
    await sweep(a, clock)

    assert [await b.evicted(), await b.evicted(), await a.evicted()] == [
        True,
        False,
        False,
    ]


async def test_a_live_worker_is_never_told_it_was_evicted(workers):
    a, b, clock = workers
    await b.join("b1", "bob")
    await sweep(b, clock, ["b1"])
    clock.advance(WORKER_TIMEOUT - 1)
    await sweep(a, clock)

    assert not await b.evicted()


def test_each_process_forked_after_the_registry_was_built_has_its_own_name(
    monkeypatch,
):
    registry = RedisRegistry(aioredis.Redis(), prefix="fork:")
    before = registry.worker
    monkeypatch.setattr(os, "getpid", lambda: 4242)  # a worker forked later

    assert registry.worker != before
    assert registry.worker.endswith(":4242")

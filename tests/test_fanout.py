"""The fan-out's reads of the registry: each caller sees its own change, and a
burst of callers shares a few reads."""

from __future__ import annotations

import asyncio

from presence_app.fanout import Fanout
from presence_app.registry.memory import MemoryRegistry


class CountingRegistry(MemoryRegistry):
    """A registry whose presence takes a moment to arrive, as over a network:
    what it returns was read at the start."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: 1000.0)
        self.reads = 0

    async def presence(self):
        self.reads += 1
        presence = await super().presence()
        await asyncio.sleep(0.01)
        return presence


async def test_a_burst_of_joins_shares_a_few_reads_and_each_sees_its_own_join():
    registry = CountingRegistry()
    fanout = Fanout(registry, min_interval=0.1)

    async def join_and_refresh(i: int) -> int:
        await registry.join(f"tab{i}", f"user{i}")
        return (await fanout.refresh()).count

    counts = await asyncio.gather(*(join_and_refresh(i) for i in range(50)))

    assert all(count >= i + 1 for i, count in enumerate(counts))
    assert fanout.latest.count == 50
    assert registry.reads <= 3


async def test_a_change_made_during_a_read_is_in_the_next_one():
    registry = CountingRegistry()
    fanout = Fanout(registry, min_interval=0.1)
    first = asyncio.ensure_future(fanout.refresh())
    await asyncio.sleep(0.005)  # the first read is under way

    await registry.join("late", "lea")
    seen = await fanout.refresh()

    assert (await first).count == 0
    assert seen.count == 1

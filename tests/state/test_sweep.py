"""The sweep: tabs that stop being seen leave after the grace, and only then."""

from __future__ import annotations

import pytest

from presence_app import service
from presence_app.fanout import Fanout
from presence_app.lifecycle import Sweep
from presence_app.registry.memory import MemoryRegistry


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    clock = FakeClock()
    registry = MemoryRegistry(clock)
    monkeypatch.setattr(service, "REGISTRY", registry)
    monkeypatch.setattr(service, "FANOUT", Fanout(registry, min_interval=0.05))
    return clock


async def test_a_tab_not_seen_for_the_grace_leaves(clock):
    sweep = Sweep()
    await service.REGISTRY.join("a", "ann")

    clock.now += service.SETTINGS.grace - 0.01
    assert await sweep.run_once(set()) == []
    clock.now += 0.02
    assert await sweep.run_once(set()) == ["a"]

    assert (await service.REGISTRY.presence()).count == 0


async def test_a_tab_seen_by_the_sweep_stays_however_long(clock):
    sweep = Sweep()
    await service.REGISTRY.join("a", "ann")

    for _ in range(100):
        clock.now += 1
        await sweep.run_once({"a"})

    assert (await service.REGISTRY.presence()).count == 1


async def test_a_reload_inside_the_grace_keeps_the_tab(clock):
    sweep = Sweep()
    await service.REGISTRY.join("a", "ann")
    await sweep.run_once({"a"})

    clock.now += service.SETTINGS.grace / 2
    await sweep.run_once(set())
    clock.now += service.SETTINGS.grace / 2
    await sweep.run_once({"a"})
    clock.now += service.SETTINGS.grace / 2
    await sweep.run_once({"a"})

    assert (await service.REGISTRY.presence()).count == 1


async def test_a_departed_tab_has_its_state_freed_once_after_the_grace(
    clock, monkeypatch
):
    freed = []
    held = {"a", "b"}
    sweep = Sweep(lambda: set(held), lambda tab: freed.append(tab) or True)
    now = [0.0]
    monkeypatch.setattr("presence_app.lifecycle.time.monotonic", lambda: now[0])

    await sweep.run_once({"a", "b"})
    now[0] += 1
    await sweep.run_once({"b"})
    now[0] += service.SETTINGS.grace
    await sweep.run_once({"b"})
    held.discard("a")
    now[0] += service.SETTINGS.grace
    await sweep.run_once({"b"})

    assert freed == ["a"]


async def test_a_tab_gone_between_two_sweeps_has_its_state_freed_too(
    clock, monkeypatch
):
    freed = []
    sweep = Sweep(lambda: {"brief"}, lambda tab: freed.append(tab) or True)
    now = [0.0]
    monkeypatch.setattr("presence_app.lifecycle.time.monotonic", lambda: now[0])

    await sweep.run_once(set())
    now[0] += service.SETTINGS.grace
    await sweep.run_once(set())

    assert freed == ["brief"]


async def test_a_tab_back_before_the_grace_keeps_its_state(clock, monkeypatch):
    freed = []
    sweep = Sweep(lambda: {"a"}, lambda tab: freed.append(tab) or True)
    now = [0.0]
    monkeypatch.setattr("presence_app.lifecycle.time.monotonic", lambda: now[0])

    await sweep.run_once({"a"})
    now[0] += 1
    await sweep.run_once(set())
    now[0] += 1
    await sweep.run_once({"a"})
    now[0] += service.SETTINGS.grace * 2
    await sweep.run_once({"a"})

    assert freed == []


async def rejoins_over_sweeps(monkeypatch, method: str, answers: list) -> int:
    """Sweep once per answer, the registry's ``method`` giving them in turn;
    how many times the sweep made every tab join again."""
    rejoins = []

    async def rejoin_tabs():
        rejoins.append(True)

    replies = iter(answers)

    async def reply():
        return next(replies)

    monkeypatch.setattr(service.REGISTRY, method, reply)
    sweep = Sweep(rejoin_tabs=rejoin_tabs)
    for _ in answers:
        await sweep.run_once(set())
    return len(rejoins)


async def test_a_store_that_lost_its_data_makes_every_tab_join_again(
    clock, monkeypatch
):
    epochs = ["first", "first", "second", "second"]

    assert await rejoins_over_sweeps(monkeypatch, "epoch", epochs) == 1


async def test_after_a_store_reset_an_older_version_replaces_the_stale_presence(clock):
    await service.REGISTRY.join("a", "ann")
    await service.FANOUT.refresh()
    stale = service.FANOUT.latest
    service.FANOUT.registry = MemoryRegistry(clock)  # the store came back empty

    await service.FANOUT.refresh()
    assert service.FANOUT.latest == stale
    service.FANOUT.store_reset()
    await service.FANOUT.refresh()

    assert service.FANOUT.latest.count == 0


async def test_a_page_that_said_goodbye_leaves_after_the_grace(clock):
    from presence_app.lifecycle import GOODBYE, tab_disconnected

    sweep = Sweep()
    await service.REGISTRY.join("a", "ann")

    await tab_disconnected("a", GOODBYE)
    clock.now += service.SETTINGS.grace + 0.01

    assert await sweep.run_once(set()) == ["a"]


async def test_a_broken_connection_gets_the_longer_network_grace(clock):
    from presence_app.lifecycle import tab_disconnected

    sweep = Sweep()
    await service.REGISTRY.join("a", "ann")

    await tab_disconnected("a", "transport error")
    clock.now += service.SETTINGS.grace + 0.01
    assert await sweep.run_once(set()) == []
    clock.now += service.SETTINGS.network_grace - service.SETTINGS.grace

    assert await sweep.run_once(set()) == ["a"]


async def test_a_worker_taken_for_dead_by_the_others_makes_its_tabs_rejoin(
    clock, monkeypatch
):
    verdicts = [False, True, False]

    assert await rejoins_over_sweeps(monkeypatch, "evicted", verdicts) == 1


async def test_a_sweep_slowed_after_its_touch_does_not_age_live_tabs(
    clock, monkeypatch
):
    registry = service.REGISTRY
    await registry.join("a", "ann")
    touch = registry.touch

    async def touch_then_stall(tabs, at=None):
        await touch(tabs, at)
        clock.now += service.SETTINGS.grace + 1  # a busy worker, before expiring

    monkeypatch.setattr(registry, "touch", touch_then_stall)

    assert await Sweep().run_once({"a"}) == []
    assert (await registry.presence()).count == 1


def test_only_the_tabs_with_sockets_on_this_worker_are_its_live_tabs():
    from types import SimpleNamespace

    from reflex.utils.token_manager import SocketRecord

    from presence_app.lifecycle import local_tabs

    manager = SimpleNamespace(
        instance_id="me",
        token_to_socket={
            "here": SocketRecord(instance_id="me", sid="s1"),
            # Cached after a lookup; its worker may be dead and never say so.
            "elsewhere": SocketRecord(instance_id="other", sid="s2"),
        },
    )
    app = SimpleNamespace(event_namespace=SimpleNamespace(_token_manager=manager))

    assert local_tabs(app) == {"here"}

"""Fixtures shared by the registry tests: a fake clock and one registry per kind.

Every test that takes ``registry`` (or ``registry_factory``) runs once per
registry kind in ``REGISTRY_KINDS``. To add a kind (Redis), append its
``pytest.param`` there and teach ``make_registry`` to build it; nothing in the
test modules needs to change.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from presence_app.registry import Clock, Registry
from presence_app.registry.memory import MemoryRegistry
from presence_app.registry.redis import from_url

REGISTRY_KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


class FakeClock:
    """A clock the test moves by hand: call it for the time, never sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock only moves forward; use set() to go back")
        self.now += seconds
        return self.now

    def set(self, t: float) -> float:
        self.now = t
        return self.now


def make_registry(kind: str, clock: Clock, redis_url: str = "") -> Registry:
    """A new, empty registry of ``kind`` that reads time from ``clock``.

    Redis registries share one server; a prefix of their own keeps them apart.
    """
    if kind == "memory":
        return MemoryRegistry(clock)
    if kind == "redis":
        return from_url(redis_url, prefix=f"test-{uuid.uuid4().hex}:", clock=clock)
    raise ValueError(f"unknown registry kind {kind!r}")


@pytest.fixture(scope="module", params=REGISTRY_KINDS)
def registry_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def registry_factory(
    registry_kind: str, request: pytest.FixtureRequest
) -> Callable[[Clock], Registry]:
    """Builds fresh registries of this kind; for tests that need many of them
    (the Hypothesis ones, which must not use function-scoped fixtures)."""
    url = (
        request.getfixturevalue("redis_server").url if registry_kind == "redis" else ""
    )
    return functools.partial(make_registry, registry_kind, redis_url=url)


@pytest.fixture(scope="module")
def clock_factory() -> type[FakeClock]:
    """The ``FakeClock`` class, for tests that build their own clocks."""
    return FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def registry(
    registry_factory: Callable[[Clock], Registry], clock: FakeClock
) -> AsyncIterator[Registry]:
    """A fresh registry, of each kind in turn, on the test's ``clock``."""
    instance = registry_factory(clock)
    try:
        yield instance
    finally:
        await instance.close()

"""Who is online: the registry of joined tabs, behind one small contract.

What "online" means here:

- A *tab* is one browser tab, known by Reflex's per-tab client token. Each tab
  has its own name and joined flag; no tab reads or changes another tab's.
- A *user* is a cleaned-up name (see ``presence_app.names``). Two tabs whose
  names are equal after casefold are the same user. A user is online while at
  least one of its tabs is joined; the online count is the number of such users.
- *join* is idempotent. Joining again from the same tab under another name is a
  *rename*: the old name goes in the same step, so no reader ever sees both or
  neither. *leave* removes only the calling tab; leaving twice is a no-op.
- A user is listed under the spelling first seen while it stays online, and the
  list is ordered by the earliest join among the user's current tabs.
- Each entry carries the time it was last *seen* connected. Whoever watches the
  sockets calls ``touch`` for the tabs it sees; ``expire`` removes the entries
  not seen since a cut-off. So a tab that vanishes without Leave stays online
  for at most the grace period after its socket is known to be gone, and a
  reload inside the grace keeps the entry, its name and its place.
- Every change bumps a version, so readers can tell a newer presence from an
  older one.
- A registry *shared* by several workers (Redis) records which worker holds
  each entry and when each worker last touched it. A worker's sweep expires its
  own entries, and another worker's only once that worker has been silent for
  the worker timeout (it died, or lost the store): a worker that is merely
  slow to reach the store keeps its tabs. A worker whose entries were removed
  that way learns it from ``evicted`` and has its tabs join again.

The registry knows nothing of Reflex. ``create_registry`` is the one place that
chooses an implementation.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Callable, Iterable

Clock = Callable[[], float]

# Seconds a worker of a shared registry may go without touching it before the
# others take it for dead (``PRESENCE_WORKER_TIMEOUT``).
WORKER_TIMEOUT = 10.0


class PresenceError(Exception):
    """Base of the registry's own errors."""


class RegistryUnavailableError(PresenceError, ConnectionError):
    """The registry's store cannot be reached; nothing was changed."""


@dataclasses.dataclass(frozen=True)
class OnlineUser:
    """One user as every tab lists it."""

    name: str
    tabs: int


@dataclasses.dataclass(frozen=True)
class Presence:
    """The users online, in list order, at one version of the registry."""

    version: int
    users: tuple[OnlineUser, ...] = ()

    @property
    def count(self) -> int:
        return len(self.users)


@dataclasses.dataclass(frozen=True)
class TabEntry:
    """What the registry holds for one joined tab."""

    tab: str
    name: str
    seen_at: float


class Registry(abc.ABC):
    """The contract every registry keeps; the memory and Redis ones mirror it."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock

    @abc.abstractmethod
    async def join(self, tab: str, name: str) -> bool:
        """Join ``tab`` as ``name`` (or rename it); True when presence changed."""

    @abc.abstractmethod
    async def leave(self, tab: str) -> bool:
        """Remove ``tab``; True when it was joined."""

    @abc.abstractmethod
    async def transfer(self, old_tab: str, new_tab: str) -> bool:
        """Move ``old_tab``'s entry, name and place, to ``new_tab``."""

    @abc.abstractmethod
    async def entry(self, tab: str) -> TabEntry | None:
        """The entry of ``tab``, or None when it is not joined."""

    @abc.abstractmethod
    async def touch(self, tabs: Iterable[str], at: float | None = None) -> None:
        """Record that these tabs were seen ``at`` (default now); unknown ones
        are ignored. A time ahead of now gives a tab a longer grace. It also
        tells a shared registry that this worker is alive."""

    @abc.abstractmethod
    async def expire(self, seen_before: float) -> list[str]:
        """Remove the tabs last seen before ``seen_before``; return them.

        On a shared registry, only this worker's and those of workers silent
        for the worker timeout.
        """

    @abc.abstractmethod
    async def presence(self) -> Presence:
        """The current presence."""

    @abc.abstractmethod
    async def epoch(self) -> str:
        """Names the store's lifetime; it changes when the store lost its data.

        Every joined tab must then be asserted again (a Redis restarted without
        persistence forgets them all).
        """

    async def evicted(self) -> bool:
        """True, once, after other workers took this one for dead and removed
        its entries; its tabs must then join again. Never, with one process."""
        return False

    async def watch(self, on_change: Callable[[], None]) -> None:  # noqa: B027
        """Call ``on_change`` when another process changes presence.

        One process sees all its own changes, so the memory registry has
        nothing to watch; the Redis one listens to the other workers.
        """

    async def close(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Release whatever the registry holds open."""


def create_registry(
    redis_url: str | None,
    prefix: str = "presence:",
    clock: Clock = time.time,
    worker_timeout: float = WORKER_TIMEOUT,
) -> Registry:
    """The registry for this process: on Redis when Reflex has a Redis URL.

    It is Reflex's own setting (``REFLEX_REDIS_URL``), so Reflex's state and
    presence always live in the same place. Without it, the in-memory registry
    is the embedded default.
    """
    if redis_url:
        from presence_app.registry.redis import from_url

        return from_url(
            redis_url, prefix=prefix, clock=clock, worker_timeout=worker_timeout
        )

    from presence_app.registry.memory import MemoryRegistry

    return MemoryRegistry(clock)

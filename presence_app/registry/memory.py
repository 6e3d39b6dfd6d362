"""The embedded registry: two dicts in this process, guarded by one lock.

Correct for exactly one backend worker; with several, each worker would hold its
own truth (that is what the Redis registry is for).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Iterable

from sortedcontainers import SortedList

from presence_app.names import user_key
from presence_app.registry import (
    Clock,
    OnlineUser,
    Presence,
    Registry,
    TabEntry,
)


@dataclasses.dataclass
class _Tab:
    key: str
    name: str
    order: int
    seen_at: float


@dataclasses.dataclass
class _User:
    name: str
    tab_orders: dict[str, int]
    # The earliest join among the user's tabs: its place in the list.
    first: int = 0
    # What the list shows of the user, rebuilt only when its tabs change.
    listed: OnlineUser | None = None


class MemoryRegistry(Registry):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        # A threading lock, held only around dict updates with no await inside,
        # so it is safe from any thread and never spans a suspension point.
        self._lock = threading.Lock()
        self._tabs: dict[str, _Tab] = {}
        self._users: dict[str, _User] = {}
        # Users by their place, kept sorted as tabs come and go, so a snapshot
        # costs one pass instead of a sort: it is taken after every join.
        self._ranking = SortedList()
        self._orders = itertools.count(1)
        self._version = 0
        self._snapshot = Presence(version=0)

    async def join(self, tab: str, name: str) -> bool:
        key, now = user_key(name), self.clock()
        with self._lock:
            current = self._tabs.get(tab)
            if current is not None and current.key == key:
                current.seen_at = now
                return False
            if current is not None:
                self._unlink(tab)
            self._link(tab, _Tab(key, name, next(self._orders), now))
            self._version += 1
            return True

    async def leave(self, tab: str) -> bool:
        with self._lock:
            if tab not in self._tabs:
                return False
            self._unlink(tab)
            self._version += 1
            return True

    async def transfer(self, old_tab: str, new_tab: str) -> bool:
        now = self.clock()
        with self._lock:
            if old_tab == new_tab or old_tab not in self._tabs:
                return False
            if new_tab in self._tabs:
                self._unlink(new_tab)
            # Move the tab inside its user, so the user keeps its spelling
            # and its place even when this was its only tab.
            current = self._tabs.pop(old_tab)
            current.seen_at = now
            self._tabs[new_tab] = current
            orders = self._users[current.key].tab_orders
            orders[new_tab] = orders.pop(old_tab)
            self._version += 1
            return True

    async def entry(self, tab: str) -> TabEntry | None:
        with self._lock:
            current = self._tabs.get(tab)
            if current is None:
                return None
            return TabEntry(tab=tab, name=current.name, seen_at=current.seen_at)

    async def touch(self, tabs: Iterable[str], at: float | None = None) -> None:
        now = self.clock() if at is None else at
        with self._lock:
            for tab in tabs:
                current = self._tabs.get(tab)
                if current is not None:
                    current.seen_at = now

    async def expire(self, seen_before: float) -> list[str]:
        with self._lock:
            gone = [t for t, e in self._tabs.items() if e.seen_at < seen_before]
            for tab in gone:
                self._unlink(tab)
            if gone:
                self._version += 1
            return gone

    async def presence(self) -> Presence:
        with self._lock:
            if self._snapshot.version != self._version:
                self._snapshot = self._build_snapshot()
            return self._snapshot

    async def epoch(self) -> str:
        # Memory and this process share one lifetime.
        return "memory"

    def _link(self, tab: str, entry: _Tab) -> None:
        self._tabs[tab] = entry
        user = self._users.get(entry.key)
        if user is None:
            user = self._users[entry.key] = _User(entry.name, {}, entry.order)
            self._ranking.add((user.first, entry.key))
        user.tab_orders[tab] = entry.order
        user.listed = None

    def _unlink(self, tab: str) -> _Tab:
        entry = self._tabs.pop(tab)
        user = self._users[entry.key]
        del user.tab_orders[tab]
        user.listed = None
        if entry.order == user.first:
            self._ranking.remove((user.first, entry.key))
            if not user.tab_orders:
                del self._users[entry.key]
                return entry
            user.first = min(user.tab_orders.values())
            self._ranking.add((user.first, entry.key))
        return entry

    def _build_snapshot(self) -> Presence:
        users = tuple(self._listed(self._users[key]) for _, key in self._ranking)
        return Presence(version=self._version, users=users)

    @staticmethod
    def _listed(user: _User) -> OnlineUser:
        if user.listed is None:
            user.listed = OnlineUser(user.name, len(user.tab_orders))
        return user.listed

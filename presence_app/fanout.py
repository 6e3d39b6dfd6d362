"""Fan-out: getting a new presence to every live tab, once per burst.

Each worker keeps the latest presence it has read from the registry. Tabs never
store their own copy: their count and list are computed from it, so a tab's
backend state always agrees with the last update it was sent. A change wakes
one loop, which reads the registry and sends one update, serialized once, to
every socket of this worker. Sends are at least ``min_interval`` apart, so a
storm of joins costs each tab one update per interval, not one per join.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from presence_app.outage import OutageLog
from presence_app.registry import Presence, Registry, RegistryUnavailableError

logger = logging.getLogger(__name__)

Broadcast = Callable[[Presence], Awaitable[None]]


class Fanout:
    def __init__(
        self, registry: Registry, min_interval: float, outage: OutageLog | None = None
    ) -> None:
        self.registry = registry
        self.outage = outage or OutageLog()
        self.min_interval = min_interval
        self.latest = Presence(version=0)
        self._sent_version = 0
        self._changed = asyncio.Event()
        self._reading: asyncio.Future[Presence] | None = None
        self._next_read: asyncio.Future[Presence] | None = None

    async def refresh(self) -> Presence:
        """Read the registry; keep its presence when it is newer than ours.

        The read starts after this call, so it holds every change the caller
        made before. Callers that come while a read is under way share the one
        read that starts after it: a storm of joins costs a few reads, not one
        each (a read of the Redis registry is the whole presence).
        """
        if self._next_read is None:
            self._next_read = asyncio.ensure_future(self._read_after(self._reading))
        return await asyncio.shield(self._next_read)

    async def _read_after(self, previous: asyncio.Future | None) -> Presence:
        if previous is not None:
            await asyncio.wait([previous])
        self._reading, self._next_read = self._next_read, None
        presence = await self.registry.presence()
        if presence.version > self.latest.version:
            self.latest = presence
        return self.latest

    def store_reset(self) -> None:
        """The registry lost its data: take whatever it says next, and send it."""
        # Its version may now be lower than ours; without this the stale
        # presence would stay until the next change.
        self.latest = Presence(version=-1)
        self._sent_version = -1
        self.changed()

    def changed(self) -> None:
        """Note that presence changed; the loop sends it soon."""
        self._changed.set()

    async def run(self, broadcast: Broadcast) -> None:
        """Send every change to every live tab, until cancelled."""
        last_sent = 0.0
        while True:
            await self._changed.wait()
            # Coalesce: whatever changes before the interval is up rides along.
            pause = last_sent + self.min_interval - time.monotonic()
            await asyncio.sleep(max(0.0, pause))
            self._changed.clear()
            try:
                await self._send_latest(broadcast)
            except RegistryUnavailableError as error:
                # Retry until the registry answers; the outage is logged once.
                self.outage.failed(error)
                self._changed.set()
                await asyncio.sleep(1.0)
            except Exception:
                logger.exception("fan-out failed; it goes on with the next change")
            last_sent = time.monotonic()

    async def _send_latest(self, broadcast: Broadcast) -> None:
        presence = await self.refresh()
        if presence.version != self._sent_version:
            await broadcast(presence)
            self._sent_version = presence.version

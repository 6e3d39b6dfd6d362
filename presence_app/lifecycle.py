"""Tabs that go away without Leave: the sweep that notices them, and carry-over.

Reflex tells the app nothing when a tab goes away, but it knows which tabs have
a socket on this worker right now. Every sweep marks those as seen; a joined
tab not seen for the grace period leaves. A reload reconnects well inside the
grace, so other tabs never see it leave and come back. A socket that dies
silently is dropped by Reflex's own ping (interval + timeout, see settings),
and the same grace then applies.

A tab that is gone for good (not back within the grace) also has its Reflex
state freed, instead of lingering for Reflex's default hour.

With several workers, each sweeps only the tabs whose sockets it holds, and the
registry leaves a worker's entries to that worker while it keeps touching the
registry. A worker that could not for the worker timeout (Redis was down or
stalled) is taken for dead and its tabs' entries removed by the others; it
learns so from the registry, makes its tabs reconnect, and each joined tab
joins again, as after Redis lost its data.

Carry-over: Reflex gives a connecting tab a new token when its old token still
has a live socket. That happens to a duplicated tab (its original is alive) and
to a tab whose old socket is not yet known to be dead. The page tells them
apart: a duplicate is a freshly loaded page, while a reconnecting tab is the
same page opening a new socket. See ``PresenceState.restore``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
import reflex as rx
from reflex.istate.manager.redis import enable_keyspace_notifications
from reflex.middleware import Middleware
from reflex_base.config import get_config
from reflex_base.registry import RegistrationContext

from presence_app import service
from presence_app.registry import RegistryUnavailableError

logger = logging.getLogger(__name__)

HYDRATE_EVENT = f"{rx.State.get_full_name()}.hydrate_and_load"


class Sweep:
    """One worker's view of which tabs come and go."""

    def __init__(self, held_states=None, forget_state=None, rejoin_tabs=None) -> None:
        self._departed: dict[str, float] = {}
        self._held_states = held_states or set
        self._forget_state = forget_state
        self._rejoin_tabs = rejoin_tabs
        self._epoch: str | None = None

    async def run_once(self, live: set[str]) -> list[str]:
        """Mark ``live`` tabs as seen, expire joined tabs gone past the grace."""
        registry, grace = service.REGISTRY, service.SETTINGS.grace
        # The cut-off is taken before the touch: on a busy worker the awaits
        # below can take longer than the grace, and must not age live tabs.
        cutoff = registry.clock() - grace
        epoch = await registry.epoch()
        if self._epoch is not None and epoch != self._epoch:
            logger.warning("presence store lost its data; tabs join again")
            service.FANOUT.store_reset()
            await self._make_tabs_rejoin()
        self._epoch = epoch
        await registry.touch(live)
        if await registry.evicted():
            # The worker that removed our entries published that change.
            logger.warning("other workers took this one for dead; tabs join again")
            await self._make_tabs_rejoin()
        gone = await registry.expire(cutoff)
        if gone:
            logger.debug("expired %d tab(s)", len(gone))
            service.FANOUT.changed()
        self._free_departed(live, time.monotonic(), grace)
        return gone

    async def _make_tabs_rejoin(self) -> None:
        if self._rejoin_tabs is not None:
            await self._rejoin_tabs()

    def _free_departed(self, live: set[str], now: float, grace: float) -> None:
        # Every state held for a tab without a socket, however briefly that
        # tab was connected, is a candidate; it goes once away for the grace.
        away = self._held_states() - live
        for tab in self._departed.keys() - away:
            del self._departed[tab]
        for tab in away:
            since = self._departed.setdefault(tab, now)
            if now - since >= grace and self._forget(tab):
                del self._departed[tab]

    def _forget(self, tab: str) -> bool:
        return self._forget_state is None or self._forget_state(tab)


def forget_state(app: rx.App, tab: str) -> bool:
    """Free a departed tab's Reflex state; False to try again next sweep.

    Reflex has no public call for this. The memory manager's own expiry uses
    ``_purge_token``; other managers keep Reflex's expiry (a Redis key TTL).
    """
    manager = app.state_manager
    purge = getattr(manager, "_purge_token", None)
    if purge is None:
        return True
    token = rx.BaseStateToken(ident=tab, cls=rx.State)
    lock = getattr(manager, "_states_locks", {}).get(token.lock_key)
    if lock is not None and lock.locked():
        return False
    purge(token)
    return True


async def reconnect_every_tab(app: rx.App) -> None:
    """Make every tab of this worker reconnect, so it hydrates and restores.

    After Redis lost its data, Reflex's states and presence are gone while the
    pages still show the old ones. Closing the transport (not the namespace)
    makes Reflex's client reconnect at once; its hydrate brings the tab's
    identity from session storage, and ``restore`` joins it again.
    """
    redis_url = get_config().redis_url
    if redis_url:
        # Reflex enables these only when a worker starts; a Redis restarted
        # since has lost them, and Reflex's lock waiters rely on them.
        client = aioredis.Redis.from_url(redis_url)
        try:
            await enable_keyspace_notifications(client)
        finally:
            await client.aclose()
    namespace = app.event_namespace.namespace
    for sid in list(app.event_namespace.sid_to_token):
        eio_sid = app.sio.manager.eio_sid_from_sid(sid, namespace)
        socket = app.sio.eio.sockets.get(eio_sid)
        if socket is None:
            continue
        await app.sio.eio.disconnect(eio_sid)
        # The browser ignores engine.io's CLOSE packet over a websocket and
        # would wait for its ping to time out. Ending the socket's writer the
        # way engine.io itself does closes the websocket now.
        await socket.queue.put(None)


def local_tabs(app: rx.App) -> set[str]:
    """The tabs whose sockets this worker holds.

    Reflex's token map also caches other workers' sockets once it has looked
    them up (``tab_is_connected`` does), and keeps those until Redis says they
    closed, which never happens when their worker dies: they are left out.
    """
    manager = app.event_namespace._token_manager
    return {
        tab
        for tab, record in manager.token_to_socket.items()
        if record.instance_id == manager.instance_id
    }


async def tab_is_connected(tab: str) -> bool:
    """Whether ``tab`` has a live socket on any worker.

    Reflex's token manager knows (through Redis when there are several
    workers); it is reached through a private attribute, as Reflex's own shared
    state does, since there is no public call.
    """
    app = RegistrationContext.get().app
    return await app.event_namespace._token_manager.is_token_connected(tab)


# python-socketio's reason when the page itself said goodbye (Reflex's client
# does on close, navigation and reload); every other reason is a broken link.
GOODBYE = "client disconnect"


async def tab_disconnected(tab: str, reason: str | None) -> None:
    """Start the tab's grace now, the longer one if its connection broke."""
    settings = service.SETTINGS
    registry = service.REGISTRY
    extra = 0.0 if reason == GOODBYE else settings.network_grace - settings.grace
    # Expiry compares last-seen with now - grace: a last-seen ahead of now by
    # the difference is exactly a longer grace for this tab.
    try:
        await registry.touch([tab], at=registry.clock() + extra)
    except RegistryUnavailableError as error:
        service.OUTAGE.failed(error)
    logger.debug("tab %s disconnected (%s)", tab[:8], reason)


def watch_disconnects(app: rx.App) -> None:
    """Call ``tab_disconnected`` for every socket that goes, after Reflex's own.

    Reflex has no disconnect hook; wrapping its namespace's handler on the
    instance keeps Reflex's clean-up (a socketio handler of our own would
    replace it). python-socketio passes the reason when the handler takes it.
    """
    namespace = app.event_namespace
    reflex_on_disconnect = namespace.on_disconnect

    def on_disconnect(sid: str, reason: str | None = None):
        tab = namespace.sid_to_token.get(sid)
        result = reflex_on_disconnect(sid)
        if tab is not None:
            asyncio.get_running_loop().create_task(tab_disconnected(tab, reason))
        return result

    namespace.on_disconnect = on_disconnect


class PageLoadMarker(Middleware):
    """Tell the presence state whether a (re)connect is a freshly loaded page.

    The page sends the hashes of its compiled state only with the first hydrate
    of a page load; a socket reconnect of a page already open sends none.
    """

    def __init__(self, state_cls: type[rx.State]) -> None:
        self.state_cls = state_cls

    async def preprocess(self, app, state, event):
        if event.name == HYDRATE_EVENT:
            presence = await state.get_state(self.state_cls)
            presence.mark_page_load(bool(event.payload.get("hashes")))
        return None


def install(app: rx.App, state_cls: type[rx.State]) -> None:
    """Run the sweep on this worker for as long as the app runs."""
    app.add_middleware(PageLoadMarker(state_cls))
    sweep = Sweep(
        held_states=lambda: set(getattr(app.state_manager, "states", ())),
        forget_state=lambda tab: forget_state(app, tab),
        rejoin_tabs=lambda: reconnect_every_tab(app),
    )

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(service.SETTINGS.sweep_interval)
            try:
                await sweep.run_once(local_tabs(app))
                service.OUTAGE.recovered()
            except RegistryUnavailableError as error:
                service.OUTAGE.failed(error)
            except Exception:
                logger.exception("sweep failed; it goes on with the next one")

    async def watch_other_workers() -> None:
        while True:
            try:
                # Returns at once when there is nobody else to hear from.
                return await service.REGISTRY.watch(service.FANOUT.changed)
            except RegistryUnavailableError as error:
                service.OUTAGE.failed(error)
            await asyncio.sleep(1.0)

    app.register_lifespan_task(sweep_forever)
    app.register_lifespan_task(watch_other_workers)
    watch_disconnects(app)

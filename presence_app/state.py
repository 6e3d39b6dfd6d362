"""PresenceState: one tab's name and joined flag, and what it shows of presence."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import reflex as rx

from presence_app import lifecycle, service
from presence_app.names import NameRejectedError, clean_name
from presence_app.registry import Presence, RegistryUnavailableError

logger = logging.getLogger(__name__)

# The list shows this many users, then "and N more".
LISTED_USERS = 50
UNAVAILABLE = (
    "Presence is unavailable right now, so nothing changed. Try again in a moment."
)
# How long a freshly loaded page holding a live tab's identity waits to see
# whether that tab's socket closes (a reload) or stays (a duplicated tab).
COPY_WAIT = 1.5


def listed_users(presence: Presence) -> list[dict[str, str]]:
    """The first users of ``presence`` as the page lists them."""
    return [
        {"name": u.name, "tabs": f"{u.tabs} tabs" if u.tabs > 1 else ""}
        for u in presence.users[:LISTED_USERS]
    ]


def shown_presence(presence: Presence) -> dict[str, Any]:
    """The values of the state's presence vars, by name.

    The computed vars below read them from here, and so does the fan-out's one
    shared update: a tab shows the same thing whichever way the values came.
    """
    users = listed_users(presence)
    return {
        "online_count": presence.count,
        "online_users": users,
        "more_users": presence.count - len(users),
    }


def typed_name(form_data: Any) -> str:
    """The join form's name field; anything but text (a scripted client) is
    refused rather than turned into text."""
    raw = form_data.get("username", "") if isinstance(form_data, dict) else ""
    if not isinstance(raw, str):
        raise NameRejectedError("A name must be text.")
    return raw


@contextlib.asynccontextmanager
async def outage_notice(state: PresenceState) -> AsyncIterator[None]:
    """Tell the tab when the registry is unreachable; nothing was changed."""
    try:
        yield
        state.notice = ""
    except RegistryUnavailableError as error:
        service.OUTAGE.failed(error)
        state.notice = UNAVAILABLE


class PresenceState(rx.State):
    """One tab: its own name and joined flag; presence comes from the fan-out."""

    username: str = ""
    joined: bool = False
    name_error: str = ""
    # Set while the registry cannot be reached: the last action changed nothing.
    notice: str = ""
    # "<token> <name>" in this tab's session storage: how a joined tab joins
    # again after a backend restart. Bound to the token, because a duplicated
    # tab copies session storage but is given a token of its own.
    identity: str = rx.SessionStorage("", name="presence_identity")
    # Whether the last (re)connect was a freshly loaded page (set by the
    # lifecycle middleware); backend only.
    _page_load: bool = False

    @rx.var(cache=False)
    def online_count(self) -> int:
        return shown_presence(service.FANOUT.latest)["online_count"]

    @rx.var(cache=False)
    def online_users(self) -> list[dict[str, str]]:
        return shown_presence(service.FANOUT.latest)["online_users"]

    @rx.var(cache=False)
    def more_users(self) -> int:
        return shown_presence(service.FANOUT.latest)["more_users"]

    @rx.event
    async def join(self, form_data: dict[str, Any] | None = None) -> None:
        """Join under the typed name, or say why the name is refused."""
        try:
            name = clean_name(typed_name(form_data))
        except NameRejectedError as err:
            self.name_error = err.message
            return
        async with outage_notice(self):
            await self._join_as(name)

    @rx.event
    async def leave(self) -> None:
        """Take this tab, and only this tab, out of presence."""
        tab = self.router.session.client_token
        async with outage_notice(self):
            if await service.REGISTRY.leave(tab):
                logger.debug("tab %s left", tab[:8])
                service.FANOUT.changed()
            await service.FANOUT.refresh()
            self.joined, self.username, self.name_error = False, "", ""
            self.identity = ""

    @rx.event
    async def restore(self):
        """On every (re)connect: keep, take back or carry over this tab's presence."""
        async with outage_notice(self):
            return await self._restore()

    async def _restore(self):
        tab = self.router.session.client_token
        stored_tab, _, stored_name = self.identity.partition(" ")
        if self.joined:
            await self._rejoin(self.username)
        elif stored_name and stored_tab == tab:
            # The backend restarted, or forgot the tab after a long outage: the
            # tab's state is new, its identity is not.
            await self._rejoin(stored_name)
        elif stored_name:
            # Another token's identity: this page was given a new token.
            if not self._page_load:
                # The same page, reconnecting: its old socket is stale.
                await self._carry_over(stored_tab, stored_name)
            elif not await lifecycle.tab_is_connected(stored_tab):
                # A reload that raced the old socket's close, now seen.
                await self._carry_over(stored_tab, stored_name)
            else:
                return PresenceState.settle_copy(stored_tab, stored_name)
        await service.FANOUT.refresh()
        return None

    @rx.event(background=True)
    async def settle_copy(self, old_tab: str, name: str):
        """A fresh page holding a live tab's identity: a duplicate, or a reload.

        A duplicated tab's original stays connected; a reloaded tab's old socket
        closes within moments. Wait briefly to see which, showing the form.
        """
        deadline = time.monotonic() + COPY_WAIT
        while await lifecycle.tab_is_connected(old_tab):
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        async with self:
            if self.joined or not self.identity.startswith(old_tab + " "):
                return
            if await lifecycle.tab_is_connected(old_tab):
                logger.debug("tab %s is a copy; it starts not joined", old_tab[:8])
                self.identity = ""
            else:
                await self._carry_over(old_tab, name)

    def mark_page_load(self, page_load: bool) -> None:
        """Called for each hydrate: is this a freshly loaded page?"""
        self._page_load = page_load

    async def _carry_over(self, old_tab: str, name: str) -> None:
        tab = self.router.session.client_token
        if await service.REGISTRY.transfer(old_tab, tab):
            logger.debug("tab %s carried over to %s", old_tab[:8], tab[:8])
            service.FANOUT.changed()
        await self._rejoin(name)

    async def _rejoin(self, name: str) -> None:
        # Joining again under the tab's own name only marks it seen: it keeps
        # its entry and its place in the list.
        try:
            await self._join_as(clean_name(name))
        except NameRejectedError:
            self.joined, self.username, self.identity = False, "", ""

    async def _join_as(self, name: str) -> None:
        tab = self.router.session.client_token
        if await service.REGISTRY.join(tab, name):
            logger.debug("tab %s joined", tab[:8])
            service.FANOUT.changed()
        await service.FANOUT.refresh()
        self.username, self.joined, self.name_error = name, True, ""
        self.identity = f"{tab} {name}"

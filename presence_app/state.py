"""PresenceState: one tab's name and joined flag, and what it shows of presence."""

from __future__ import annotations

import logging

import reflex as rx

from presence_app.names import NameRejectedError, clean_name
from presence_app.registry import Presence
from presence_app.service import FANOUT, REGISTRY

logger = logging.getLogger(__name__)

# The list shows this many users, then "and N more".
LISTED_USERS = 50


def listed_users(presence: Presence) -> list[dict[str, str]]:
    """The first users of ``presence`` as the page lists them."""
    return [
        {"name": u.name, "tabs": f"{u.tabs} tabs" if u.tabs > 1 else ""}
        for u in presence.users[:LISTED_USERS]
    ]


class PresenceState(rx.State):
    """One tab: its own name and joined flag; presence comes from the fan-out."""

    username: str = ""
    joined: bool = False
    name_error: str = ""
    # "<token> <name>" in this tab's session storage: how a joined tab joins
    # again after a backend restart. Bound to the token, because a duplicated
    # tab copies session storage but is given a token of its own.
    identity: str = rx.SessionStorage("", name="presence_identity")

    @rx.var(cache=False)
    def online_count(self) -> int:
        return FANOUT.latest.count

    @rx.var(cache=False)
    def online_users(self) -> list[dict[str, str]]:
        return listed_users(FANOUT.latest)

    @rx.var(cache=False)
    def more_users(self) -> int:
        return max(0, FANOUT.latest.count - LISTED_USERS)

    @rx.event
    async def join(self, form_data: dict[str, str]) -> None:
        """Join under the typed name, or say why the name is refused."""
        try:
            name = clean_name(str(form_data.get("username") or ""))
        except NameRejectedError as err:
            self.name_error = err.message
            return
        await self._join_as(name)

    @rx.event
    async def leave(self) -> None:
        """Take this tab, and only this tab, out of presence."""
        tab = self.router.session.client_token
        if await REGISTRY.leave(tab):
            logger.debug("tab %s left", tab[:8])
            FANOUT.changed()
        await FANOUT.refresh()
        self.joined, self.username, self.name_error = False, "", ""
        self.identity = ""

    @rx.event
    async def restore(self) -> None:
        """On every (re)connect: keep, or take back, this tab's presence."""
        tab = self.router.session.client_token
        stored_tab, _, stored_name = self.identity.partition(" ")
        if self.joined:
            await self._rejoin(self.username)
        elif stored_tab == tab and stored_name:
            # The backend restarted: the tab's state is new, its identity is not.
            await self._rejoin(stored_name)
        elif self.identity:
            # Another tab's identity, copied into a duplicated tab.
            self.identity = ""
        await FANOUT.refresh()

    async def _rejoin(self, name: str) -> None:
        tab = self.router.session.client_token
        entry = await REGISTRY.entry(tab)
        if entry is not None:
            await REGISTRY.touch([tab])
            return
        try:
            await self._join_as(clean_name(name))
        except NameRejectedError:
            self.joined, self.identity = False, ""

    async def _join_as(self, name: str) -> None:
        tab = self.router.session.client_token
        if await REGISTRY.join(tab, name):
            logger.debug("tab %s joined", tab[:8])
            FANOUT.changed()
        await FANOUT.refresh()
        self.username, self.joined, self.name_error = name, True, ""
        self.identity = f"{tab} {name}"

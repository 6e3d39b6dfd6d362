"""Tabs that go away without Leave: the sweep that notices and expires them.

Reflex tells the app nothing when a tab goes away, but it knows which tabs have
a socket on this worker right now. Every sweep marks those as seen; a joined
tab not seen for the grace period leaves. A reload reconnects well inside the
grace, so other tabs never see it leave and come back.
"""

from __future__ import annotations

import asyncio
import logging

import reflex as rx

from presence_app.service import FANOUT, REGISTRY, SETTINGS

logger = logging.getLogger(__name__)


async def sweep_once(live_tabs: list[str]) -> list[str]:
    """Mark ``live_tabs`` as seen and expire the tabs gone past the grace."""
    await REGISTRY.touch(live_tabs)
    gone = await REGISTRY.expire(REGISTRY.clock() - SETTINGS.grace)
    if gone:
        logger.debug("expired %d tab(s)", len(gone))
        FANOUT.changed()
    return gone


def install(app: rx.App) -> None:
    """Run the sweep on this worker for as long as the app runs."""

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SETTINGS.sweep_interval)
            try:
                await sweep_once(list(app.event_namespace.token_to_sid))
            except Exception:
                logger.exception("sweep failed")

    app.register_lifespan_task(sweep)

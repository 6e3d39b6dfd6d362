"""Reflex configuration.

State manager: without a Redis URL, Reflex keeps each tab's state in this
process's memory (one worker, nothing written to disk; a tab's identity survives
a restart through its session storage instead). With ``REFLEX_REDIS_URL`` set,
the mode is left unset so Reflex switches to Redis by itself: pinning "memory"
there would silently split state across workers.
"""

import os

import reflex as rx

_state_manager = (
    {} if os.environ.get("REFLEX_REDIS_URL") else {"state_manager_mode": "memory"}
)

config = rx.Config(
    app_name="presence_app",
    telemetry_enabled=False,
    plugins=[rx.plugins.SitemapPlugin(), rx.plugins.RadixThemesPlugin()],
    show_built_with_reflex=False,
    **_state_manager,
)

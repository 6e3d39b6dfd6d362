"""Scenario 5: the backend restarts under open tabs, and presence comes back.

The server is stopped (its whole process group: SIGTERM, SIGKILL after a grace)
and started again on the same port with the same command. Waiting for it to
answer is bounded by SERVER_START_TIMEOUT_S, because the prod start compiles
and builds the frontend again: that time is the server's, not the product's.
Once it answers, each tab reconnects within the frontend's retry backoff
(RECONNECT_BACKOFF_MAX_S), and from then on the product's bound applies.
"""

from __future__ import annotations

import time

import pytest
from browser_support import (
    CI_MARGIN_S,
    PROPAGATION_BOUND_S,
    RECONNECT_BACKOFF_MAX_S,
)

pytestmark = pytest.mark.browser

# Reconnect (backoff), hydrate and rejoin, then the fan-out: what a tab may
# take once the restarted server answers.
AFTER_RESTART_TIMEOUT_MS = int(
    (RECONNECT_BACKOFF_MAX_S + PROPAGATION_BOUND_S + CI_MARGIN_S) * 1000
)


def test_backend_restart_restores_presence(app, person, open_tab) -> None:
    a = open_tab(person(), app.url)
    observer = open_tab(person(), app.url)
    a.join_expecting("ann", "ann")
    observer.expect_count(1)

    a_hydrations, observer_hydrations = a.hydrations, observer.hydrations
    started = time.monotonic()
    app.restart()
    print(f"server back after {time.monotonic() - started:.1f} s")

    # Both tabs reconnect by themselves (no reload) and are hydrated again.
    a.wait_hydrated(a_hydrations, timeout=AFTER_RESTART_TIMEOUT_MS / 1000)
    observer.wait_hydrated(observer_hydrations, timeout=AFTER_RESTART_TIMEOUT_MS / 1000)
    a.expect_logged_in("ann", timeout=AFTER_RESTART_TIMEOUT_MS)
    for tab in (a, observer):
        tab.expect_count(1, timeout=AFTER_RESTART_TIMEOUT_MS)
        tab.expect_list(["ann"], timeout=AFTER_RESTART_TIMEOUT_MS)

    # A tab opened after the restart sees the same, and A still acts normally.
    late = open_tab(person(), app.url)
    late.expect_count(1)
    late.expect_list(["ann"])
    a.leave()
    for tab in (a, observer, late):
        tab.expect_count(0)

"""Tabs that come and go leave nothing behind: no entry, no state, no growth."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cycles import measure

CYCLES = 100
PARALLEL = 10
# The promise once tabs have gone: resident memory within 20 % of the start, or
# live Python allocations within 10 % (CPython may keep its heap). Tracing starts
# with the app module, so the traced baseline leaves out Reflex's import-time
# allocations and a small absolute growth is a large share of it.
RSS_GROWTH_BOUND = 0.20
TRACED_GROWTH_BOUND = 0.10


@pytest.mark.bench
def test_connect_join_leave_disconnect_cycles_leave_nothing_behind(tmp_path: Path):
    result = measure(CYCLES, PARALLEL, tmp_path)

    after = result["after"]
    assert after["online"] == 0
    assert after["connected_tabs"] == 0
    assert after["reflex_states"] == 0
    assert (
        result["rss_change"] < RSS_GROWTH_BOUND
        or result["traced_change"] < TRACED_GROWTH_BOUND
    ), result

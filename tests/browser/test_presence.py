"""What people see in real tabs: joining, leaving, names, several tabs, reloads.

Each test has a server of its own (the ``app`` fixture), so counts are exact.
Waits are bounded by the product's promise (a change reaches every other tab
within PROPAGATION_BOUND_S) plus CI_MARGIN_S; see browser_support.
"""

from __future__ import annotations

import itertools
import time

import pytest
from browser_support import (
    CLOSED_TAB_BOUND_S,
    EXPECT_TIMEOUT_MS,
    PAGE_READY_TIMEOUT_S,
    PROPAGATION_BOUND_S,
    Tab,
)
from playwright.sync_api import expect
from scenarios import two_people_join_and_one_leaves

pytestmark = pytest.mark.browser

# How often the observation loops read a tab, and the largest gap between two
# reads of the reload observation that still counts as watching: the product's
# bound. (Reads of B slow down while A's reload keeps the browser busy; 0.2 s
# gaps were measured here.)
POLL_INTERVAL_MS = 50
MAX_READ_GAP_S = 1.0


def count_text(n: int) -> str:
    return "1 user online" if n == 1 else f"{n} users online"


def observe_unchanged(tabs: list[Tab], count: int, window_s: float) -> None:
    """Assert that ``tabs`` keep showing ``count`` for ``window_s`` seconds.

    Only for asserting that something does NOT happen: whatever a refused
    action could have changed would reach every tab within the bound.
    """
    expected = count_text(count)
    deadline = time.monotonic() + window_s
    while True:
        for tab in tabs:
            seen = tab.count.text_content()
            assert seen == expected, f"{tab.page.url}: saw {seen!r}, not {expected!r}"
        if time.monotonic() > deadline:
            return
        tabs[0].page.wait_for_timeout(POLL_INTERVAL_MS)


def test_two_people_join_and_one_leaves(app, person, open_tab) -> None:
    """Scenario 1."""
    two_people_join_and_one_leaves(person, open_tab, app.url)


def test_one_user_with_two_tabs(app, person, open_tab) -> None:
    """Scenario 2: two tabs under one name are one user; each tab leaves alone."""
    someone = person()
    a = open_tab(someone, app.url)
    b = open_tab(someone, app.url)

    a.join_expecting("ann", "ann")
    b.expect_count(1)
    b.join_expecting("ann", "ann")
    for tab in (a, b):
        tab.expect_count(1)
        tab.expect_list(["ann · 2 tabs"])

    a.leave()
    for tab in (a, b):
        # The list losing "2 tabs" shows the change arrived; the count stays 1.
        tab.expect_list(["ann"])
        tab.expect_count(1)
    b.expect_logged_in("ann")

    b.leave()
    for tab in (a, b):
        tab.expect_count(0)
        tab.expect_list([])
        tab.expect_form()


def test_names_are_cleaned_checked_and_shown_literally(app, person, open_tab) -> None:
    """Scenario 3: spelling variants are one user; bad names change nothing;
    markup in a name is text."""
    a = open_tab(person(), app.url)
    b = open_tab(person(), app.url)

    a.join_expecting("  Ann ", "Ann")  # trimmed for display
    b.join_expecting("ann", "ann")  # the tab shows the name it typed...
    for tab in (a, b):
        tab.expect_count(1)  # ...but it is the same user,
        tab.expect_list(["Ann · 2 tabs"])  # listed under the first spelling

    refused = {
        "empty": "",
        "whitespace only": " \t  ",
        "33 characters": "x" * 33,
    }
    # A fresh tab for each name, so each message is known to be that name's.
    c_person = person()
    refusing_tabs = []
    for what, raw in refused.items():
        c = open_tab(c_person, app.url)
        c.join(raw)
        expect(c.name_error, f"no message for the {what} name").to_be_visible(
            timeout=EXPECT_TIMEOUT_MS
        )
        assert (c.name_error.text_content() or "").strip(), f"{what}: empty message"
        if what == "33 characters":
            expect(c.name_error).to_contain_text("32", timeout=EXPECT_TIMEOUT_MS)
        c.expect_form()
        c.expect_count(1)
        refusing_tabs.append(c)
    # Had any refused name joined, every tab would show it within the bound.
    observe_unchanged([a, b, *refusing_tabs], 1, PROPAGATION_BOUND_S)
    for tab in (a, b):
        tab.expect_list(["Ann · 2 tabs"])

    markup = "<b>x</b>"
    d = open_tab(person(), app.url)
    d.join_expecting(markup, markup)
    strong = d.logged_in_line.locator("strong")
    assert strong.text_content() == markup
    expect(strong.locator("b")).to_have_count(0, timeout=EXPECT_TIMEOUT_MS)
    for tab in (a, b, d):
        tab.expect_count(2)
        tab.expect_list(["Ann · 2 tabs", markup])
        expect(tab.page.locator("#online-list b")).to_have_count(
            0, timeout=EXPECT_TIMEOUT_MS
        )
        names = tab.list_items.locator("span").first
        assert tab.list_items.nth(1).locator("span").first.text_content() == markup
        assert names.text_content() == "Ann"

    for tab in (a, b, d):
        tab.leave()
    a.expect_count(0)


def test_reload_keeps_the_tab_joined(app, person, open_tab) -> None:
    """Scenario 4: a reloading tab stays joined and no one sees it flicker.

    B's count is read every POLL_INTERVAL_MS from just before A reloads until
    A is hydrated again and showing its name, and on until CLOSED_TAB_BOUND_S
    after the reload began: a reload that lost the tab would show as the old
    connection expiring within that window.
    """
    a = open_tab(person(), app.url)
    b = open_tab(person(), app.url)
    a.join_expecting("dora", "dora")
    b.expect_count(1)
    b.expect_list(["dora"])

    hydrations_before = a.hydrations
    seen_by_b: list[tuple[float, str | None]] = []
    start = time.monotonic()
    # Not page.reload(): it would block until the load event, with no reads of
    # B. Nothing in the loop touches A's page either (that would wait for A's
    # new document); A is back when the backend has hydrated it again, which
    # the Tab notices from the socket frames.
    a.page.evaluate("setTimeout(() => location.reload(), 0)")
    a_back_at = None
    while True:
        now = time.monotonic() - start
        seen_by_b.append((now, b.count.text_content()))
        if a_back_at is None and a.hydrations > hydrations_before:
            a_back_at = now
        if a_back_at is not None and now > CLOSED_TAB_BOUND_S + 1.0:
            break
        assert now < PAGE_READY_TIMEOUT_S, "the reloaded tab was never hydrated again"
        b.page.wait_for_timeout(POLL_INTERVAL_MS)

    wrong = [(round(t, 2), text) for t, text in seen_by_b if text != "1 user online"]
    assert not wrong, f"B saw the count change during A's reload: {wrong}"
    times = [t for t, _ in seen_by_b]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    during_reload = sum(1 for t in times if t <= a_back_at)
    print(
        f"A hydrated again after {a_back_at:.2f} s; B read {len(times)} times"
        f" ({during_reload} before that), largest gap {max(gaps):.3f} s"
    )
    assert during_reload >= 2, f"B was not read while A reloaded: {seen_by_b}"
    assert max(gaps) < MAX_READ_GAP_S, f"B was read too seldom: {seen_by_b}"

    a.expect_logged_in("dora")
    for tab in (a, b):
        tab.expect_count(1)
        tab.expect_list(["dora"])
    a.leave()
    b.expect_count(0)

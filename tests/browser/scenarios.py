"""Scenarios shared by more than one test module (the same steps, other servers)."""

from __future__ import annotations

from collections.abc import Callable

from browser_support import Tab


def two_people_join_and_one_leaves(
    person: Callable[[], object], open_tab: Callable[..., Tab], url: str
) -> None:
    """Scenario 1: A joins, B watches then joins, A leaves; every tab agrees."""
    a = open_tab(person(), url)
    b = open_tab(person(), url)
    a.expect_count(0)
    b.expect_count(0)
    b.expect_list([])

    a.join_expecting("ann", "ann")
    b.expect_count(1)
    b.expect_list(["ann"])
    a.expect_count(1)

    b.join_expecting("bob", "bob")
    for tab in (a, b):
        tab.expect_count(2)
        tab.expect_list(["ann", "bob"])

    a.leave()
    for tab in (a, b):
        tab.expect_count(1)
        tab.expect_list(["bob"])
    a.expect_form()
    b.expect_logged_in("bob")

    b.leave()
    for tab in (a, b):
        tab.expect_count(0)
        tab.expect_list([])

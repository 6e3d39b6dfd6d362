"""Fixtures for the browser tests: Chromium, fresh app servers, people and tabs.

Every test gets a server of its own (``app``): the registry lives in the
server's memory, so a fresh server is the only way to assert the exact counts a
person sees. A warm start takes a few seconds (prod compiles and builds the
frontend each time); the first start of a fresh clone also runs npm install.

Under CI (``CI=true``) nothing here skips: a missing Chromium is an error.
Elsewhere the browser tests skip when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ServerProcess,
    Tab,
    app_server,
    free_port,
    private_project,
)

_MISSING_CHROMIUM = (
    f"Chromium not found at {CHROMIUM}: install the Debian package `chromium`"
    " (sudo apt-get install chromium)"
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(config, items) -> None:
    if _in_ci() or Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(reason=_MISSING_CHROMIUM)
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module."""
    if not Path(CHROMIUM).exists():
        # Only reached under CI, where a skip would hide the missing browser.
        pytest.fail(_MISSING_CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's copy of the project, with a .web of its own."""
    return private_project(tmp_path_factory.getbasetemp())


@pytest.fixture
def server_log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Iterator[list[ServerProcess]]:
    """Servers a test started; stopped (whole process group) at teardown."""
    started: list[ServerProcess] = []
    request.node._browser_servers = started
    try:
        yield started
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture
def app(servers: list[ServerProcess], server_log_dir: Path) -> ServerProcess:
    """A fresh production server of the app that only this test uses."""
    port = free_port()
    server = app_server(port, server_log_dir / "reflex.log")
    servers.append(server)
    return server.start()


@pytest.fixture
def person(browser) -> Iterator[Callable[[], object]]:
    """Make a new person: a browser context of their own (closed at teardown)."""
    contexts = []

    def new_person():
        context = browser.new_context()
        contexts.append(context)
        return context

    try:
        yield new_person
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def open_tab() -> Callable[..., Tab]:
    """Open the app in a new tab of ``context`` and wait until it is hydrated."""

    def open_(context, url: str) -> Tab:
        return Tab(context.new_page()).open(url)

    return open_


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    servers = getattr(item, "_browser_servers", None)
    if report.failed and servers:
        for server in servers:
            report.sections.append((f"log of {server.name}", server.log_tail()))
    return report

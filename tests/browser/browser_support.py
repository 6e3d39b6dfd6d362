"""Servers and tabs for the browser tests: no pytest in here, only the mechanics.

- ``ServerProcess`` runs one command (``reflex run ...`` or a static file
  server) in a process group of its own, logs to a file and waits until an URL
  answers. ``stop`` ends the whole group, so granian workers never outlive it.
- ``Tab`` is one browser tab (a Playwright page) that knows when Reflex has
  hydrated it: the backend's answer to the boot event carries
  ``is_hydrated_rx_state_: true``. Before that, the page shows the prerendered
  defaults ("0 users online", the join form) and React has not attached its
  handlers, so a click on Join would submit the form natively.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from playwright.sync_api import Page, WebSocket, expect

ROOT = Path(__file__).resolve().parents[2]

# The product's bound: a change reaches every other tab within 1 s.
PROPAGATION_BOUND_S = 1.0
# Extra time allowed on a slow, shared CI machine (two cores, a build running).
CI_MARGIN_S = 4.0
# What an assertion waits for a change to show up, in Playwright's milliseconds.
EXPECT_TIMEOUT_MS = int((PROPAGATION_BOUND_S + CI_MARGIN_S) * 1000)

# The app's promise for a tab that goes away without Leave (CLOSE_BOUND in
# presence_app/settings.py: grace + sweep + fan-out + transit). Used only as an
# observation window: a reload must not make the tab expire once it is over.
CLOSED_TAB_BOUND_S = 5.0

# Starting the server is not the product's bound: ``reflex run --env prod``
# compiles and builds the frontend first, and in a fresh clone it also runs
# ``npm install``. Measured here: ~6 s warm, ~30 s in a fresh clone.
SERVER_START_TIMEOUT_S = 300.0
# A tab's first load (HTML, scripts, socket connect, hydrate) on a slow machine.
PAGE_READY_TIMEOUT_S = 30.0
# The frontend retries a lost socket every 200 ms x failed attempts, at most
# every 2 s (state.js, retryConnect); after the server is back, a tab is
# connected within that, then the usual bound applies.
RECONNECT_BACKOFF_MAX_S = 2.0

# How long ``stop`` waits after SIGTERM before SIGKILL.
STOP_GRACE_S = 10.0

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def server_env() -> dict[str, str]:
    """The environment scripts/env.sh sets up, on top of ours."""
    env = dict(os.environ)
    venv_bin = ROOT / ".venv" / "bin"
    if venv_bin.is_dir():
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("REFLEX_USE_NPM", "1")
    env.setdefault("REFLEX_TELEMETRY_ENABLED", "false")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def reflex_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "reflex", *args]


class ServerError(RuntimeError):
    pass


class ServerProcess:
    """One long-running command in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        ready_url: str,
        log_path: Path,
        cwd: Path = ROOT,
        env: dict[str, str] | None = None,
        url: str = "",
    ) -> None:
        self.name = name
        self.url = url  # where a browser opens it, if it serves pages
        self.command = list(command)
        self.ready_url = ready_url
        self.log_path = log_path
        self.cwd = cwd
        self.env = env if env is not None else server_env()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = SERVER_START_TIMEOUT_S) -> ServerProcess:
        if self.process is not None:
            raise ServerError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {self.name}: {' '.join(self.command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.process.returncode} before"
                    f" answering {self.ready_url}\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.ready_url, timeout=2) as response,
            ):
                if response.status == 200:
                    return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.name} did not answer {self.ready_url} within"
                    f" {timeout:g} s\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """End the whole process group: SIGTERM, then SIGKILL after a grace."""
        process, self.process = self.process, None
        if process is None:
            return
        pgid = process.pid  # start_new_session: the leader's pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while _group_alive(pgid, process) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_alive(pgid, process):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_S)
        deadline = time.monotonic() + STOP_GRACE_S
        while _group_alive(pgid, process) and time.monotonic() < deadline:
            time.sleep(0.1)

    def restart(self, timeout: float = SERVER_START_TIMEOUT_S) -> ServerProcess:
        self.stop()
        return self.start(timeout)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as err:
            return f"(no log: {err})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"


def _group_alive(pgid: int, leader: subprocess.Popen[bytes]) -> bool:
    leader.poll()  # reap the leader, or it stays a zombie member of the group
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def app_server(port: int, log_path: Path) -> ServerProcess:
    """The app as ``scripts/run`` serves it: prod, frontend and backend on one port."""
    return ServerProcess(
        "reflex (prod, one port)",
        reflex_command(
            "run",
            "--env",
            "prod",
            "--frontend-port",
            str(port),
            "--backend-port",
            str(port),
        ),
        ready_url=f"http://127.0.0.1:{port}/",
        log_path=log_path,
        url=f"http://localhost:{port}/",
    )


def backend_server(port: int, log_path: Path) -> ServerProcess:
    """The backend alone, beside a statically served export."""
    return ServerProcess(
        "reflex (prod, backend only)",
        reflex_command(
            "run", "--env", "prod", "--backend-only", "--backend-port", str(port)
        ),
        ready_url=f"http://127.0.0.1:{port}/ping",
        log_path=log_path,
    )


def static_server(directory: Path, port: int, log_path: Path) -> ServerProcess:
    """A plain static file server, as any web server would host the export."""
    return ServerProcess(
        "static files",
        [sys.executable, "-m", "http.server", str(port), "--directory", str(directory)],
        ready_url=f"http://127.0.0.1:{port}/",
        log_path=log_path,
        url=f"http://localhost:{port}/",
    )


_HYDRATED = re.compile(r'"is_hydrated_rx_state_"\s*:\s*true')


class Tab:
    """One browser tab of the app, with the locators a person would use."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.hydrations = 0
        # The last things this tab logged, for a failure message.
        self.journal: collections.deque[str] = collections.deque(maxlen=40)
        page.on("websocket", self._watch_socket)
        page.on("console", lambda msg: self._note(f"console {msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: self._note(f"page error: {err}"))

    def _note(self, line: str) -> None:
        self.journal.append(f"{time.monotonic():.3f} {line[:300]}")

    def _watch_socket(self, ws: WebSocket) -> None:
        self._note(f"websocket opened: {ws.url}")
        ws.on("framereceived", self._on_frame)
        ws.on("framesent", lambda payload: self._note(f"sent: {payload!s}"))
        ws.on("close", lambda _ws: self._note("websocket closed"))

    def _on_frame(self, payload: str | bytes) -> None:
        self._note(f"received: {payload!s}")
        if isinstance(payload, str) and _HYDRATED.search(payload):
            self.hydrations += 1

    # --- waiting -----------------------------------------------------------

    def wait_hydrated(self, after: int, timeout: float = PAGE_READY_TIMEOUT_S) -> None:
        """Wait until the backend has hydrated this tab more than ``after`` times."""
        deadline = time.monotonic() + timeout
        while self.hydrations <= after:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"tab at {self.page.url} was not hydrated within {timeout:g} s;"
                    " its journal:\n" + "\n".join(self.journal)
                )
            self.page.wait_for_timeout(25)  # lets Playwright deliver socket events

    def open(self, url: str) -> Tab:
        seen = self.hydrations
        self.page.goto(url)
        self.wait_hydrated(seen)
        return self

    def reload(self) -> None:
        seen = self.hydrations
        self.page.reload()
        self.wait_hydrated(seen)

    # --- what a person reads -----------------------------------------------

    @property
    def count(self):
        return self.page.locator("#online-count")

    @property
    def logged_in_line(self):
        return self.page.get_by_text("Logged in as")

    @property
    def username_input(self):
        return self.page.get_by_label("Username")

    @property
    def join_button(self):
        return self.page.get_by_role("button", name="Join")

    @property
    def leave_button(self):
        return self.page.get_by_role("button", name="Leave")

    @property
    def name_error(self):
        return self.page.locator("#name-error")

    @property
    def list_items(self):
        return self.page.locator("#online-list > li")

    @property
    def nobody_online(self):
        return self.page.locator("#nobody-online")

    # --- what a person does ------------------------------------------------

    def join(self, name: str) -> None:
        self.username_input.fill(name)
        self.join_button.click()

    def join_expecting(self, name: str, shown: str) -> None:
        """Join and wait until this tab says it is logged in as ``shown``."""
        self.join(name)
        self.expect_logged_in(shown)

    def leave(self) -> None:
        self.leave_button.click()
        self.expect_form()

    # --- assertions --------------------------------------------------------

    def expect_count(self, n: int, timeout: int = EXPECT_TIMEOUT_MS) -> None:
        text = "1 user online" if n == 1 else f"{n} users online"
        expect(self.count).to_have_text(text, timeout=timeout)

    def expect_logged_in(self, name: str, timeout: int = EXPECT_TIMEOUT_MS) -> None:
        line = self.logged_in_line
        expect(line).to_have_text(f"Logged in as {name}", timeout=timeout)
        expect(line.locator("strong")).to_have_text(name, timeout=timeout)
        expect(self.leave_button).to_be_visible(timeout=timeout)
        expect(self.username_input).to_have_count(0, timeout=timeout)

    def expect_form(self, timeout: int = EXPECT_TIMEOUT_MS) -> None:
        expect(self.username_input).to_be_visible(timeout=timeout)
        expect(self.join_button).to_be_visible(timeout=timeout)
        expect(self.logged_in_line).to_have_count(0, timeout=timeout)
        expect(self.leave_button).to_have_count(0, timeout=timeout)

    def expect_list(self, entries: list[str], timeout: int = EXPECT_TIMEOUT_MS) -> None:
        expect(self.list_items).to_have_text(entries, timeout=timeout)
        if entries:
            expect(self.nobody_online).to_have_count(0, timeout=timeout)
        else:
            expect(self.nobody_online).to_contain_text(
                "Nobody is online", timeout=timeout
            )

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
import dataclasses
import os
import re
import shutil
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

from tests.support.project_files import copy_project_files

ROOT = Path(__file__).resolve().parents[2]

# The product's bound: a change reaches every other tab within 1 s.
PROPAGATION_BOUND_S = 1.0
# Extra time allowed on a slow, shared CI machine (two cores, a build running).
CI_MARGIN_S = 4.0
# What an assertion waits for a change to show up, in Playwright's milliseconds.
EXPECT_TIMEOUT_MS = int((PROPAGATION_BOUND_S + CI_MARGIN_S) * 1000)


def wait_ms(bound_s: float) -> int:
    """Playwright timeout for something promised within ``bound_s``."""
    return int((bound_s + CI_MARGIN_S) * 1000)


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


# --- Lifecycle tests: a private copy of the project, tabs that record themselves.
#
# ``reflex run --env prod`` builds the frontend into the project's .web and then
# serves those files from disk on every request, with the backend address baked
# in. Two servers started from the same folder therefore share one build: the
# later build replaces the files the earlier server is serving, and pages loaded
# from it then talk to the other server. The lifecycle tests run their servers
# in a copy of the project with a .web of its own (``private_project``), so they
# neither disturb nor are disturbed by servers other tests start concurrently,
# and one of them can bake in a proxy's address.


# The app's promises for tabs that go away (the issue "No ghosts"), as another
# tab sees them; see presence_app/settings.py and the README.
GRACE_S = 3.0  # PRESENCE_GRACE, default
SILENT_LOSS_BOUND_S = 30.0  # PRESENCE_SILENT_LOSS, default
# A freshly loaded page holding a live tab's identity waits this long to tell a
# duplicated tab from a reload (COPY_WAIT in presence_app/state.py).
COPY_WAIT_S = 1.5
# After a backend restart, once the backend answers again, every tab's count
# is right within this (plus the frontend's reconnect backoff).
RESTART_BOUND_S = 10.0
# A measured time is read from the observing page's own timestamps of its DOM
# changes (``Recorder``), so no polling delay is in it; the margin covers only
# the scheduling of a loaded two-core machine on top of the promised bound.
MEASURED_MARGIN_S = 1.0


def private_project(base: Path, root: Path = ROOT) -> Path:
    """A copy of the project in ``base/project`` to run servers from.

    The project's files as they are in the working tree (tracked, and new ones
    not ignored) and its .web without the build output, so that no packages are
    installed again. Made once per ``base``; later calls return the same copy.
    """
    dest = base / "project"
    done = dest / ".copy-complete"
    if done.exists():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    copy_project_files(root, dest)
    web = root / ".web"
    if web.is_dir():
        subprocess.run(
            ["cp", "-a", str(web), str(dest / ".web")], check=True, capture_output=True
        )
        shutil.rmtree(dest / ".web" / "build", ignore_errors=True)
    done.write_text(str(root))
    return dest


def app_server_at(
    project: Path, port: int, log_path: Path, env: dict[str, str] | None = None
) -> ServerProcess:
    """``app_server`` run from ``project`` (a ``private_project``), plus ``env``."""
    server = app_server(port, log_path)
    server.cwd = project
    server.env = {**server_env(), **(env or {})}
    return server


def client_token(tab: Tab) -> str:
    """The Reflex client token the tab holds now (its session storage)."""
    return tab.page.evaluate("() => window.sessionStorage.getItem('token')")


def duplicate_tab(tab: Tab) -> Tab:
    """Open a copy of ``tab`` as a page script does (``window.open``).

    Like the browser's Duplicate, the copy starts with the original's session
    storage, so it presents the original's token and identity.
    """
    with tab.page.context.expect_page() as popup:
        tab.page.evaluate("() => { window.open(location.href); }")
    copy = Tab(popup.value)
    expect(copy.count).to_have_text(
        re.compile(r"^\d+ users? online$"), timeout=int(PAGE_READY_TIMEOUT_S * 1000)
    )
    return copy


def count_text(n: int) -> str:
    return "1 user online" if n == 1 else f"{n} users online"


_COUNT = re.compile(r"^(\d+) users? online$")


@dataclasses.dataclass(frozen=True)
class Seen:
    """What a tab showed from time ``t`` (seconds since the epoch) on."""

    t: float
    count: int | None  # None while "Connecting…" (or no count line)
    users: tuple[str, ...]
    logged_in: str | None  # the "Logged in as ..." line, if shown
    form: bool  # the join form is shown

    def __str__(self) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(self.t))
        millis = int(self.t % 1 * 1000)
        state = self.logged_in or ("form" if self.form else "-")
        return f"{clock}.{millis:03d} count={self.count} {list(self.users)} [{state}]"


_RECORDER_JS = """
() => {
  if (window.__presence) return;
  const rec = (window.__presence = {log: [], ticks: 0, maxGap: 0, lastTick: 0});
  const snapshot = () => {
    const count = document.querySelector('#online-count');
    const users = [...document.querySelectorAll('#online-list > li')]
      .map((li) => li.textContent);
    const line = [...document.querySelectorAll('p')]
      .find((p) => p.textContent.startsWith('Logged in as'));
    return {
      count: count ? count.textContent : null,
      users,
      loggedIn: line ? line.textContent : null,
      form: !!document.querySelector('#username-input'),
    };
  };
  let last = '';
  const record = () => {
    const seen = snapshot();
    const key = JSON.stringify(seen);
    if (key !== last) {
      last = key;
      rec.log.push({t: Date.now() / 1000, ...seen});
    }
  };
  record();
  // The document, not its body: this also runs as an init script, before
  // the body exists.
  new MutationObserver(record).observe(document, {
    subtree: true, childList: true, characterData: true,
  });
  // Also a read every 50 ms, whose gaps show the page was watching all along.
  rec.lastTick = performance.now();
  setInterval(() => {
    const now = performance.now();
    rec.maxGap = Math.max(rec.maxGap, now - rec.lastTick);
    rec.lastTick = now;
    rec.ticks += 1;
    record();
  }, 50);
}
"""


def record_every_page(context) -> None:
    """Make every page of ``context`` record itself from its first moment on.

    Pages opened later (a popup too) and every new document of a page after a
    reload start recording before their own scripts run; see ``Recorder``.
    """
    context.add_init_script(script=f"({_RECORDER_JS.strip()})();")


class Recorder:
    """Everything one tab shows, recorded by the page itself at each DOM change.

    A MutationObserver notes the count line, the list, the logged-in line and
    the form whenever any of them changes (plus a read every 50 ms), with the
    page's own timestamp: a change is seen however briefly it is shown, and
    when it happened is known without polling. Each document has its own
    recording: a reload starts a new one (``record_every_page``), or ends it.
    """

    def __init__(self, tab: Tab) -> None:
        self.tab = tab
        tab.page.evaluate(_RECORDER_JS)

    def seen(self) -> list[Seen]:
        raw = self.tab.page.evaluate("() => window.__presence.log")
        return [
            Seen(
                t=entry["t"],
                count=_count_of(entry["count"]),
                users=tuple(entry["users"]),
                logged_in=entry["loggedIn"],
                form=entry["form"],
            )
            for entry in raw
        ]

    def largest_gap_s(self) -> float:
        """The longest time between two of the page's 50 ms reads."""
        return self.tab.page.evaluate("() => window.__presence.maxGap") / 1000

    def since(self, t: float) -> list[Seen]:
        """What the tab showed from ``t`` on: the state at ``t``, then changes."""
        seen = self.seen()
        before = [s for s in seen if s.t <= t]
        return before[-1:] + [s for s in seen if s.t > t]

    def first_time(self, predicate, since: float) -> float | None:
        """When the tab first showed something ``predicate`` accepts after ``since``."""
        for s in self.since(since):
            if predicate(s):
                return max(s.t, since)
        return None


def _count_of(text: str | None) -> int | None:
    match = _COUNT.match(text or "")
    return int(match.group(1)) if match else None


def describe(seen: list[Seen]) -> str:
    return "\n".join(f"  {s}" for s in seen)

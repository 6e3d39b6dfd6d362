"""Several backend workers on Redis, as ``scripts/serve`` runs them: the mechanics.

No pytest in here. ``test_workers.py`` uses:

- ``copy_project``: ``scripts/serve`` runs ``reflex export``, which rewrites the
  project's ``.web``; other servers may be running from it, so the cluster is
  served from a copy (``build/workers-src``, ignored by git; its ``.web`` is
  kept between runs so the JavaScript packages are installed once).
- ``workers_server``: ``scripts/serve`` in that copy, in a process group of its
  own (``ServerProcess``), with ``worker_pids`` and ``spawned_pids`` to see
  which granian workers live and which were ever started.
- ``RegistryProbe``: a ``RedisRegistry`` (the app's own class, prefix
  ``presence:``) driven from the synchronous tests on a thread of its own, the
  way an operator would read ``workers()`` and ``presence()``.
- ``WatchedTab``: a ``Tab`` that keeps every received frame carrying the
  online count, and reads what the page shows in one go (``snapshot``).
- ``consistency_problems``: the promise after any failure: each tab is joined
  and counted once, or shows the form and is not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from browser_support import ROOT, ServerProcess, Tab, server_env

from presence_app.registry import RegistryUnavailableError, create_registry
from tests.support.project_files import copy_project_files

# Where the cluster is served from (build/ is ignored by git). Everything but
# .web is replaced by a fresh copy at each start.
WORKERS_SRC = ROOT / "build" / "workers-src"
_KEPT_IN_COPY = {".web"}

# The prefix the app uses by default (PRESENCE_REDIS_PREFIX).
PRESENCE_PREFIX = "presence:"
HOSTNAME = os.uname().nodename

_SPAWNED = re.compile(r"Spawning worker-(\d+) with PID: (\d+)")
_COUNT_FIELD = re.compile(r'"online_count_rx_state_"\s*:\s*(\d+)')


# --- the cluster ---------------------------------------------------------------


def copy_project(dest: Path = WORKERS_SRC) -> Path:
    """Copy the git-tracked and untracked-not-ignored files to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in dest.iterdir():
        if entry.name in _KEPT_IN_COPY:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    copy_project_files(ROOT, dest)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def workers_server(
    source: Path, redis_url: str, port: int, workers: int, log_path: Path
) -> ServerProcess:
    """``scripts/serve`` in ``source``: the frontend export, then granian."""
    env = server_env()
    env.pop("PRESENCE_REDIS_PREFIX", None)  # the probe reads the default prefix
    env.update(
        REFLEX_REDIS_URL=redis_url,
        WORKERS=str(workers),
        PORT=str(port),
        API_URL=f"http://localhost:{port}",
    )
    return ServerProcess(
        f"scripts/serve ({workers} granian workers on Redis)",
        [str(source / "scripts" / "serve")],
        ready_url=f"http://127.0.0.1:{port}/",
        log_path=log_path,
        cwd=source,
        env=env,
        url=f"http://localhost:{port}/",
    )


def worker_pids(server: ServerProcess) -> set[int]:
    """The live granian workers: the children of the main process.

    ``scripts/serve`` execs granian, so the process the server started is
    granian's main process.
    """
    assert server.process is not None, "the cluster is not running"
    main = server.process.pid
    pids: set[int] = set()
    for children in Path(f"/proc/{main}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in children.read_text().split())
    return {pid for pid in pids if _is_alive(pid)}


def _is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def spawned_pids(server: ServerProcess) -> list[int]:
    """Every worker granian logged as spawned, in order (respawns included)."""
    text = server.log_path.read_text(errors="replace")
    return [int(pid) for _, pid in _SPAWNED.findall(text)]


def worker_pid(worker_id: str) -> int:
    """The pid in a registry worker id ("hostname:pid")."""
    host, _, pid = worker_id.rpartition(":")
    assert host == HOSTNAME, f"worker {worker_id!r} is not on this host"
    return int(pid)


def worker_stats(url: str, tries: int = 8) -> dict[int, dict]:
    """``/_presence/stats`` of whichever workers answer ``tries`` requests."""
    seen: dict[int, dict] = {}
    for _ in range(tries):
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(url + "_presence/stats", timeout=2) as reply:
                stats = json.load(reply)
            seen[stats["pid"]] = stats
    return seen


def log_lines(server: ServerProcess, since: int = 0) -> list[str]:
    """The server log from line ``since`` on, repeated lines folded."""
    lines = server.log_path.read_text(errors="replace").splitlines()[since:]
    folded: list[str] = []
    repeats = 0
    for line in lines:
        if folded and line == folded[-1]:
            repeats += 1
            continue
        if repeats:
            folded.append(f"    (the line above {repeats} more times)")
            repeats = 0
        folded.append(line)
    if repeats:
        folded.append(f"    (the line above {repeats} more times)")
    return folded


def log_length(server: ServerProcess) -> int:
    return len(server.log_path.read_text(errors="replace").splitlines())


# --- the registry, as an operator reads it ----------------------------------------


class RegistryProbe:
    """The app's RedisRegistry, run on a thread with its own event loop.

    The Playwright sync API owns the test thread's loop, so the registry's
    coroutines run elsewhere and the tests wait for their results.
    """

    CALL_TIMEOUT_S = 10.0

    def __init__(self, redis_url: str, prefix: str = PRESENCE_PREFIX) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.registry = self._call(lambda: _make_registry(redis_url, prefix))

    def _call(self, make_coro: Callable[[], object]):
        future = asyncio.run_coroutine_threadsafe(make_coro(), self._loop)
        return future.result(self.CALL_TIMEOUT_S)

    def workers(self) -> dict[str, str]:
        """{tab: worker id} of every entry."""
        return self._call(self.registry.workers)

    def online_names(self) -> list[str]:
        return [user.name for user in self._call(self.registry.presence).users]

    def integrity_problems(self) -> list[str]:
        """Whether the registry's own bookkeeping agrees with its entries.

        An entry removed twice (once per worker) would take its user's tab
        count down twice: ``counts`` would no longer match ``tabs``.
        """

        async def read():
            client, keys = self.registry.client, self.registry._keys
            async with client.pipeline(transaction=True) as pipe:
                pipe.hvals(keys[0])
                pipe.hgetall(keys[3])
                pipe.hkeys(keys[2])
                pipe.zrange(keys[1], 0, -1)
                pipe.hkeys(keys[0])
                return await pipe.execute()

        entries, counts, names, seen, tabs = self._call(read)
        per_user: dict[str, int] = {}
        for raw in entries:
            key = json.loads(raw)[0]
            per_user[key] = per_user.get(key, 0) + 1
        counted = {k.decode(): int(v) for k, v in counts.items()}
        problems = []
        if counted != per_user:
            problems.append(f"counts {counted} != tabs per user {per_user}")
        if {n.decode() for n in names} != set(per_user):
            problems.append(f"names {sorted(names)} != users {sorted(per_user)}")
        if {s.decode() for s in seen} != {t.decode() for t in tabs}:
            problems.append("the seen set and the entries hold different tabs")
        return problems

    def wait(
        self, what: str, check: Callable[[], bool], timeout: float, poll: float = 0.2
    ) -> float:
        """Poll ``check`` (registry errors count as not yet); return the time taken."""
        start = time.monotonic()
        last_error: BaseException | None = None
        while True:
            try:
                if check():
                    return time.monotonic() - start
            except (RegistryUnavailableError, TimeoutError) as error:
                last_error = error
            if time.monotonic() - start > timeout:
                raise AssertionError(
                    f"{what}: not within {timeout:g} s (last registry error:"
                    f" {last_error}); entries: {self._safe_workers()}"
                )
            time.sleep(poll)

    def _safe_workers(self) -> object:
        try:
            return self.workers()
        except Exception as error:  # a diagnostic only
            return f"(unreadable: {error})"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self.registry.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


async def _make_registry(redis_url: str, prefix: str):
    return create_registry(redis_url, prefix=prefix)


# --- tabs ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CountFrame:
    at: float  # time.monotonic() when Playwright delivered it
    count: int


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What one tab shows, read in one evaluation."""

    logged_in: str | None  # the name after "Logged in as", if shown
    form: bool  # the join form (input and Join button) is shown
    leave: bool
    count_text: str | None
    listed: tuple[str, ...]
    notice: str | None

    @property
    def count(self) -> int | None:
        match = re.fullmatch(r"(\d+) users? online", self.count_text or "")
        return int(match.group(1)) if match else None


_SNAPSHOT_JS = """() => {
  const q = (s) => document.querySelector(s);
  const strong = Array.from(document.querySelectorAll('strong')).find(
    (s) => (s.parentElement?.textContent ?? '').startsWith('Logged in as'));
  return {
    logged_in: strong ? strong.textContent : null,
    form: !!q('#username-input') && !!q('#join-button'),
    leave: !!q('#leave-button'),
    count_text: q('#online-count')?.textContent ?? null,
    listed: Array.from(document.querySelectorAll('#online-list > li')).map(
      (li) => li.querySelector('span')?.textContent ?? ''),
    notice: q('#notice')?.textContent ?? null,
  };
}"""


# Logs each new text of the count line with the page's clock.
_COUNT_LOG_JS = """() => {
  window.__countLog = [];
  const read = () => document.querySelector('#online-count')?.textContent;
  let last = read();
  new MutationObserver(() => {
    const now = read();
    if (now !== last) {
      last = now;
      window.__countLog.push([now, Date.now()]);
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


class WatchedTab(Tab):
    """A Tab that also keeps the online count of every update it receives."""

    def __init__(self, page, name: str = "") -> None:
        self.name = name  # the name this tab joins (or would join) under
        self.count_frames: list[CountFrame] = []
        self.hydrated_at: list[float] = []
        super().__init__(page)

    def _on_frame(self, payload: str | bytes) -> None:
        hydrations = self.hydrations
        super()._on_frame(payload)
        if self.hydrations > hydrations:
            self.hydrated_at.append(time.monotonic())
        if isinstance(payload, bytes):
            return
        match = _COUNT_FIELD.search(payload)
        if match:
            self.count_frames.append(CountFrame(time.monotonic(), int(match.group(1))))

    def token(self) -> str:
        return self.page.evaluate("() => window.sessionStorage.getItem('token')")

    def snapshot(self) -> Snapshot:
        data = self.page.evaluate(_SNAPSHOT_JS)
        data["listed"] = tuple(data["listed"])
        return Snapshot(**data)

    # In-page clocks, for measuring a change crossing from one tab to another
    # without the test's polling in the measure. Pages of one browser share
    # the system clock (Date.now()).

    def record_submits(self) -> None:
        self.page.evaluate(
            """() => { window.__submitAt = null;
              document.addEventListener('submit',
                () => { window.__submitAt = Date.now(); }, {capture: true}); }"""
        )

    def submitted_at_ms(self) -> float:
        return self.page.evaluate("() => window.__submitAt")

    def record_count_changes(self) -> None:
        self.page.evaluate(_COUNT_LOG_JS)

    def count_shown_at_ms(self, text: str, after_ms: float) -> float | None:
        log = self.page.evaluate("() => window.__countLog")
        return next((t for shown, t in log if shown == text and t >= after_ms), None)


def open_watched(context, url: str, name: str = "") -> WatchedTab:
    return WatchedTab(context.new_page(), name).open(url)


# --- the promise after a failure --------------------------------------------------


def consistency_problems(
    snapshots: dict[str, Snapshot], registry_names: Iterable[str] | None
) -> list[str]:
    """Each tab joined and counted once, or showing the form and not counted.

    ``snapshots`` maps each tab's own name (distinct per tab) to what it shows;
    ``registry_names`` is who the registry says is online (None: unreadable).
    """
    problems: list[str] = []
    joined = set()
    for name, snap in snapshots.items():
        if snap.count is None:
            problems.append(f"{name}: no count shown ({snap.count_text!r})")
        if snap.logged_in is not None and snap.form:
            problems.append(f"{name}: shows both 'Logged in as' and the form")
        elif snap.logged_in is None and not snap.form:
            problems.append(f"{name}: shows neither 'Logged in as' nor the form")
        if snap.logged_in is not None:
            if snap.logged_in != name:
                problems.append(f"{name}: logged in as {snap.logged_in!r}")
            joined.add(snap.logged_in)
    for name, snap in snapshots.items():
        if len(set(snap.listed)) != len(snap.listed):
            problems.append(f"{name}: lists someone twice: {list(snap.listed)}")
        if set(snap.listed) != joined:
            missing = sorted(joined - set(snap.listed))
            extra = sorted(set(snap.listed) - joined)
            problems.append(
                f"{name}: lists {list(snap.listed)}; missing joined {missing},"
                f" counts tabs showing the form or gone {extra}"
            )
        if snap.count is not None and snap.count != len(joined):
            problems.append(f"{name}: shows {snap.count} online, {len(joined)} joined")
    if registry_names is None:
        problems.append("the registry could not be read")
    else:
        names = list(registry_names)
        if sorted(names) != sorted(joined):
            problems.append(
                f"the registry holds {sorted(names)}, the tabs show joined"
                f" {sorted(joined)}"
            )
    return problems


def describe(snapshots: dict[str, Snapshot]) -> str:
    return "\n".join(
        f"  {name}: "
        + (f"Logged in as {s.logged_in}" if s.logged_in is not None else "")
        + (" [form]" if s.form else "")
        + f" | {s.count_text} | list {list(s.listed)}"
        + (f" | notice {s.notice!r}" if s.notice else "")
        for name, s in snapshots.items()
    )

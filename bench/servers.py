"""The servers under test: the app (from a copy of the project) and the floor.

The app runs from a copy so that its ``.web/`` and ``.states/`` are its own:
other processes run ``reflex run`` in the repository at the same time. Each
server runs in a process group of its own, so stopping it also stops granian's
workers.

The app's configuration (``bench.run.Config``) arrives as environment variables
on top of ours: ``REFLEX_REDIS_URL`` and ``GRANIAN_WORKERS`` for Redis with two
workers (``rxconfig.py`` then leaves the state manager mode to Reflex).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.cpu import process_group
from tests.support.project_files import copy_project_files

STOP_GRACE_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_project(root: Path, dest: Path) -> Path:
    """A fresh copy of ``root``'s working tree (what git would commit) at ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    copy_project_files(root, dest)
    return dest


def server_env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """Our environment for a server, with ``extra`` on top (None: unset)."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("REFLEX_USE_NPM", "1")
    env.setdefault("REFLEX_TELEMETRY_ENABLED", "false")
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class ServerError(RuntimeError):
    pass


class Server:
    """One command in its own process group, logging to a file."""

    def __init__(
        self, name: str, command: list[str], cwd: Path, log: Path, env: dict[str, str]
    ):
        self.name, self.command, self.cwd, self.log, self.env = (
            name,
            command,
            cwd,
            log,
            env,
        )
        self.process: subprocess.Popen | None = None

    @property
    def pgid(self) -> int | None:
        """The process group (its leader's pid): the server and its workers."""
        return self.process.pid if self.process else None

    def start(self, ready, timeout: float = 180.0) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"\n=== {self.name}: {' '.join(self.command)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.process.returncode}\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(
                    f"{self.name} not ready in {timeout:g} s\n{self.tail()}"
                )
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_S)
        # Workers may outlive the leader; end whatever is left of the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_S)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as err:
            return f"(no log: {err})"
        return "\n".join(text.splitlines()[-lines:])


def get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except urllib.error.HTTPError:
        return True  # it answered, even if not with 200
    except (OSError, urllib.error.URLError):
        return False


def start_app(
    src: Path, port: int, log: Path, extra_env: dict[str, str | None] | None = None
) -> Server:
    """``reflex run --env prod --backend-only`` in ``src``; ready when stats answer."""
    server = Server(
        "app",
        [
            sys.executable,
            "-m",
            "reflex",
            "run",
            "--env",
            "prod",
            "--backend-only",
            "--backend-port",
            str(port),
        ],
        cwd=src,
        log=log,
        env=server_env(extra_env),
    )
    stats = f"http://127.0.0.1:{port}/_presence/stats"

    def ready() -> bool:
        try:
            get_json(stats, timeout=2)
            return True
        except (OSError, ValueError):
            return False

    return server.start(ready)


def start_floor(src: Path, port: int, log: Path) -> Server:
    """The bare Socket.IO floor under granian, one worker, as Reflex runs."""
    server = Server(
        "floor",
        [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--workers",
            "1",
            "--ws",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "bench.floor:app",
        ],
        cwd=src,
        log=log,
        env=server_env(),
    )
    return server.start(lambda: _answers(f"http://127.0.0.1:{port}/_event/"))


def start_memtrace(src: Path, port: int, log: Path) -> Server:
    """The app behind ``bench.memtrace`` (allocation sites), served as Reflex does.

    Granian with the app as its factory, one worker, the frontend compile
    skipped: what ``reflex run --env prod --backend-only`` starts, minus the CLI.
    A snapshot of a thousand tabs' allocations blocks the worker for seconds, so
    Engine.IO's ping is relaxed (and the app's silent-loss bound with it), or
    the server would drop every socket after a snapshot as unresponsive.
    """
    server = Server(
        "memtrace",
        [sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
         "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
         "bench.memtrace:app"],
        cwd=src,
        log=log,
        env=server_env({
            "REFLEX_ENV_MODE": "prod",
            "__REFLEX_SKIP_COMPILE": "true",
            "REFLEX_SOCKET_INTERVAL": "60",
            "REFLEX_SOCKET_TIMEOUT": "120",
            "PRESENCE_SILENT_LOSS": "300",
        }),
    )  # fmt: skip
    return server.start(lambda: _answers(f"http://127.0.0.1:{port}/_presence/stats"))


def worker_rss_each(server: Server) -> list[int]:
    """Resident bytes of each of a server's processes but the group leader."""
    sizes = []
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in process_group(server.pgid or -1):
        if pid == server.pgid:
            continue
        with contextlib.suppress(OSError):
            sizes.append(int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page)
    return sizes


def worker_rss(server: Server) -> int:
    """Resident bytes of a server's processes other than the group leader."""
    return sum(worker_rss_each(server))


def redis_used_memory(url: str) -> int:
    """Bytes Redis holds for keys and values (``INFO memory``).

    ``used_memory_dataset`` rather than ``used_memory``: the latter counts client
    buffers too, which swing with pub/sub traffic and hide the data's size.
    """
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory_dataset"])
    finally:
        client.close()

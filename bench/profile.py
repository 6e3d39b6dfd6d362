"""``--profile``: py-spy recordings of the backend worker, summarized.

py-spy samples the worker's Python stacks (``--format raw``: one line per
distinct stack, ``frame;frame;... count``). The summary drops the samples where
the worker was idle (waiting in ``select``), then ranks:

- *self*: the innermost function of each sample (where the CPU was);
- *inclusive*: every function on the stack above the event loop's callback
  runner (``Handle._run``), so not the scaffolding under every stack (the CLI,
  granian's worker start, the loop itself);
- *by package*: each busy sample charged to the innermost frame that is not the
  standard library (so ``json`` called by Reflex counts as Reflex).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

IDLE_LEAVES = ("select (selectors.py", "EpollSelector.select (selectors.py")
LOOP_CALLBACK = "Handle._run (asyncio/events.py"


class Profiler:
    """py-spy recording one process until ``stop``."""

    def __init__(self, pid: int, path: Path, rate: int = 200):
        self.path = path
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
             "--rate", str(rate), "--format", "raw", "--output", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> Path:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        return self.path


def _function(frame: str) -> str:
    """``name (file:line)`` becomes ``name (file)``."""
    return frame.rsplit(":", 1)[0] + ")" if frame.endswith(")") else frame


def _package(frame: str) -> str | None:
    """The top-level package of a frame, or None for the standard library."""
    if "(" not in frame:
        return None
    path = frame.rsplit("(", 1)[1].rsplit(":", 1)[0]
    if path.startswith("<"):
        return None
    top = path.split("/", 1)[0].removesuffix(".py")
    return None if top in sys.stdlib_module_names else top


def summarize(path: Path, limit: int = 15) -> dict:
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    packages: dict[str, int] = {}
    total = busy = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_LEAVES):
            continue
        busy += n
        names = [_function(f) for f in frames]
        self_counts[names[-1]] = self_counts.get(names[-1], 0) + n
        runner = max(
            (i for i, f in enumerate(frames) if f.startswith(LOOP_CALLBACK)),
            default=-1,
        )
        for name in set(names[runner + 1 :]):
            incl_counts[name] = incl_counts.get(name, 0) + n
        owner = next(
            (p for f in reversed(frames) if (p := _package(f)) is not None), "stdlib"
        )
        packages[owner] = packages.get(owner, 0) + n

    def top(counts: dict[str, int]):
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        return [(name, c / busy) for name, c in ranked[:limit]] if busy else []

    return {
        "samples": total,
        "busy": busy,
        "self": top(self_counts),
        "inclusive": top(incl_counts),
        "packages": top(packages),
    }

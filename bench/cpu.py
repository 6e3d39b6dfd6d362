"""How much of the machine something else used while we measured.

The benchmark shares two cores between the server, the generators and the
coordinator; anything else running on the machine (a test suite, a build)
takes from them and shows up as latency. ``Window`` reads ``/proc/stat`` and
the CPU time of our own processes at the start and end of a measured stretch,
so the report can say how many cores other processes used meanwhile.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _machine() -> tuple[int, int]:
    """(busy, total) jiffies over all cores since boot."""
    fields = [
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    idle = fields[3] + fields[4]
    return total - idle, total


def process_group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def _cpu_of(pids: list[int]) -> int:
    """utime + stime jiffies of these processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


class Window:
    """CPU used over a stretch: by the machine, by us, and by each server.

    ``pids`` are our own processes (coordinator, generators); ``servers`` maps
    a name to a server's process group. Besides the cores used, ``close``
    gives each server's CPU seconds: the work it did, which unlike its
    latencies hardly depends on what else the machine was doing.
    """

    def __init__(self, pids: list[int], servers: dict[str, int] | None = None):
        self.pids, self.servers = list(pids), dict(servers or {})
        self.start = self._read()

    def _read(self) -> tuple[int, int, int, dict[str, int]]:
        busy, total = _machine()
        per_server = {
            name: _cpu_of(process_group(pgid)) for name, pgid in self.servers.items()
        }
        return busy, total, _cpu_of(self.pids) + sum(per_server.values()), per_server

    def close(self) -> dict:
        """Cores used by everything, by us, by the others; servers' CPU seconds."""
        busy0, total0, ours0, servers0 = self.start
        busy1, total1, ours1, servers1 = self._read()
        cores = os.cpu_count() or 1
        span = max(1, total1 - total0) / cores  # wall-clock jiffies per core
        busy = (busy1 - busy0) / span
        ours = (ours1 - ours0) / span
        return {
            "busy": busy,
            "ours": ours,
            "others": max(0.0, busy - ours),
            "seconds": span / _TICKS,
            "server_cpu_s": {
                name: (servers1.get(name, 0) - servers0.get(name, 0)) / _TICKS
                for name in self.servers
            },
        }

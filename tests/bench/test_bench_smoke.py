"""The whole benchmark, small: so that ``bench/`` cannot rot unnoticed.

Runs ``python -m bench`` as ``scripts/bench`` would (minus setup): a copy of the
project, the app and the floor servers, generator processes, every phase, the
report. No timing is asserted; what is asserted is that every tab saw the
counts it should have, in every phase, and that the report was written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
N = 20
CHANGES = 4
WARMUP = 1


@pytest.mark.bench
def test_the_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    workdir = tmp_path / "work"
    command = [
        sys.executable, "-m", "bench",
        "--sizes", str(N),
        "--changes", str(CHANGES),
        "--warmup", str(WARMUP),
        "--storm", str(N),
        "--storm-seconds", "1",
        "--settle-seconds", "1",
        "--processes", "2",
        "--quiet-wait", "0",
        "--out", str(out),
        "--workdir", str(workdir),
    ]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    log = f"exit {run.returncode}\n--- stderr ---\n{run.stderr[-6000:]}"
    assert run.returncode == 0, log

    results = json.loads((workdir / "results.json").read_text())
    # The clients checked every count they were sent; any mismatch is here.
    assert results["problems"] == [], log

    change = results["change"][str(N)]
    for server in ("app", "floor"):
        # Every tab reached the expected count in every measured change.
        assert change[server]["changes"] == CHANGES, (server, log)
        assert change[server]["samples"] == N * CHANGES, (server, log)
    assert change["same_bytes"] is True  # the floor sent the app's very bytes

    storm = results["storm"]
    assert storm["reached"] == N  # every tab showed the final count
    assert storm["frames_max"] >= 1

    for key, counter in (
        ("memory_rss", "rss_bytes"),
        ("memory_traced", "traced_bytes"),
    ):
        memory = results[key]
        assert memory["idle"]["connected_tabs"] == N
        assert memory["joined"]["online"] == N
        assert memory["after"]["connected_tabs"] == 0
        assert memory["after"]["online"] == 0
        assert memory["idle"][counter] > 0
    assert results["memory_traced"]["base"]["traced_bytes"] is not None

    report = out.read_text()
    for heading in ("## Targets", "## One change", "## Join storm", "## Memory"):
        assert heading in report
    assert "FAILED" not in report

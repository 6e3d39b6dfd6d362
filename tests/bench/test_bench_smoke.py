"""The whole benchmark, small: so that ``bench/`` cannot rot unnoticed.

Runs ``python -m bench`` as ``scripts/bench`` would (minus setup): a copy of the
project, the app and the floor servers, generator processes, every phase, the
report, for both configurations (in memory; Redis with two workers). No timing
is asserted; what is asserted is that every tab saw the counts it should have,
in every phase, and that the report was written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.redis_server import require_redis_server

ROOT = Path(__file__).resolve().parents[2]
N = 20
CHANGES = 4
WARMUP = 1


@pytest.mark.bench
@pytest.mark.redis
def test_the_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    require_redis_server()  # the second configuration runs on Redis
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
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    log = f"exit {run.returncode}\n--- stderr ---\n{run.stderr[-6000:]}"
    assert run.returncode == 0, log
    results_file = workdir / "results.json"

    runs = {r["config"]["key"]: r for r in json.loads(results_file.read_text())}
    assert set(runs) == {"memory", "redis"}
    for key, results in runs.items():
        # The clients checked every count they were sent; any mismatch is here.
        assert results["problems"] == [], (key, log)
        change = results["change"][str(N)]
        for server in ("app", "floor"):
            # Every tab reached the expected count in every measured change.
            assert change[server]["changes"] == CHANGES, (key, server, log)
            assert change[server]["samples"] == N * CHANGES, (key, server, log)
        assert change["same_bytes"] is True  # the floor sent the app's very bytes

        storm = results["storm"]
        assert storm["reached"] == N  # every tab showed the final count
        assert storm["frames_max"] >= 1

        memory = results["memory_rss"]
        assert memory["joined"]["online"] == N
        assert memory["after"]["online"] == 0
        assert memory["idle"]["rss_bytes"] > memory["base"]["rss_bytes"] > 0

    traced = runs["memory"]["memory_traced"]
    for memory in (runs["memory"]["memory_rss"], traced):
        assert memory["idle"]["connected_tabs"] == N
        assert memory["after"]["connected_tabs"] == 0
    assert traced["idle"]["traced_bytes"] > traced["base"]["traced_bytes"] > 0
    # Two workers: per-worker counts are left out; Redis holds the tabs' state.
    redis = runs["redis"]["memory_rss"]
    assert redis["idle"]["connected_tabs"] is None
    assert redis["idle"]["redis_bytes"] > redis["base"]["redis_bytes"] > 0
    assert runs["redis"]["memory_traced"] is None

    report = out.read_text()
    for heading in (
        "## In-memory registry and state, 1 worker",
        "## Redis (a redis-server of its own), 2 workers",
        "### Targets",
        "### One change",
        "### Join storm",
        "### Memory",
    ):
        assert heading in report
    assert "FAILED" not in report

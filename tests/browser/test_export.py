"""Scenario 6: the static export, served by a plain file server, with the
backend run on its own beside it.

scripts/export bakes the backend address into the files (API_URL); the test
builds into a temporary OUT_DIR, serves it with ``python -m http.server`` and
runs scenario 1 against it.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from browser_support import (
    ROOT,
    SERVER_START_TIMEOUT_S,
    backend_server,
    free_port,
    server_env,
    static_server,
)
from scenarios import two_people_join_and_one_leaves

pytestmark = pytest.mark.browser

# The export compiles and builds the frontend in a copy of the project; the
# first export of a fresh clone also installs the JavaScript packages there.
EXPORT_TIMEOUT_S = 600.0


def test_static_export_with_separate_backend(
    servers, server_log_dir, person, open_tab
) -> None:
    backend_port, static_port = free_port(), free_port()
    while static_port == backend_port:
        static_port = free_port()
    out_dir = server_log_dir.parent / "static"
    export_log = server_log_dir / "export.log"

    env = server_env()
    env["API_URL"] = f"http://localhost:{backend_port}"
    env["OUT_DIR"] = str(out_dir)
    started = time.monotonic()
    with open(export_log, "wb") as log:
        result = subprocess.run(
            [str(ROOT / "scripts" / "export")],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=EXPORT_TIMEOUT_S,
            check=False,
        )
    output = export_log.read_text(errors="replace")
    assert result.returncode == 0, f"scripts/export failed:\n{output[-5000:]}"
    print(f"export took {time.monotonic() - started:.1f} s")

    assert (out_dir / "index.html").is_file(), sorted(p.name for p in out_dir.iterdir())
    baked = [
        path.name
        for path in (out_dir / "assets").glob("reflex-env-*.js")
        if f"ws://localhost:{backend_port}/_event" in path.read_text()
    ]
    assert baked, "the backend address is not baked into the export"

    backend = backend_server(backend_port, server_log_dir / "backend.log")
    servers.append(backend)
    backend.start(timeout=SERVER_START_TIMEOUT_S)
    files = static_server(out_dir, static_port, server_log_dir / "static.log")
    servers.append(files)
    files.start(timeout=30)

    two_people_join_and_one_leaves(person, open_tab, f"http://localhost:{static_port}/")

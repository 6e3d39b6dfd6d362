"""Where the backend's memory goes: the app, plus a tracemalloc diff endpoint.

A diagnostic for ``--profile``, not used by the timed phases. It serves the very
ASGI app that ``reflex run --env prod`` serves (granian calls the ``rx.App`` as
a factory), wrapped so that ``GET /_bench/tracemalloc`` answers with allocation
sites:

- ``?mark=1`` takes a snapshot to compare against (after ``gc.collect()``);
- ``?diff=1`` compares a new snapshot with the mark: the top allocation sites
  by size difference, grouped by line and by file, as JSON.

Run from the project copy, the way ``bench.run`` does::

    REFLEX_ENV_MODE=prod granian --interface asgi --factory --workers 1 \\
        --port P bench.memtrace:app

Tracing starts once the app is built (tracing the imports would take a
while), one frame per allocation (deeper stacks make each snapshot very
slow with a thousand tabs). Only differences are reported.
"""

from __future__ import annotations

import gc
import json
import os
import tracemalloc

_mark: tracemalloc.Snapshot | None = None
_IGNORE = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


def _snapshot() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(_IGNORE)


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return os.path.relpath(path)


def _diff(limit: int = 30) -> dict:
    if _mark is None:
        return {"error": "no mark; call ?mark=1 first"}
    now = _snapshot()
    by_line = now.compare_to(_mark, "lineno")
    by_file = now.compare_to(_mark, "filename")
    total = sum(s.size_diff for s in by_file)
    return {
        "total_diff": total,
        "count_diff": sum(s.count_diff for s in by_file),
        "by_file": [
            {
                "file": _short(s.traceback[0].filename),
                "size_diff": s.size_diff,
                "count_diff": s.count_diff,
            }
            for s in by_file[:limit]
        ],
        "by_line": [
            {
                "where": f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                "size_diff": s.size_diff,
                "count_diff": s.count_diff,
            }
            for s in by_line[:limit]
        ],
    }


def app():
    """The granian factory: Reflex's ASGI app, with the diff endpoint in front."""
    from reflex.utils import prerequisites

    asgi = prerequisites.get_and_validate_app().app()
    tracemalloc.start(1)

    async def wrapper(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/_bench/tracemalloc":
            global _mark
            query = scope.get("query_string", b"").decode()
            if "mark=1" in query:
                _mark = _snapshot()
                body = {"marked": True, "traced": tracemalloc.get_traced_memory()[0]}
            else:
                body = _diff()
            data = json.dumps(body).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": data})
            return
        await asgi(scope, receive, send)

    return wrapper

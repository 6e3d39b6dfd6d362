"""An operator's view of one worker: memory and counts, never names.

``GET /_presence/stats`` answers with this worker's resident memory, the live
Python allocations when tracing is on (``PRESENCE_TRACEMALLOC=1`` at start; it
slows the worker, so it is for measuring only), the number of connected tabs,
of Reflex states held, and of users online. ``?collect=1`` runs the garbage
collector first, for callers on the same machine only.
"""

from __future__ import annotations

import gc
import os
import tracemalloc

import reflex as rx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from presence_app import service
from presence_app.lifecycle import local_tabs

LOOPBACK = frozenset({"127.0.0.1", "::1"})

if os.environ.get("PRESENCE_TRACEMALLOC") == "1":
    tracemalloc.start()


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def stats_api(app: rx.App) -> Starlette:
    async def stats(request: Request) -> JSONResponse:
        # A full collection stalls the worker, so only a caller on this machine
        # (a measurement) may ask for one.
        local = request.client is not None and request.client.host in LOOPBACK
        if request.query_params.get("collect") == "1" and local:
            gc.collect()
        traced = (
            tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
        )
        return JSONResponse(
            {
                "pid": os.getpid(),
                "rss_bytes": resident_bytes(),
                "traced_bytes": traced,
                "connected_tabs": len(local_tabs(app)),
                "reflex_states": len(getattr(app.state_manager, "states", ())),
                "online": service.FANOUT.latest.count,
                "presence_version": service.FANOUT.latest.version,
            }
        )

    return Starlette(routes=[Route("/_presence/stats", stats)])

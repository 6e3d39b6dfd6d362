"""The floor: a bare Socket.IO server that only broadcasts, served like Reflex.

It answers the question "how fast can one granian worker running
python-socketio get one message to N websockets at all?", so the app's
numbers can be read as a multiple of that.

Set up as Reflex 0.10.1 sets up its own server (``reflex/app.py``, ``_setup_state``):
``AsyncServer(async_mode="asgi")``, websocket transport only, no upgrades, the
same ping settings, handlers run inline on the socket's receive loop
(``async_handlers=False``), JSON written without ASCII escapes, and the
Engine.IO endpoint at ``/_event``. Run it the way ``reflex run --env prod`` runs
the app, one granian worker::

    granian --interface asgi --workers 1 --ws --port 8765 bench.floor:app

A tab connects to namespace ``/_event`` (any auth is accepted, nothing is
hydrated). The trigger is a socket event from the benchmark's actor,
``broadcast``, whose one argument is the data of the app's update for that
change (``{"delta": {...}}``, as received by a tab); the server sends it to
every socket in the namespace as an ``event`` message, so the frames carry the
same bytes the app sent.
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import socketio

NAMESPACE = "/_event"


def _dumps(obj, **kwargs):
    kwargs.setdefault("ensure_ascii", False)  # as reflex's format.json_dumps
    return json.dumps(obj, **kwargs)


sio = socketio.AsyncServer(
    async_mode="asgi",
    cors_allowed_origins="*",
    transports=["websocket"],
    allow_upgrades=False,
    ping_interval=float(os.environ.get("REFLEX_SOCKET_INTERVAL", "10")),
    ping_timeout=float(os.environ.get("REFLEX_SOCKET_TIMEOUT", "10")),
    json=SimpleNamespace(dumps=staticmethod(_dumps), loads=staticmethod(json.loads)),
    async_handlers=False,
)


@sio.on("connect", namespace=NAMESPACE)
async def connect(sid, environ, auth=None):
    return True


@sio.on("broadcast", namespace=NAMESPACE)
async def broadcast(sid, data):
    await sio.emit("event", data, namespace=NAMESPACE)


app = socketio.ASGIApp(sio, socketio_path="_event")

"""A lean Socket.IO client that talks to the backend the way a browser tab does.

Why not python-socketio's ``AsyncClient``: it runs a task per incoming message
and a ``ClientSession`` per client, which is fine for a handful of tabs but
turns a thousand tabs in one process into client-side queueing that would be
measured as server latency. This client does only what a Reflex tab does,
over one aiohttp websocket, and keeps the per-frame work tiny.

The protocol, as the Reflex 0.10.1 frontend (``.web/utils/state.js``) speaks it:

- Engine.IO v4 over the websocket transport only, at path ``/_event/`` with the
  query ``token=<the tab's uuid4>&EIO=4&transport=websocket``; the websocket
  offers the Reflex version as its subprotocol, as the browser does.
- The server opens with an Engine.IO OPEN packet ``0{"sid":..,"pingInterval":..}``.
  It pings (``2``) every ``pingInterval``; a tab must answer PONG (``3``) or is
  dropped after ``pingTimeout``.
- Engine.IO MESSAGE packets (``4``) carry Socket.IO packets: the tab sends
  CONNECT for namespace ``/_event`` with the boot hydrate event in its auth
  payload (``40/_event,{"event":{...}}``); the server acknowledges with
  ``40/_event,{"sid":..}`` and runs the hydrate and the page's on_load.
- Events both ways are Socket.IO EVENT packets: ``42/_event,["event",{...}]``.
  From the server, ``{"delta": {<state full name>: {<var>_rx_state_: v}}, ...}``;
  from the tab, ``{"name": "<state>.<handler>", "payload": {..},
  "router_data": {..}}``. ``["new_token", "<uuid>"]`` tells the tab to use
  another token from now on (its token was held by another live socket).

Timing: every received frame is stamped with ``time.monotonic()`` (a system-wide
clock on Linux, so stamps compare across processes) before anything else is
done with it. The online count is picked out of the raw text with one
``str.find``; the frame is kept, and ``verify`` parses every kept frame in full
afterwards, off the timed path, and checks that the quick reading was right.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

NAMESPACE = "/_event"
ROOT_STATE = "reflex___state____state"
PRESENCE_STATE = f"{ROOT_STATE}.presence_app___state____presence_state"
HYDRATE_EVENT = f"{ROOT_STATE}.hydrate_and_load"
COUNT_VAR = "online_count_rx_state_"
ROUTER_DATA = {"pathname": "/", "query": {}, "asPath": "/"}

# Socket.IO EVENT packet on our namespace, inside an Engine.IO MESSAGE.
_EVENT_PREFIX = f"42{NAMESPACE},"
_CONNECT_PREFIX = f"40{NAMESPACE},"
_COUNT_KEY = f'"{COUNT_VAR}":'


class ProtocolError(RuntimeError):
    pass


def event_packet(event: str, data: Any) -> str:
    """The text frame a Socket.IO client sends for ``emit(event, data)``."""
    return _EVENT_PREFIX + json.dumps([event, data], separators=(",", ":"))


def quick_count(text: str) -> int | None:
    """The online count in a raw frame, read without parsing the JSON."""
    at = text.find(_COUNT_KEY)
    if at < 0:
        return None
    start = at + len(_COUNT_KEY)
    end = start
    while end < len(text) and text[end].isdigit():
        end += 1
    return int(text[start:end]) if end > start else None


@dataclass
class Frame:
    """One ``event`` frame as received: its stamp, raw text and quick count."""

    at: float
    text: str
    count: int | None


@dataclass
class Tab:
    """One tab: a token, one websocket, and what it has been sent."""

    base_url: str  # http://host:port
    name: str = ""
    subprotocol: str | None = None
    token: str = field(default_factory=lambda: str(uuid.uuid4()))
    # Set by the driver: the count this tab should reach next, and when it did.
    expect: int | None = None
    reached_at: float | None = None
    # Everything below is filled in by the reader.
    count: int | None = None  # the last online count this tab was sent
    joined: bool = False
    hydrated: bool = False
    event_frames: int = 0  # ``event`` frames since the last ``reset_counters``
    frames: list[Frame] = field(default_factory=list)  # kept until ``verify``
    new_tokens: int = 0
    errors: list[str] = field(default_factory=list)
    ws: Any = None
    _reader: asyncio.Task | None = None
    _namespace_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- connecting -------------------------------------------------------------

    async def connect(
        self,
        session: aiohttp.ClientSession,
        timeout: float = 60.0,
        boot: bool = True,
    ) -> None:
        """Open the socket, send CONNECT with the boot hydrate, wait for the ack.

        ``boot=False`` connects without a hydrate event (the floor server has no
        state to hydrate); the auth payload is then empty.
        """
        url = (
            self.base_url.replace("http", "ws", 1)
            + f"{NAMESPACE}/?token={self.token}&EIO=4&transport=websocket"
        )
        self.ws = await session.ws_connect(
            url,
            protocols=(self.subprotocol,) if self.subprotocol else (),
            autoping=True,  # websocket-level pings; Engine.IO pings are ours
            max_msg_size=0,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
        )
        opening = await asyncio.wait_for(self.ws.receive(), timeout)
        if opening.type != aiohttp.WSMsgType.TEXT or not opening.data.startswith("0"):
            raise ProtocolError(f"expected an Engine.IO OPEN, got {opening!r}")
        auth: dict[str, Any] = {}
        if boot:
            auth = {
                "event": {
                    "name": HYDRATE_EVENT,
                    "payload": {},
                    "router_data": ROUTER_DATA,
                }
            }
        await self.ws.send_str(
            "40" + NAMESPACE + "," + json.dumps(auth, separators=(",", ":"))
        )
        self._reader = asyncio.create_task(self._read(), name=f"tab {self.name}")
        await asyncio.wait_for(self._namespace_ready.wait(), timeout)
        if boot:
            await self.wait_for(lambda: self.hydrated, timeout, "hydrate")

    async def close(self) -> None:
        """Disconnect the namespace, then close the socket (as a closed tab does)."""
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.send_str("41" + NAMESPACE + ",")
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    # -- sending ----------------------------------------------------------------

    async def emit(self, handler: str, payload: dict[str, Any]) -> float:
        """Call ``PresenceState.<handler>``; return the stamp taken just before."""
        frame = event_packet(
            "event",
            {
                "name": f"{PRESENCE_STATE}.{handler}",
                "payload": payload,
                "router_data": ROUTER_DATA,
            },
        )
        sent_at = time.monotonic()
        await self.ws.send_str(frame)
        return sent_at

    async def emit_raw(self, event: str, data: Any) -> float:
        """Emit any Socket.IO event on the namespace (the floor's trigger)."""
        frame = event_packet(event, data)
        sent_at = time.monotonic()
        await self.ws.send_str(frame)
        return sent_at

    async def join(self) -> float:
        return await self.emit("join", {"form_data": {"username": self.name}})

    async def leave(self) -> float:
        return await self.emit("leave", {})

    # -- waiting ----------------------------------------------------------------

    async def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"tab {self.name}: no {what} within {timeout:g} s")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def reset_counters(self) -> None:
        self.event_frames = 0

    # -- receiving --------------------------------------------------------------

    async def _read(self) -> None:
        ws = self.ws
        try:
            async for message in ws:
                at = time.monotonic()
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                self._on_text(message.data, at)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # pragma: no cover - reported, not raised
            self.errors.append(f"reader failed: {err!r}")
        finally:
            self._changed.set()

    def _on_text(self, text: str, at: float) -> None:
        if text.startswith(_EVENT_PREFIX):
            if text.startswith('["event"', len(_EVENT_PREFIX)):
                self.event_frames += 1
                count = quick_count(text)
                self.frames.append(Frame(at, text, count))
                if count is not None:
                    self.count = count
                    if count == self.expect and self.reached_at is None:
                        self.reached_at = at
                if not self.hydrated and '"is_hydrated_rx_state_":true' in text:
                    self.hydrated = True
                if '"joined_rx_state_":' in text:
                    self.joined = '"joined_rx_state_":true' in text
            else:
                self._on_other_event(text)
        elif text == "2":  # Engine.IO PING from the server: answer PONG
            asyncio.get_running_loop().create_task(self.ws.send_str("3"))
        elif text.startswith(_CONNECT_PREFIX):
            self._namespace_ready.set()
        elif text.startswith("44" + NAMESPACE):
            self.errors.append(f"connect refused: {text[:300]}")
            self._namespace_ready.set()
        elif text.startswith("41" + NAMESPACE) or text == "1":
            self.errors.append("server closed the connection")
        self._changed.set()

    def _on_other_event(self, text: str) -> None:
        name, *args = json.loads(text[len(_EVENT_PREFIX) :])
        if name == "new_token" and args:
            # The token was held by another live socket; Reflex hands out a new
            # one, which the browser stores and uses from then on.
            self.token = args[0]
            self.new_tokens += 1
        else:
            self.errors.append(f"unexpected event {name!r}: {text[:200]}")

    # -- checking ---------------------------------------------------------------

    def verify(self) -> list[str]:
        """Parse every kept frame in full; check the quick readings. Drops them."""
        problems = []
        for frame in self.frames:
            problems.extend(check_frame(frame))
        self.frames.clear()
        return [f"tab {self.name}: {p}" for p in problems]


def parse_event_frame(text: str) -> dict[str, Any]:
    """The data of an ``event`` frame: ``{"delta": {...}, "events": [...]}``."""
    name, data = json.loads(text[len(_EVENT_PREFIX) :])
    if name != "event" or not isinstance(data, dict):
        raise ProtocolError(f"not an event frame: {text[:200]}")
    return data


def check_frame(frame: Frame) -> list[str]:
    try:
        data = parse_event_frame(frame.text)
    except (ValueError, ProtocolError) as err:
        return [f"unparsable frame: {err}"]
    delta = data.get("delta")
    if not isinstance(delta, dict):
        return [f"frame without a delta: {frame.text[:200]}"]
    presence = delta.get(PRESENCE_STATE, {})
    count = presence.get(COUNT_VAR) if isinstance(presence, dict) else None
    if count != frame.count:
        return [
            f"quick count {frame.count} but the delta holds {count}"
            f" (keys {sorted(delta)})"
        ]
    if count is not None:
        users = presence.get("online_users_rx_state_")
        more = presence.get("more_users_rx_state_")
        if isinstance(users, list) and isinstance(more, int):
            listed = len(users) + more
            if listed != count:
                return [f"count {count} but {len(users)} listed + {more} more"]
    return []

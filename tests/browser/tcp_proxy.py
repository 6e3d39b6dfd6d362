"""A TCP proxy the test owns, to cut a connection silently and mend it later.

A browser that is killed still sends a FIN, and Playwright's offline switch does
not touch an open WebSocket; a network that dies silently does neither. While a
connection is stalled, this proxy keeps it open but forwards no byte in either
direction, not even its end (a FIN waits too): exactly what a dead network looks
like to both ends. ``resume`` forwards what was held back and everything after.

Every page of a build talks to the same backend address (it is baked in at
build time), so the proxy tells one tab's connections from another's by the
Reflex client token in the socket's request line (``/_event/?token=...``):

- ``stall(token)`` / ``resume(token)``: hold / release that tab's connections,
  those open now and those it opens meanwhile. Without a token: every
  connection, as before.
- ``cut(token, server_sees=...)``: the tab's network drops hard. The browser's
  side is reset at once, and new connections of the tab are refused until
  ``mend(token)``. The server's side is reset too (``server_sees=True``) or is
  left open and silent (``server_sees=False``), as a server sees a client whose
  network changed: it learns of it only from its own ping timeout.

The token is read from the first bytes of each connection, so it is the token
the tab had when it opened that connection; a tab handed a new token by Reflex
is followed by calling again with the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import socket
import struct
import threading

_TOKEN = re.compile(rb"[?&]token=([^&\s]+)")
# Rule key that matches every connection.
_ALL = ""


class _Connection:
    def __init__(self, index: int, token: str | None) -> None:
        self.index, self.token = index, token
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.client: asyncio.StreamWriter | None = None
        self.upstream: asyncio.StreamWriter | None = None
        self.closed = False
        # Cut silently: stays held for good (the server's side gives up alone).
        self.cut = False
        # The server ended its side (it may be held back from the browser).
        self.server_ended = False

    def matches(self, token: str) -> bool:
        return token == _ALL or token == self.token


class StallingProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.target_port = host, target_port
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._index = itertools.count(1)
        self._connections: list[_Connection] = []
        self._stalled: set[str] = set()  # tokens (or _ALL) held back
        self._refused: set[str] = set()  # tokens whose new connections are reset
        self.accepted: list[tuple[int, str | None]] = []  # (index, token), for logs

    # --- control, from the test's thread -------------------------------------

    def start(self) -> StallingProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stall(self, token: str | None = None) -> None:
        """Stop forwarding ``token``'s connections (no token: all); close nothing."""
        self._call(self._stall(token or _ALL))

    def resume(self, token: str | None = None) -> None:
        """Forward again what was held back, and everything after it."""
        self._call(self._resume(token or _ALL))

    def cut(self, token: str, server_sees: bool) -> None:
        """Reset the browser's side of ``token``'s connections; refuse new ones."""
        self._call(self._cut(token, server_sees))

    def mend(self, token: str) -> None:
        """Accept ``token``'s new connections again."""
        self._call(self._mend(token))

    def held_by_server(self, token: str) -> int:
        """How many of ``token``'s silently cut connections the server still
        holds open (it lets go when its ping times out)."""
        return sum(
            1
            for c in list(self._connections)
            if c.cut and not c.server_ended and c.matches(token)
        )

    def open_connections(self, token: str | None = None) -> int:
        return sum(
            1
            for c in list(self._connections)
            if not c.closed and c.matches(token or _ALL)
        )

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    def _call(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    # --- inside the proxy's loop ---------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    async def _stall(self, token: str) -> None:
        self._stalled.add(token)
        for connection in self._connections:
            if connection.matches(token):
                connection.flowing.clear()

    async def _resume(self, token: str) -> None:
        self._stalled.discard(token)
        for connection in self._connections:
            if (
                connection.matches(token)
                and not connection.cut
                and not self._is_stalled(connection.token)
            ):
                connection.flowing.set()

    async def _cut(self, token: str, server_sees: bool) -> None:
        self._refused.add(token)
        for connection in self._connections:
            if connection.matches(token) and not connection.closed:
                _abort(connection.client)
                if server_sees:
                    _abort(connection.upstream)
                else:
                    # Silent towards the server: nothing more goes either way,
                    # not even the end, until the server gives up by itself.
                    connection.cut = True
                    connection.flowing.clear()

    async def _mend(self, token: str) -> None:
        self._refused.discard(token)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in self._connections:
            connection.cut = False
            connection.flowing.set()
            _abort(connection.client)
            _abort(connection.upstream)
        others = asyncio.all_tasks(self._loop) - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=2)
        for task in others:
            task.cancel()

    def _is_stalled(self, token: str | None) -> bool:
        return _ALL in self._stalled or (token is not None and token in self._stalled)

    async def _accept(self, client_reader, client_writer) -> None:
        # asyncio reports a cancelled connection handler as an error: end quietly.
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve(client_reader, client_writer)

    async def _serve(self, client_reader, client_writer) -> None:
        try:
            first = await client_reader.read(65536)
        except (ConnectionError, OSError):
            _abort(client_writer)
            return
        match = _TOKEN.search(first.split(b"\r\n", 1)[0])
        token = match.group(1).decode() if match else None
        connection = _Connection(next(self._index), token)
        connection.client = client_writer
        self.accepted.append((connection.index, token))
        if not first or (token is not None and token in self._refused):
            _abort(client_writer)
            return
        if self._is_stalled(token):
            connection.flowing.clear()
        self._connections.append(connection)
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    self.host, self.target_port
                )
            except OSError:
                _abort(client_writer)
                return
            connection.upstream = upstream_writer
            await asyncio.gather(
                self._pipe(connection, client_reader, upstream_writer, first),
                self._pipe(connection, upstream_reader, client_writer, b"", True),
                return_exceptions=True,
            )
        finally:
            connection.closed = True
            self._connections.remove(connection)

    async def _pipe(
        self, connection: _Connection, reader, writer, first, from_server=False
    ) -> None:
        # Reading goes on while the connection is held, so that the end of the
        # stream is noticed (``server_ended``); what is read waits its turn.
        queue: asyncio.Queue[bytes] = asyncio.Queue()  # b"": the end
        if first:
            queue.put_nowait(first)

        async def read() -> None:
            try:
                while data := await reader.read(65536):
                    queue.put_nowait(data)
            except (ConnectionError, OSError):
                pass
            if from_server:
                connection.server_ended = True
            queue.put_nowait(b"")

        reading = asyncio.ensure_future(read())
        try:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await queue.get():
                    await connection.flowing.wait()
                    writer.write(data)
                    await writer.drain()
            # The end of the stream (or its reset) is news too: a dead network
            # holds it back like any byte.
            await connection.flowing.wait()
        finally:
            reading.cancel()
            with contextlib.suppress(Exception):
                writer.close()


def _abort(writer: asyncio.StreamWriter | None) -> None:
    """Reset the connection (RST), as a network error does, not a polite FIN."""
    if writer is not None:
        with contextlib.suppress(Exception):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            writer.transport.abort()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

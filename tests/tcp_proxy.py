"""A TCP proxy for fault-injection tests: put it between a server and its database, then cut it.

`cut()` closes the listening socket and every open connection at once, as a database that
crashed or a network that partitioned would; `restore()` listens again on the same port.
`cut_when(pattern)` arms a trigger that cuts everything the moment a client sends bytes
containing `pattern` (those bytes are not forwarded), e.g. in the middle of a transaction;
with `in_replies=True` it watches what the upstream sends back instead, e.g. to lose the
response to a request the upstream has already carried out.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress

_CHUNK = 65_536


class TcpProxy:
    def __init__(self, listen_port: int, upstream: tuple[str, int]) -> None:
        self.listen_port = listen_port
        self.upstream = upstream
        self.triggered = threading.Event()  # set when an armed `cut_when` fired
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._pattern: tuple[bytes, bool] | None = None  # (pattern, in replies)

    def __enter__(self) -> TcpProxy:
        self.restore()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.cut()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._sockets) // 2

    def restore(self) -> None:
        """Listen (again) on `listen_port`."""
        if self._accepting is not None:  # the old listener is only released once it stops
            self._accepting.join(5)
        listener = socket.socket()
        # The port of a cut proxy has connections in TIME_WAIT: rebinding it needs this.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.listen_port))
        listener.listen(64)
        listener.settimeout(0.05)
        with self._lock:
            self._listener = listener
        self._accepting = threading.Thread(
            target=self._accept, args=(listener,), name="tcp-proxy-accept", daemon=True
        )
        self._accepting.start()

    def cut(self) -> None:
        """Stop listening and close every open connection, both directions, right now."""
        with self._lock:
            listener, self._listener = self._listener, None
            doomed, self._sockets = self._sockets, set()
            self._pattern = None
        if listener is not None:
            listener.close()
        for sock in doomed:
            _close(sock)
        accepting = self._accepting
        if accepting is not None and accepting is not threading.current_thread():
            accepting.join(5)

    def cut_when(self, pattern: bytes, *, in_replies: bool = False) -> None:
        """Cut everything as soon as a client (or, `in_replies`, the upstream) sends
        `pattern`, before forwarding it."""
        self.triggered.clear()
        with self._lock:
            self._pattern = (pattern, in_replies)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            with self._lock:
                if self._listener is not listener:
                    return
            try:
                client, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            for sock in (client, server):
                sock.settimeout(None)
                # Forward each write at once: Nagle plus delayed ACKs would add 40 ms stalls.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _close(client)
                    _close(server)
                    return
                self._sockets.update((client, server))
            for source, sink, replies in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump,
                    args=(source, sink, replies),
                    name="tcp-proxy-pump",
                    daemon=True,
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        tail = b""  # the end of the previous chunk, so a pattern split across reads is seen
        while True:
            try:
                data = source.recv(_CHUNK)
            except OSError:
                data = b""
            if not data:
                break
            with self._lock:
                armed = self._pattern
            if armed is not None and armed[1] == replies:
                pattern = armed[0]
                if pattern in tail + data:
                    self.triggered.set()
                    self.cut()
                    return
                tail = (tail + data)[-len(pattern) :]
            try:
                sink.sendall(data)
            except OSError:
                break
        with self._lock:
            mine = source in self._sockets
            self._sockets.discard(source)
            self._sockets.discard(sink)
        if mine:  # the other side hung up: pass that on
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()

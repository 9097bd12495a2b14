"""A TCP proxy in front of a real server, to break a client's connections for real.

`drop()` shuts every connection it carries, as a network failure would; `hold()`
stops passing the server's WebSocket frames on (the client falls behind), and
`close_streams(code, reason)` ends each WebSocket it carries with a close frame of
its own, sent between two whole frames, as the server does when a watcher falls
too far behind.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

HEAD_END = b"\r\n\r\n"


def _frame_length(buffer: bytes) -> int | None:
    """Bytes of the first whole WebSocket frame in a server-to-client buffer, if there is one."""
    if len(buffer) < 2:
        return None
    size, offset = buffer[1] & 0x7F, 2
    if size == 126:
        if len(buffer) < 4:
            return None
        size, offset = int.from_bytes(buffer[2:4], "big"), 4
    elif size == 127:
        if len(buffer) < 10:
            return None
        size, offset = int.from_bytes(buffer[2:10], "big"), 10
    total = offset + size  # frames from a server are never masked
    return total if len(buffer) >= total else None


def close_frame(code: int, reason: str) -> bytes:
    payload = code.to_bytes(2, "big") + reason.encode()[:123]
    return bytes([0x88, len(payload)]) + payload


@dataclass(eq=False)
class Pair:
    """One client connection and the proxy's connection to the server for it."""

    client: socket.socket
    server: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    upgrading: bool = False  # the client asked for a WebSocket; the answer's head comes next
    websocket: bool = False
    held: bool = False
    closed: bool = False

    def shut(self) -> None:
        self.closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class Proxy:
    """Listens on a free loopback port and forwards every connection to `target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._pairs: list[Pair] = []
        self._lock = threading.Lock()
        self._holding = False
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            pair = Pair(client, server)
            with self._lock:
                self._pairs.append(pair)
                self.accepted += 1
            threading.Thread(target=self._up, args=(pair,), daemon=True).start()
            threading.Thread(target=self._down, args=(pair,), daemon=True).start()

    def _up(self, pair: Pair) -> None:
        """Client to server, byte for byte."""
        try:
            while data := pair.client.recv(65536):
                if not pair.websocket and b"upgrade: websocket" in data.lower():
                    pair.upgrading = True
                pair.server.sendall(data)
        except OSError:
            pass
        pair.shut()

    def _down(self, pair: Pair) -> None:
        """Server to client: after a 101, whole frames only, so a close can go in between."""
        buffer = b""
        try:
            while data := pair.server.recv(65536):
                buffer += data
                if not pair.websocket:
                    if not pair.upgrading:
                        pair.client.sendall(buffer)  # plain HTTP: passed on as it comes
                        buffer = b""
                        continue
                    end = buffer.find(HEAD_END)
                    if end < 0:
                        continue
                    head, buffer = buffer[: end + 4], buffer[end + 4 :]
                    pair.client.sendall(head)
                    pair.upgrading = False
                    pair.websocket = head.startswith(b"HTTP/1.1 101")
                    pair.held = self._holding
                    if not pair.websocket:
                        pair.client.sendall(buffer)
                        buffer = b""
                        continue
                while (length := _frame_length(buffer)) is not None:
                    frame, buffer = buffer[:length], buffer[length:]
                    with pair.lock:
                        if pair.closed:
                            return
                        if not pair.held:
                            pair.client.sendall(frame)
        except OSError:
            pass
        pair.shut()

    def streams(self) -> list[Pair]:
        with self._lock:
            return [p for p in self._pairs if p.websocket and not p.closed]

    def drop(self) -> int:
        """Shut every open connection at once; how many there were."""
        with self._lock:
            pairs, self._pairs = [p for p in self._pairs if not p.closed], []
        for pair in pairs:
            pair.shut()
        return len(pairs)

    def hold(self) -> None:
        """Stop passing WebSocket frames on (they are dropped), on open and new streams."""
        self._holding = True
        for pair in self.streams():
            pair.held = True

    def close_streams(self, code: int, reason: str) -> int:
        """Send each open WebSocket's client a close frame, then shut it; how many there were."""
        self._holding = False
        pairs = self.streams()
        for pair in pairs:
            with pair.lock:
                with contextlib.suppress(OSError):
                    pair.client.sendall(close_frame(code, reason))
                pair.closed = True
            pair.shut()
        return len(pairs)

    def close(self) -> None:
        self._listener.close()
        self.drop()

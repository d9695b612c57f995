"""A small TCP proxy on a free loopback port, for faults between two real peers.

It forwards every connection to ``target`` and can be told, while running, to

- delay each chunk it forwards (``delay_s``): "S3 answering slowly";
- cap the bytes per second it forwards in each direction (``rate_bps``): a slow link, so that a
  transfer is reliably caught in the middle;
- refuse service (``refuse = True``): accepted connections are closed at once, as a dead peer
  behind a load balancer would;
- point at another target (``target``), e.g. a daemon restarted on a new port.

``sent`` keeps every byte each client sent, one buffer per connection in order: a capture an
attacker on the path would have.

Threads, not asyncio: it runs beside blocking test code. ``stop()`` closes everything.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

from .net import LOOPBACK

_CHUNK = 16 * 1024


class DelayProxy:
    def __init__(self, target: tuple[str, int], *, delay_s: float = 0.0, rate_bps: float | None = None) -> None:
        self.target = target
        self.delay_s = delay_s
        self.rate_bps = rate_bps
        self.refuse = False
        self.forwarded = {"up": 0, "down": 0}  # bytes client->target, target->client
        self.connections = 0
        self.sent: list[bytearray] = []  # client -> target bytes of each connection
        self._server = socket.create_server((LOOPBACK, 0))
        self.port: int = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> DelayProxy:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self._spawn(self._accept)

    def stop(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self.drop_connections()
        for thread in self._threads:
            thread.join(5)

    def drop_connections(self) -> None:
        """Reset every connection being forwarded now."""
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            captured = bytearray()
            with self._lock:
                self.connections += 1
                self._open.update((client, upstream))
                self.sent.append(captured)
            done = threading.Barrier(2, action=lambda c=client, u=upstream: self._close(c, u))
            self._spawn(self._pump, client, upstream, "up", done, captured)
            self._spawn(self._pump, upstream, client, "down", done)

    def _close(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(sockets)
        for sock in sockets:
            sock.close()

    def _pump(self, source: socket.socket, sink: socket.socket, direction: str, done: threading.Barrier,
              captured: bytearray | None = None) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if captured is not None:
                    with self._lock:
                        captured += data
                if not data:
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    return
                if self.delay_s:
                    time.sleep(self.delay_s)
                rate = self.rate_bps
                if rate:
                    # Forward in small pieces at the capped rate.
                    for at in range(0, len(data), 1024):
                        piece = data[at : at + 1024]
                        sink.sendall(piece)
                        self._count(direction, len(piece))
                        time.sleep(len(piece) / rate)
                else:
                    sink.sendall(data)
                    self._count(direction, len(data))
        except OSError:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        finally:
            with contextlib.suppress(threading.BrokenBarrierError):
                done.wait(30)  # the second pump to finish closes both sockets

    def _count(self, direction: str, size: int) -> None:
        with self._lock:
            self.forwarded[direction] += size
